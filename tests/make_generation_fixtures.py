#!/usr/bin/env python3
"""Reference fixtures for dots1's generation API, made with Hugging Face transformers' `generate`.

Writes tests/fixtures/generation/:
  <case>/config.json, model.safetensors, generation_config.json   a tiny random Dots1 checkpoint
  <case>/runs.json          each run: prompt ids (left-padded), attention mask (or none), the generate()
                            options, and HF's output sequences (greedy), plus the smallest top-1/top-2 score
                            margin met on the way (greedy ties would make a token-for-token test fragile)
  processors.safetensors    score vectors, input ids and, per processor case, HF's processed scores
  processors.json           the processor cases (type and arguments, in application order)
  scores.json, scores.safetensors
                            generate(return_dict_in_generate, output_scores, output_logits) on the dense_gqa
                            checkpoint: per run the sequences, HF's scores and logits per step and
                            compute_transition_scores (raw, normalized, and normalized over the logits);
                            num_return_sequences runs and HF's error for it with greedy
  stop_strings.json         generate(stop_strings=..., tokenizer=...) on examples/models/kjv-tiny (with its
                            tokenizer), HF's clean token strings (bytes, hex) and StopStringCriteria's answer at
                            every end position of token sequences for several stop-string sets
  context.json              generation past max_position_embeddings on the moe_groups checkpoint: HF goes on,
                            warning once; its sequences and the warning text

Everything is float32 with eager attention and fixed seeds. Run from the repository root:
  python3 tests/make_generation_fixtures.py [--only PART ...]   (PART: generation processors scores stop_strings
                                                                   context; default all)
                                            (needs: pip install torch transformers safetensors)
"""
import argparse
import json
import logging
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers.generation.stopping_criteria import StopStringCriteria
from transformers.generation.logits_process import (
    LogitsProcessorList, MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor, MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_fixtures  # noqa: E402  (weights of O(1) scale)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "generation")
MIN_MARGIN = 1e-3  # every greedy choice must beat the runner-up by this much (our logits match HF to ~1e-5)

TINY = dict(
    vocab_size=64, hidden_size=32, intermediate_size=32, moe_intermediate_size=8, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2,
    first_k_dense_replace=1, max_position_embeddings=64, rms_norm_eps=1e-6, sliding_window=None,
)


def make_model(overrides, seed):
    return make_model_fixtures.make_model(TINY, overrides, seed)


def left_pad(prompts, pad):
    n = max(len(p) for p in prompts)
    ids = [[pad] * (n - len(p)) + p for p in prompts]
    mask = [[0] * (n - len(p)) + [1] * len(p) for p in prompts]
    return ids, mask


def hf_generate(model, ids, mask, options):
    kw = dict(options)
    kw["do_sample"] = False
    kw["return_dict_in_generate"] = True
    kw["output_scores"] = True
    if mask is not None:
        kw["attention_mask"] = torch.tensor(mask)
    with torch.no_grad():
        out = model.generate(torch.tensor(ids), **kw)
    seqs = out.sequences.tolist()
    # smallest top-1 / top-2 margin over the rows still running at each step
    prompt_len = len(ids[0])
    eos = options.get("eos_token_id")
    eos = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    margin = float("inf")
    running = [True] * len(ids)
    for k, s in enumerate(out.scores):
        top = torch.topk(s, 2).values
        for b in range(len(ids)):
            if running[b]:
                margin = min(margin, float(top[b, 0] - top[b, 1]))
        for b in range(len(ids)):
            if seqs[b][prompt_len + k] in eos:
                running[b] = False
    return seqs, margin


def write_case(name, overrides, seed, runs):
    model = make_model(overrides, seed)
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    for r in runs:
        seqs, margin = hf_generate(model, r["input_ids"], r.get("attention_mask"), r["options"])
        assert margin > MIN_MARGIN, f"{name}/{r['name']}: greedy margin {margin} too small, pick other prompts"
        r["sequences"] = seqs
        r["min_margin"] = margin
        print(f"  {name}/{r['name']}: {len(seqs)} x {len(seqs[0])} tokens, min margin {margin:.3g}")
    with open(os.path.join(folder, "runs.json"), "w") as f:
        json.dump({"seed": seed, "runs": runs}, f, indent=1)
    return model


def early_eos(model, ids, mask, options, avoid=()):
    """A token that greedy decoding produces at step 1 or 2 in exactly one row and in no other row before
    the end: with it as eos, that row stops early while the others run on."""
    seqs, _ = hf_generate(model, ids, mask, options)
    n = len(ids[0])
    gen = [row[n:] for row in seqs]
    for step in (1, 2):
        for b, row in enumerate(gen):
            t = row[step]
            if t in avoid or t in row[:step]:
                continue
            if all(t not in other for c, other in enumerate(gen) if c != b):
                return t, b, step, seqs
    raise RuntimeError("no early eos candidate; change the prompts")


def generation_cases():
    g = torch.Generator().manual_seed(2024)
    V = TINY["vocab_size"]
    rand = lambda n: torch.randint(1, V, (n,), generator=g).tolist()  # noqa: E731  (0 is kept for padding)

    # 1. GQA, one dense layer then MoE: one prompt, a left-padded batch, an eos that fires early in one row,
    #    min_new_tokens holding that eos back, repetition penalty, max_length alone and with max_new_tokens,
    #    and a mask inferred from pad tokens (no attention_mask given).
    name, overrides, seed = "dense_gqa", dict(), 101
    model = make_model(overrides, seed)
    single = [rand(5)]
    ids, mask = left_pad([rand(4), rand(7), rand(2)], 0)
    eos, row, step, _ = early_eos(model, ids, mask, dict(max_new_tokens=10), avoid={0})
    print(f"dense_gqa: eos {eos} fires in row {row} at step {step}")
    runs = [
        dict(name="single", input_ids=single, options=dict(max_new_tokens=12)),
        dict(name="padded_batch", input_ids=ids, attention_mask=mask, options=dict(max_new_tokens=10)),
        dict(name="eos_early", input_ids=ids, attention_mask=mask,
             options=dict(max_new_tokens=10, eos_token_id=eos, pad_token_id=0)),
        dict(name="min_new_tokens", input_ids=ids, attention_mask=mask,
             options=dict(max_new_tokens=10, eos_token_id=eos, pad_token_id=0, min_new_tokens=step + 2)),
        dict(name="repetition_penalty", input_ids=ids, attention_mask=mask,
             options=dict(max_new_tokens=10, repetition_penalty=1.6)),
        dict(name="max_length", input_ids=single, options=dict(max_length=11)),
        dict(name="max_new_tokens_wins", input_ids=single, options=dict(max_length=30, max_new_tokens=4)),
        dict(name="inferred_mask", input_ids=ids, options=dict(max_new_tokens=6, pad_token_id=0)),
    ]
    # Pads that are a token the penalised generation picks: HF skips the left padding of each row
    # (prompt_ignore_length = attention_mask.argmax(1)), so penalising them would change the result.
    seqs, _ = hf_generate(model, ids, mask, dict(max_new_tokens=10, repetition_penalty=1.6))
    pad = seqs[0][len(ids[0])]
    pad_ids = [[pad if m == 0 else t for t, m in zip(row, mrow)] for row, mrow in zip(ids, mask)]
    runs.append(dict(name="repetition_penalty_pads", input_ids=pad_ids, attention_mask=mask,
                     options=dict(max_new_tokens=10, repetition_penalty=1.6)))
    with torch.no_grad():
        penalised_pads = model.generate(torch.tensor(pad_ids), attention_mask=torch.tensor(mask), max_new_tokens=10,
                                        do_sample=False, logits_processor=LogitsProcessorList(
                                            [RepetitionPenaltyLogitsProcessor(1.6)])).tolist()
    write_case(name, overrides, seed, runs)
    by = {r["name"]: r["sequences"] for r in runs}
    assert by["repetition_penalty_pads"] != penalised_pads, "pads must matter for this run"
    assert by["eos_early"] != by["padded_batch"] and by["min_new_tokens"] != by["eos_early"]
    assert by["repetition_penalty"] != by["padded_batch"]
    assert by["inferred_mask"] == [r[:len(ids[0]) + 6] for r in by["padded_batch"]]

    # 2. All layers MoE with expert groups; a small max_position_embeddings so the default length
    #    (prompt + 20) is capped by it; eos as a list with no pad id (finished rows get eos[0]); min_length.
    name, overrides, seed = "moe_groups", dict(first_k_dense_replace=0, n_routed_experts=8, n_group=2, topk_group=1,
                                               num_experts_per_tok=2, max_position_embeddings=20), 202
    model = make_model(overrides, seed)
    ids, mask = left_pad([rand(6), rand(3)], 0)
    eos, row, step, seqs = early_eos(model, ids, mask, dict(max_new_tokens=8), avoid={0})
    print(f"moe_groups: eos {eos} fires in row {row} at step {step}")
    other = next(t for t in range(1, V) if all(t not in r for r in seqs))  # an eos that never fires
    runs = [
        dict(name="default_length", input_ids=[rand(6)], options=dict()),
        dict(name="eos_list_no_pad", input_ids=ids, attention_mask=mask,
             options=dict(max_new_tokens=8, eos_token_id=[other, eos])),
        dict(name="min_length", input_ids=ids, attention_mask=mask,
             options=dict(max_new_tokens=8, eos_token_id=[other, eos], min_length=len(ids[0]) + step + 2)),
    ]
    write_case(name, overrides, seed, runs)
    assert len(runs[0]["sequences"][0]) == 20, "default max_length must be capped at max_position_embeddings"
    assert runs[1]["sequences"] != runs[2]["sequences"]

    # 3. Sliding window 4 on layers >= 1, MQA, attention biases, tied embeddings: generations much longer
    #    than the window, one padded batch and one single prompt.
    name, overrides, seed = "sliding", dict(sliding_window=4, max_window_layers=1, num_key_value_heads=1,
                                            attention_bias=True, tie_word_embeddings=True), 303
    ids, mask = left_pad([rand(3), rand(6)], 0)
    runs = [
        dict(name="padded_batch", input_ids=ids, attention_mask=mask, options=dict(max_new_tokens=14)),
        dict(name="single", input_ids=[rand(2)], options=dict(max_new_tokens=10)),
    ]
    write_case(name, overrides, seed, runs)


def processor_cases():
    """HF's processors on saved score vectors, alone and chained in _get_logits_processor's order."""
    g = torch.Generator().manual_seed(77)
    R, V, L = 4, 40, 10
    scores = 2.5 * torch.randn(R, V, generator=g)
    scores[1, 7] = scores[1, 11] = scores[1].max() - 0.3  # a tie inside the top-k
    scores[2] *= 0.2                                       # a flat row: top-p keeps many
    scores[3] *= 4.0                                       # a peaked row
    ids = torch.randint(0, V, (R, L), generator=g)
    ids[0, 3] = ids[0, 5]                                  # a repeated token
    ignore = [0, 3, 0, 6]                                  # left padding per row (repetition penalty skips it)
    eos = [3, 7]

    def rep(p, ign):
        return dict(type="repetition_penalty", penalty=p, prompt_ignore_length=ign), \
            RepetitionPenaltyLogitsProcessor(p, prompt_ignore_length=torch.tensor(ign) if ign else None)
    specs = {
        "repetition_1.3_ignore": [rep(1.3, ignore)],
        "repetition_0.7": [rep(0.7, None)],
        "temperature_0.7": [(dict(type="temperature", value=0.7), TemperatureLogitsWarper(0.7))],
        "temperature_1.8": [(dict(type="temperature", value=1.8), TemperatureLogitsWarper(1.8))],
        "top_k_1": [(dict(type="top_k", value=1), TopKLogitsWarper(1))],
        "top_k_5": [(dict(type="top_k", value=5), TopKLogitsWarper(5))],
        "top_k_above_vocab": [(dict(type="top_k", value=100), TopKLogitsWarper(100))],
        "top_p_0.9": [(dict(type="top_p", value=0.9), TopPLogitsWarper(0.9))],
        "top_p_0.5": [(dict(type="top_p", value=0.5), TopPLogitsWarper(0.5))],
        "top_p_0.01": [(dict(type="top_p", value=0.01), TopPLogitsWarper(0.01))],
        "min_p_0.05": [(dict(type="min_p", value=0.05), MinPLogitsWarper(0.05))],
        "min_p_0.3": [(dict(type="min_p", value=0.3), MinPLogitsWarper(0.3))],
        "min_length_active": [(dict(type="min_length", value=L + 1, eos=eos), MinLengthLogitsProcessor(L + 1, eos))],
        "min_length_reached": [(dict(type="min_length", value=L, eos=eos), MinLengthLogitsProcessor(L, eos))],
        "min_new_tokens_active": [(dict(type="min_new_tokens", prompt_length=6, value=5, eos=eos),
                                   MinNewTokensLengthLogitsProcessor(6, 5, eos))],
        "min_new_tokens_reached": [(dict(type="min_new_tokens", prompt_length=6, value=4, eos=eos),
                                    MinNewTokensLengthLogitsProcessor(6, 4, eos))],
        "chain": [rep(1.2, ignore),
                  (dict(type="min_length", value=L + 2, eos=eos), MinLengthLogitsProcessor(L + 2, eos)),
                  (dict(type="temperature", value=0.8), TemperatureLogitsWarper(0.8)),
                  (dict(type="top_k", value=12), TopKLogitsWarper(12)),
                  (dict(type="top_p", value=0.8), TopPLogitsWarper(0.8)),
                  (dict(type="min_p", value=0.1), MinPLogitsWarper(0.1))],
    }
    tensors = {"scores": scores.contiguous(), "input_ids": ids.contiguous()}
    cases = []
    for name, chain in specs.items():
        x = scores.clone()
        for _, proc in chain:
            x = proc(ids, x)
        tensors[name] = x.contiguous()
        kept = (x != -float("inf")).sum(dim=1).tolist()
        cases.append(dict(name=name, processors=[spec for spec, _ in chain]))
        print(f"  processors/{name}: kept per row {kept}")
    save_file(tensors, os.path.join(OUT, "processors.safetensors"))
    with open(os.path.join(OUT, "processors.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KJV = os.path.join(ROOT, "examples", "models", "kjv-tiny")


def load_checkpoint(folder):
    """A saved fixture checkpoint (or the embedded model) in float32 with eager attention and experts."""
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager",
                                                experts_implementation="eager").eval()


def greedy_margin(scores, seqs, prompt_len, eos):
    """Smallest top-1 / top-2 margin of the processed scores over the rows still running."""
    margin = float("inf")
    running = [True] * len(seqs)
    for k, s in enumerate(scores):
        top = torch.topk(s, 2).values
        for b in range(len(seqs)):
            if running[b]:
                margin = min(margin, float(top[b, 0] - top[b, 1]))
        for b in range(len(seqs)):
            if seqs[b][prompt_len + k] in eos:
                running[b] = False
    return margin


def scores_cases():
    """HF's output_scores / output_logits / compute_transition_scores, and num_return_sequences, on the
    dense_gqa checkpoint (vocab 64)."""
    model = load_checkpoint(os.path.join(OUT, "dense_gqa"))
    runs_in = json.load(open(os.path.join(OUT, "dense_gqa", "runs.json")))["runs"]
    single = next(r for r in runs_in if r["name"] == "single")["input_ids"]
    batch = next(r for r in runs_in if r["name"] == "padded_batch")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    eos = next(r for r in runs_in if r["name"] == "eos_early")["options"]["eos_token_id"]
    runs = [
        dict(name="greedy_batch", input_ids=ids, attention_mask=mask, options=dict(max_new_tokens=6)),
        # processors in the greedy pipeline: repetition penalty and min_new_tokens holding an eos back; rows
        # finish early, so later steps score pads (transition scores of pads included, as HF)
        dict(name="greedy_processors", input_ids=ids, attention_mask=mask,
             options=dict(max_new_tokens=8, repetition_penalty=1.6, eos_token_id=eos, pad_token_id=0, min_new_tokens=2)),
        # sampling whose draw is certain (top_k 1 leaves one token): the warpers' scores are deterministic
        dict(name="sampled_top_k_1", input_ids=ids, attention_mask=mask,
             options=dict(max_new_tokens=5, do_sample=True, temperature=0.7, top_k=1, repetition_penalty=1.3)),
        # num_return_sequences: each prompt row repeated, interleaved (a a a b b b)
        dict(name="num_return_sequences", input_ids=[ids[0], ids[2]], attention_mask=[mask[0], mask[2]],
             options=dict(max_new_tokens=4, do_sample=True, top_k=1, num_return_sequences=3)),
        dict(name="single_min_new_tokens_eos", input_ids=single,
             options=dict(max_new_tokens=6, eos_token_id=eos, min_new_tokens=3)),
    ]
    tensors = {}
    torch.manual_seed(0)
    for r in runs:
        kw = dict(r["options"], return_dict_in_generate=True, output_scores=True, output_logits=True)
        if "attention_mask" in r:
            kw["attention_mask"] = torch.tensor(r["attention_mask"])
        with torch.no_grad():
            out = model.generate(torch.tensor(r["input_ids"]), **kw)
        seqs = out.sequences.tolist()
        prompt_len = len(r["input_ids"][0])
        e = r["options"].get("eos_token_id")
        r["sequences"] = seqs
        if not r["options"].get("do_sample"):
            r["min_margin"] = greedy_margin(out.scores, seqs, prompt_len, {e} if e is not None else set())
            assert r["min_margin"] > MIN_MARGIN, f"scores/{r['name']}: greedy margin {r['min_margin']}"
        n = r["name"]
        tensors[f"{n}.scores"] = torch.stack(out.scores).contiguous()  # [steps, rows, vocab]
        tensors[f"{n}.logits"] = torch.stack(out.logits).contiguous()
        tensors[f"{n}.transition"] = model.compute_transition_scores(out.sequences, out.scores).contiguous()
        tensors[f"{n}.transition_normalized"] = model.compute_transition_scores(
            out.sequences, out.scores, normalize_logits=True).contiguous()
        tensors[f"{n}.transition_logits_normalized"] = model.compute_transition_scores(
            out.sequences, out.logits, normalize_logits=True).contiguous()
        print(f"  scores/{n}: {len(seqs)} x {len(seqs[0]) - prompt_len} steps")
    by = {r["name"]: r for r in runs}
    nrs = by["num_return_sequences"]["sequences"]
    assert nrs[0] == nrs[1] == nrs[2] and nrs[3] == nrs[4] == nrs[5] and nrs[0] != nrs[3], "rows must be a a a b b b"
    assert by["greedy_processors"]["sequences"] != by["greedy_batch"]["sequences"][:len(ids)]
    errors = []
    try:
        model.generate(torch.tensor(single), max_new_tokens=3, do_sample=False, num_return_sequences=2)
        raise AssertionError("HF accepted num_return_sequences with greedy")
    except ValueError as err:
        errors.append(dict(name="num_return_sequences_greedy", options=dict(max_new_tokens=3, num_return_sequences=2),
                           input_ids=single, message=str(err)))
    save_file(tensors, os.path.join(OUT, "scores.safetensors"))
    with open(os.path.join(OUT, "scores.json"), "w") as f:
        json.dump({"model": "dense_gqa", "runs": runs, "errors": errors}, f, indent=1)


def stop_string_cases():
    """StopStringCriteria and generate(stop_strings=...) on the embedded model with its own tokenizer."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(KJV)
    mode = StopStringCriteria._get_stop_string_matching_mode(tok)
    assert mode == "byte_level", mode
    clean, indices = StopStringCriteria.clean_tokenizer_vocab(tok, stop_string_matching_mode=mode)
    vocab = len(tok)
    token_bytes = [None] * vocab
    for b, i in zip(clean, indices):
        token_bytes[i] = b.hex()
    model = load_checkpoint(KJV)
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731

    # 1. The criterion alone at every end position of a few token sequences: generated text, and text with
    #    multi-byte characters that the byte-level vocabulary splits across tokens.
    with torch.no_grad():
        text_ids = model.generate(torch.tensor([enc("And God said unto Moses,")]), max_new_tokens=60, do_sample=False)[0].tolist()
    sequences = [text_ids,
                 enc("Él dijo: ¿qué? — naïve café, 東京 and the LORD."),
                 enc("the LORD, the LORD; the LORDS lord LO LORD\n\nAmen.")]
    stop_sets = [["LORD"], ["Moses, I"], ["and", "the"], ["ill n"], ["Egypt.\n"], ["é"], ["qué?", "東京"], ["D\n\nA", "O"],
                 ["said unto"], ["\n"]]
    criteria = []
    for stops in stop_sets:
        crit = StopStringCriteria(tok, stops)
        for seq in sequences:
            matches = [bool(crit(torch.tensor([seq[:end]]), None)[0]) for end in range(1, len(seq) + 1)]
            criteria.append(dict(stop_strings=stops, ids=seq, matches=matches))
        print(f"  stop_strings/criteria {stops}: {sum(sum(c['matches']) for c in criteria[-len(sequences):])} matches")

    # 2. generate() with stop strings, greedy.
    moses = enc("And God said unto Moses,")
    blessed = enc("Blessed are the")
    beginning = enc("In the beginning God created")
    pad = 4089
    n = max(len(moses), len(blessed), len(beginning))
    ids = [[pad] * (n - len(p)) + p for p in (moses, blessed, beginning)]
    mask = [[0] * (n - len(p)) + [1] * len(p) for p in (moses, blessed, beginning)]
    runs = [
        dict(name="spans_tokens", input_ids=[moses], options=dict(max_new_tokens=30, stop_strings=["thing, and"])),
        dict(name="ends_inside_token", input_ids=[moses], options=dict(max_new_tokens=30, stop_strings=["LO"])),
        dict(name="ends_inside_last_token_newline", input_ids=[moses], options=dict(max_new_tokens=30, stop_strings=["Egypt."])),
        dict(name="starts_inside_first_token", input_ids=[moses], options=dict(max_new_tokens=30, stop_strings=["ill n"])),
        dict(name="one_token", input_ids=[moses], options=dict(max_new_tokens=30, stop_strings=" will")),
        dict(name="with_the_prompt", input_ids=[moses], options=dict(max_new_tokens=30, stop_strings=["Moses, I"])),
        dict(name="first_of_two", input_ids=[moses], options=dict(max_new_tokens=30, stop_strings=["Pharaoh", "Egypt"])),
        dict(name="never", input_ids=[moses], options=dict(max_new_tokens=30, stop_strings=["Jerusalem"])),
        dict(name="batch_eos_pads", input_ids=ids, attention_mask=mask,
             options=dict(max_new_tokens=24, stop_strings=["LORD"], eos_token_id=pad, pad_token_id=pad)),
        # no eos at all: a row stopped by a stop string goes on receiving tokens (HF pads only with an eos)
        dict(name="batch_no_eos", input_ids=ids, attention_mask=mask,
             options=dict(max_new_tokens=10, stop_strings=["LORD"], eos_token_id=None, pad_token_id=None)),
    ]
    saved_eos, saved_pad = model.generation_config.eos_token_id, model.generation_config.pad_token_id
    for r in runs:
        kw = dict(r["options"])
        model.generation_config.eos_token_id, model.generation_config.pad_token_id = saved_eos, saved_pad
        if "eos_token_id" in kw and kw["eos_token_id"] is None:  # None as a kwarg would mean "the config's"
            model.generation_config.eos_token_id = None
            model.generation_config.pad_token_id = None
            kw.pop("eos_token_id")
            kw.pop("pad_token_id")
        kw.update(do_sample=False, return_dict_in_generate=True, output_scores=True, tokenizer=tok)
        if "attention_mask" in r:
            kw["attention_mask"] = torch.tensor(r["attention_mask"])
        with torch.no_grad():
            out = model.generate(torch.tensor(r["input_ids"]), **kw)
        r["sequences"] = out.sequences.tolist()
        prompt_len = len(r["input_ids"][0])
        eos = r["options"].get("eos_token_id", saved_eos)
        r["min_margin"] = greedy_margin(out.scores, r["sequences"], prompt_len, {eos} if eos is not None else set())
        assert r["min_margin"] > MIN_MARGIN, f"stop_strings/{r['name']}: greedy margin {r['min_margin']}"
        r["texts"] = [tok.decode(row[prompt_len:]) for row in r["sequences"]]
        print(f"  stop_strings/{r['name']}: {[len(row) - prompt_len for row in r['sequences']]} steps {r['texts']}")
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = saved_eos, saved_pad
    by = {r["name"]: r for r in runs}
    assert len(by["never"]["sequences"][0]) == len(moses) + 30
    assert len(by["with_the_prompt"]["sequences"][0]) == len(moses) + 1
    no_eos = by["batch_no_eos"]["sequences"][1][n:]
    assert pad not in no_eos and len(no_eos) == 10, "the stopped row must go on with real tokens"
    with open(os.path.join(OUT, "stop_strings.json"), "w") as f:
        json.dump({"model": os.path.relpath(KJV, ROOT), "matching_mode": mode, "token_bytes": token_bytes,
                   "criteria": criteria, "runs": runs}, f, indent=None, separators=(",", ":"), ensure_ascii=False)


def context_cases():
    """Past max_position_embeddings (20 in moe_groups): HF warns once and goes on."""
    model = load_checkpoint(os.path.join(OUT, "moe_groups"))
    runs_in = json.load(open(os.path.join(OUT, "moe_groups", "runs.json")))["runs"]
    prompt = next(r for r in runs_in if r["name"] == "default_length")["input_ids"]
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())
    logger = logging.getLogger("transformers.generation.stopping_criteria")
    handler = Keep()
    logger.addHandler(handler)
    from transformers.utils import logging as hf_logging
    hf_logging.get_logger("transformers.generation.stopping_criteria").warning_once.cache_clear()
    with torch.no_grad():
        out = model.generate(torch.tensor(prompt), max_new_tokens=24, do_sample=False, return_dict_in_generate=True,
                             output_scores=True)
    logger.removeHandler(handler)
    seqs = out.sequences.tolist()
    margin = greedy_margin(out.scores, seqs, len(prompt[0]), set())
    assert margin > MIN_MARGIN, f"context: greedy margin {margin}"
    warnings = [m for m in records if "maximum length" in m]
    assert len(warnings) == 1, records
    assert len(seqs[0]) == len(prompt[0]) + 24 > model.config.max_position_embeddings
    with open(os.path.join(OUT, "context.json"), "w") as f:
        json.dump({"model": "moe_groups", "max_position_embeddings": model.config.max_position_embeddings,
                   "runs": [dict(name="past_max_position_embeddings", input_ids=prompt, options=dict(max_new_tokens=24),
                                 sequences=seqs, min_margin=margin, warnings=warnings)]}, f, indent=1)
    print(f"  context: {len(seqs[0])} tokens past {model.config.max_position_embeddings}, warning {warnings[0]!r}")


PARTS = dict(generation=lambda: generation_cases(), processors=lambda: processor_cases(), scores=lambda: scores_cases(),
             stop_strings=lambda: stop_string_cases(), context=lambda: context_cases())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(PARTS), help="regenerate only these parts")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    for part in args.only or list(PARTS):
        PARTS[part]()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"total {total / 1024:.0f} KiB in {OUT}")
    assert total < 2 * 1024 * 1024


if __name__ == "__main__":
    sys.exit(main())
