#!/usr/bin/env python3
"""Train the tiny Dots1 checkpoint shipped at examples/models/kjv-tiny/.

Corpus: the King James Bible from the Debian package `bible-kjv-text`
(/usr/lib/bible.data), dumped verse by verse with the `bible` program from the
Debian package `bible-kjv`:

    bible -f Gen1:1-Rev22:21

(`-f` turns pretty-printing off, so each output line is "<Ref> <verse text>").
The reference is stripped, runs of spaces are collapsed, verses are joined with
"\n" and every book ends with <|endoftext|>.  Every 50th chapter (chapter index
% 50 == 49, in canonical order) is held out as validation (~2% of the text).

Tokenizer: byte-level BPE with the Qwen2 pre-tokenizer (the same kind as
dots.llm1), trained on the training split only.

Model: HF transformers' Dots1ForCausalLM (eager attention), trained on one CPU
thread with AdamW + linear warmup + cosine decay.  The router's
e_score_correction_bias is a buffer (not trained by gradient); like the
aux-loss-free balancing of DeepSeek-V3 / dots.llm1 it is nudged after each step
towards equal expert load, so the shipped checkpoint has a non-zero bias.

Usage (the exact command used for the shipped checkpoint is in the README):

    python3 examples/models/train_kjv_tiny.py --out examples/models/kjv-tiny
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers' BPE trainer: one core, deterministic
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|system|>",
    "<|endofsystem|>",
    "<|userprompt|>",
    "<|endofuserprompt|>",
    "<|response|>",
    "<|endofresponse|>",
]

QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# dots.llm1 chat format: no BOS, no newlines between turns.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{{- '<|system|>' + message['content'] + '<|endofsystem|>' -}}"
    "{%- elif message['role'] == 'user' -%}"
    "{{- '<|userprompt|>' + message['content'] + '<|endofuserprompt|>' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|response|>' + message['content'] + '<|endofresponse|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|response|>' -}}"
    "{%- endif -%}"
)

HELD_OUT_EVERY = 50  # chapter index % 50 == 49 -> validation


# --------------------------------------------------------------------------- corpus
def dpkg_version(pkg: str) -> str:
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", pkg], check=True, capture_output=True, text=True
        ).stdout.strip()
    except Exception:
        return "unknown"


def load_kjv():
    """Returns a list of (book, chapter, [verse texts]) in canonical order."""
    if shutil.which("bible") is None:
        sys.exit("the `bible` program is missing: apt-get install -y bible-kjv")
    out = subprocess.run(
        ["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True, encoding="utf-8"
    ).stdout
    ref_re = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
    chapters = []
    key = None
    for line in out.splitlines():
        m = ref_re.match(line)
        if not m:
            raise RuntimeError(f"unexpected line from bible: {line!r}")
        book, chap, text = m.group(1), int(m.group(2)), m.group(4)
        text = re.sub(r" {2,}", " ", text).strip()
        if (book, chap) != key:
            key = (book, chap)
            chapters.append((book, chap, []))
        chapters[-1][2].append(text)
    return chapters


def split_corpus(chapters):
    """Train / validation documents. A document is one book's kept chapters."""
    train_docs, val_docs = [], []
    cur_book = None
    for i, (book, _chap, verses) in enumerate(chapters):
        if book != cur_book:
            cur_book = book
            train_docs.append([])
        text = "\n".join(verses) + "\n"
        if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1:
            val_docs.append(text)  # each held-out chapter is its own document
        else:
            train_docs[-1].append(text)
    train_docs = ["".join(d) for d in train_docs if d]
    return train_docs, val_docs


# --------------------------------------------------------------------------- tokenizer
def train_tokenizer(train_docs, vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
                               byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    n_bpe = vocab_size - len(SPECIAL_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=n_bpe,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(train_docs, trainer=trainer)
    assert tok.get_vocab_size() == n_bpe, (tok.get_vocab_size(), n_bpe)
    # Special tokens follow the BPE vocabulary, as in Qwen2 / dots.llm1.
    tok.add_special_tokens(SPECIAL_TOKENS)
    assert tok.get_vocab_size() == vocab_size
    return tok


def write_tokenizer_files(tok, out_dir: str, model_max_length: int):
    from tokenizers import Tokenizer

    # Mirror the Qwen2 tokenizer.json field by field: the Python bindings write the
    # ByteLevel decoder with its default options and null subword affixes.
    tj = json.loads(tok.to_str())
    tj["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tj["model"]["continuing_subword_prefix"] = ""
    tj["model"]["end_of_word_suffix"] = ""
    path = os.path.join(out_dir, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    probe = "In the beginning God created the heaven and the earth.\nAnd the LORD's house<|endoftext|>"
    assert Tokenizer.from_file(path).encode(probe).ids == tok.encode(probe).ids
    added = {}
    for t in SPECIAL_TOKENS:
        added[str(tok.token_to_id(t))] = {
            "content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True,
        }
    cfg = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": SPECIAL_TOKENS[1:],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")


def encode_docs(tok, docs, eos_id):
    ids = []
    for d in docs:
        ids.extend(tok.encode(d, add_special_tokens=False).ids)
        ids.append(eos_id)
    return np.asarray(ids, dtype=np.int64)


# --------------------------------------------------------------------------- model
def make_config(args, vocab_size, eos_id):
    from transformers import Dots1Config

    n_layers = args.layers
    return Dots1Config(
        vocab_size=vocab_size,
        hidden_size=args.hidden,
        intermediate_size=args.dense_ffn,
        moe_intermediate_size=args.expert_ffn,
        num_hidden_layers=n_layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        head_dim=args.hidden // args.heads,
        n_shared_experts=args.shared_experts,
        n_routed_experts=args.experts,
        n_group=1,
        topk_group=1,
        num_experts_per_tok=args.topk,
        first_k_dense_replace=args.dense_layers,
        norm_topk_prob=True,
        hidden_act="silu",
        max_position_embeddings=args.max_pos,
        initializer_range=0.02,
        rms_norm_eps=1e-5,
        use_cache=True,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        attention_bias=False,
        attention_dropout=0.0,
        routed_scaling_factor=args.routed_scaling,
        sliding_window=None,
        max_window_layers=n_layers,
        layer_types=["full_attention"] * n_layers,
        pad_token_id=eos_id,
        bos_token_id=None,
        eos_token_id=eos_id,
        dtype="float32",
    )


class LoadTracker:
    """Counts routed-expert selections per MoE layer (hook on each router)."""

    def __init__(self, model):
        from transformers.models.dots1.modeling_dots1 import Dots1TopkRouter

        self.routers = [m for m in model.modules() if isinstance(m, Dots1TopkRouter)]
        self.counts = [None] * len(self.routers)
        for i, r in enumerate(self.routers):
            r.register_forward_hook(self._hook(i))

    def _hook(self, i):
        def fn(module, inputs, output):
            idx = output[2]
            c = torch.bincount(idx.reshape(-1), minlength=module.num_experts).float()
            self.counts[i] = c if self.counts[i] is None else self.counts[i] + c
        return fn

    def reset(self):
        self.counts = [None] * len(self.routers)

    @torch.no_grad()
    def update_bias(self, rate):
        # aux-loss-free balancing: raise the bias of under-loaded experts, lower over-loaded ones.
        for r, c in zip(self.routers, self.counts):
            if c is None:
                continue
            r.e_score_correction_bias.add_(rate * torch.sign(c.mean() - c))

    def imbalance(self):
        out = []
        for c in self.counts:
            if c is not None:
                out.append(float(c.max() / c.mean()))
        return out


def lr_at(step, total, warmup, peak, floor_frac=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (floor_frac + (1 - floor_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


@torch.no_grad()
def evaluate(model, data, seq_len, batch, max_batches):
    model.eval()
    n = (len(data) - 1) // seq_len
    starts = np.arange(n) * seq_len
    losses = []
    for b in range(0, min(n, max_batches * batch), batch):
        s = starts[b:b + batch]
        x = torch.from_numpy(np.stack([data[i:i + seq_len] for i in s]))
        y = torch.from_numpy(np.stack([data[i + 1:i + seq_len + 1] for i in s]))
        logits = model(input_ids=x, use_cache=False).logits
        losses.append(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item())
    model.train()
    return float(np.mean(losses))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "kjv-tiny"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--dense-layers", type=int, default=1)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--dense-ffn", type=int, default=768)
    ap.add_argument("--expert-ffn", type=int, default=192)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--shared-experts", type=int, default=1)
    ap.add_argument("--topk", type=int, default=2)
    ap.add_argument("--routed-scaling", type=float, default=2.5)
    ap.add_argument("--max-pos", type=int, default=1024)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--bias-rate", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--eval-batches", type=int, default=16)
    ap.add_argument("--time-budget", type=float, default=0, help="stop early after this many seconds (0: off)")
    ap.add_argument("--measure", type=int, default=0, help="only time this many steps, write nothing")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--experts-impl", default="eager", help="HF experts implementation used for training")
    ap.add_argument("--log-json", default="/tmp/kjv-tiny.train.json", help="where to write a training summary")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16",
                    help="dtype of the saved weights (the router is always kept in float32)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    from transformers import Dots1ForCausalLM, GenerationConfig

    t0 = time.time()
    chapters = load_kjv()
    train_docs, val_docs = split_corpus(chapters)
    n_train_chars = sum(len(d) for d in train_docs)
    n_val_chars = sum(len(d) for d in val_docs)
    print(f"corpus: {len(chapters)} chapters, {sum(len(c[2]) for c in chapters)} verses; "
          f"train {n_train_chars} chars, val {n_val_chars} chars ({100 * n_val_chars / (n_train_chars + n_val_chars):.2f}%)",
          flush=True)

    tok = train_tokenizer(train_docs, args.vocab)
    eos_id = tok.token_to_id("<|endoftext|>")
    train_ids = encode_docs(tok, train_docs, eos_id)
    val_ids = encode_docs(tok, val_docs, eos_id)
    print(f"tokenizer: vocab {tok.get_vocab_size()}, eos id {eos_id}; train {len(train_ids)} tokens, "
          f"val {len(val_ids)} tokens ({time.time() - t0:.1f}s)", flush=True)

    config = make_config(args, tok.get_vocab_size(), eos_id)
    model = Dots1ForCausalLM._from_config(config, attn_implementation="eager", dtype=torch.float32,
                                          experts_implementation=args.experts_impl)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters ({n_params / 1e6:.2f} M), experts implementation "
          f"{model.config._experts_implementation}", flush=True)

    tracker = LoadTracker(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embed_tokens" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    rng = np.random.default_rng(args.seed)
    max_start = len(train_ids) - args.seq - 1
    steps = args.measure if args.measure else args.steps
    t_train = time.time()
    run_loss, run_n, tokens_seen = 0.0, 0, 0
    last = {"train": float("nan"), "val": float("nan")}
    history = []
    step = 0
    for step in range(steps):
        lr = lr_at(step, args.steps, args.warmup, args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, max_start, size=args.batch)
        x = torch.from_numpy(np.stack([train_ids[s:s + args.seq] for s in starts]))
        y = torch.from_numpy(np.stack([train_ids[s + 1:s + args.seq + 1] for s in starts]))
        logits = model(input_ids=x, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tracker.update_bias(args.bias_rate)
        run_loss += loss.item()
        run_n += 1
        tokens_seen += x.numel()
        if args.measure:
            el = time.time() - t_train
            print(f"step {step + 1}: loss {loss.item():.4f}  {el / (step + 1):.3f} s/step  "
                  f"{tokens_seen / el:.0f} tok/s  imbalance {['%.2f' % v for v in tracker.imbalance()]}", flush=True)
            tracker.reset()
            continue
        if (step + 1) % 50 == 0:
            el = time.time() - t_train
            print(f"step {step + 1}/{args.steps} lr {lr:.2e} train loss {run_loss / run_n:.4f} "
                  f"({tokens_seen / el:.0f} tok/s, {el:.0f}s) max/mean expert load "
                  f"{['%.2f' % v for v in tracker.imbalance()]}", flush=True)
            last["train"] = run_loss / run_n
            run_loss, run_n = 0.0, 0
            tracker.reset()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            v = evaluate(model, val_ids, args.seq, args.batch, args.eval_batches)
            last["val"] = v
            history.append((step + 1, last["train"], v))
            print(f"step {step + 1}: val loss {v:.4f}", flush=True)
        if args.time_budget and time.time() - t_train > args.time_budget:
            print(f"time budget reached at step {step + 1}", flush=True)
            break
    train_time = time.time() - t_train
    if args.measure:
        return

    os.makedirs(args.out, exist_ok=True)
    write_tokenizer_files(tok, args.out, args.max_pos)
    model.eval()
    if args.dtype == "bfloat16":
        # What HF itself writes for a bf16 Dots1: everything bf16 except the router
        # (gate.weight, e_score_correction_bias), which Dots1 keeps in float32.
        model.to(torch.bfloat16)
        for r in tracker.routers:
            r.weight.data = r.weight.data.float()
            r.e_score_correction_bias.data = r.e_score_correction_bias.data.float()
    model.save_pretrained(args.out, safe_serialization=True)
    os.chmod(os.path.join(args.out, "model.safetensors"), 0o644)
    gen = GenerationConfig(eos_token_id=eos_id, pad_token_id=eos_id, bos_token_id=None, do_sample=False,
                           max_new_tokens=64)
    gen.save_pretrained(args.out)

    # Final losses of the checkpoint as shipped (reloaded from disk, float32 compute):
    # the whole validation split, and the same amount (x2) of training text.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    del model, opt
    shipped = AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.float32, attn_implementation="eager",
                                                   experts_implementation="eager")
    final_val = evaluate(shipped, val_ids, args.seq, args.batch, 10 ** 9)
    final_train = evaluate(shipped, train_ids[: len(val_ids) * 2], args.seq, args.batch, 10 ** 9)
    print(f"final (shipped weights): train loss {final_train:.4f}, val loss {final_val:.4f}, {step + 1} steps, "
          f"{tokens_seen} tokens, {train_time:.0f}s", flush=True)

    hf_tok = AutoTokenizer.from_pretrained(args.out)
    samples = []
    for prompt in ["In the beginning God created", "And the LORD spake unto Moses, saying,", "Blessed are the"]:
        ids = torch.tensor([hf_tok(prompt, add_special_tokens=False)["input_ids"]])
        g = shipped.generate(ids, do_sample=False, max_new_tokens=48)
        torch.manual_seed(args.seed)
        s_ = shipped.generate(ids, do_sample=True, temperature=0.8, top_k=40, max_new_tokens=48)
        samples.append({"prompt": prompt,
                        "greedy": hf_tok.decode(g[0], skip_special_tokens=False),
                        "sampled": hf_tok.decode(s_[0], skip_special_tokens=False)})
        print(f"--- {prompt!r}\n[greedy]  {samples[-1]['greedy']!r}\n[sampled] {samples[-1]['sampled']!r}", flush=True)

    info = {
        "seed": args.seed,
        "command": "python3 " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "bible_kjv_text_version": dpkg_version("bible-kjv-text"),
        "bible_kjv_version": dpkg_version("bible-kjv"),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "tokenizers": __import__("tokenizers").__version__,
        "n_params": n_params,
        "steps": step + 1,
        "tokens_seen": tokens_seen,
        "train_tokens": int(len(train_ids)),
        "val_tokens": int(len(val_ids)),
        "train_chars": n_train_chars,
        "val_chars": n_val_chars,
        "final_train_loss": final_train,
        "final_val_loss": final_val,
        "train_time_s": train_time,
        "history": history,
        "samples": samples,
        "args": vars(args),
    }
    with open(args.log_json, "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(json.dumps({k: v for k, v in info.items() if k not in ("history", "args", "samples")}, indent=2), flush=True)


if __name__ == "__main__":
    main()
