#!/usr/bin/env python3
"""Reference fixtures for the Dots1 forward pass, generated with Hugging Face transformers.

For each tiny random config this writes tests/fixtures/model/<case>/:
  config.json, model.safetensors   the checkpoint (save_pretrained; per-expert tensors, or HF's fused
                                   experts.gate_up_proj/down_proj for the case marked fused)
  case.json                        the inputs of every run and of the cached step sequence
  expected.safetensors             HF's outputs: <run>.logits, <run>.loss, <run>.hidden_states.<i>,
                                   <run>.attentions.<i>, steps.logits.<k>

Everything is float32 with eager attention and fixed seeds. Run from the repository root:
  python3 tests/make_model_fixtures.py            (needs: pip install torch transformers safetensors)
"""
import json
import math
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import Dots1Config, Dots1ForCausalLM
from transformers.cache_utils import DynamicCache

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "model")

BASE = dict(
    vocab_size=96, hidden_size=32, intermediate_size=40, moe_intermediate_size=12, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
    first_k_dense_replace=1, max_position_embeddings=64, rms_norm_eps=1e-6, sliding_window=None,
)


def randomize(model, seed):
    """Weights of O(1) activations (HF's init of 0.02 would make every logit ~0 and hide errors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
            elif name.endswith("norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:  # biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
        # embeddings of norm ~2 per row: O(1) inputs, and O(1) logits when the head is tied to them
        model.model.embed_tokens.weight.copy_(0.35 * torch.randn(model.model.embed_tokens.weight.shape, generator=g))


def padded_positions(mask):
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 0)


def run_forward(model, run):
    kw = dict(use_cache=run.get("use_cache", False))
    if "input_ids" in run:
        kw["input_ids"] = torch.tensor(run["input_ids"])
    else:
        kw["inputs_embeds"] = torch.tensor(run["inputs_embeds"], dtype=torch.float32)
    for key in ("attention_mask", "position_ids", "labels"):
        if key in run:
            kw[key] = torch.tensor(run[key])
    if "logits_to_keep" in run:
        k = run["logits_to_keep"]
        kw["logits_to_keep"] = torch.tensor(k) if isinstance(k, list) else k
    kw["output_hidden_states"] = run.get("output_hidden_states", False)
    kw["output_attentions"] = run.get("output_attentions", False)
    with torch.no_grad():
        return model(**kw)


def run_steps(model, config, steps):
    """Prefill then one token per call through a DynamicCache, as generate() drives the model."""
    cache = DynamicCache(config=config)
    ids = torch.tensor(steps["prefill"])
    mask = torch.tensor(steps["attention_mask"]) if "attention_mask" in steps else None
    outs = []
    with torch.no_grad():
        kw = dict(input_ids=ids, cache=cache, use_cache=True)
        if mask is not None:
            kw["attention_mask"] = mask
            kw["position_ids"] = padded_positions(mask)
        outs.append(model(**kw).logits)
        for tok in steps["tokens"]:
            step = torch.tensor(tok).view(-1, 1)
            kw = dict(input_ids=step, cache=cache, use_cache=True)
            if mask is not None:
                mask = torch.cat([mask, torch.ones(mask.shape[0], 1, dtype=mask.dtype)], dim=1)
                kw["attention_mask"] = mask
                kw["position_ids"] = padded_positions(mask)[:, -1:]
            outs.append(model(**kw).logits)
    return outs


def make_model(base, overrides, seed):
    """A float32 eager Dots1ForCausalLM of config base + overrides, with randomize()d weights."""
    torch.manual_seed(seed)
    cfg = dict(base)
    cfg.update(overrides)
    config = Dots1Config(**cfg)
    config._attn_implementation = "eager"
    model = Dots1ForCausalLM(config).eval().to(torch.float32)
    model.config._attn_implementation = "eager"
    randomize(model, seed)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def make_case(name, overrides, runs, steps, seed, fused=False):
    model = make_model(BASE, overrides, seed)
    config = model.config
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    if fused:  # the layout recent transformers keep in memory: experts.gate_up_proj [E, 2*Im, H], experts.down_proj [E, H, Im]
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    g = torch.Generator().manual_seed(seed + 1)
    expected = {}
    for run in runs:
        out = run_forward(model, run)
        expected[f"{run['name']}.logits"] = out.logits.float().contiguous()
        if out.loss is not None:
            expected[f"{run['name']}.loss"] = out.loss.float().reshape(1)
        if run.get("output_hidden_states"):
            for i, h in enumerate(out.hidden_states):
                expected[f"{run['name']}.hidden_states.{i}"] = h.contiguous()
        if run.get("output_attentions"):
            for i, a in enumerate(out.attentions):
                expected[f"{run['name']}.attentions.{i}"] = a.contiguous()
    if steps is not None:
        for k, logits in enumerate(run_steps(model, config, steps)):
            expected[f"steps.logits.{k}"] = logits.contiguous()
    save_file(expected, os.path.join(folder, "expected.safetensors"))
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump({"runs": runs, "steps": steps, "fused_experts": fused, "seed": seed}, f)
    size = sum(os.path.getsize(os.path.join(folder, x)) for x in os.listdir(folder))
    print(f"{name}: {size / 1024:.0f} KiB, runs {[r['name'] for r in runs]}, steps {steps is not None}")


def ids(g, b, s, v):
    return torch.randint(0, v, (b, s), generator=g).tolist()


def main():
    g = torch.Generator().manual_seed(1234)
    V = BASE["vocab_size"]

    # 1. GQA, two dense layers then MoE, norm_topk_prob on, routed scaling, a left-padded batch with
    #    labels, hidden states and attentions; cached steps on the padded batch.
    pad_mask = [[0, 0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 1]]
    x = ids(g, 3, 8, V)
    labels = [[-100 if m == 0 else t for t, m in zip(row, mrow)] for row, mrow in zip(x, pad_mask)]
    pos = padded_positions(torch.tensor(pad_mask)).tolist()
    make_case("gqa_dense2", dict(num_hidden_layers=4, num_key_value_heads=2, head_dim=16, hidden_size=48,
                                 first_k_dense_replace=2, norm_topk_prob=True, routed_scaling_factor=2.5,
                                 num_experts_per_tok=3, n_shared_experts=2),
              runs=[dict(name="padded", input_ids=x, attention_mask=pad_mask, position_ids=pos, labels=labels,
                         output_hidden_states=True, output_attentions=True),
                    dict(name="keep2", input_ids=x, logits_to_keep=2),
                    dict(name="cache_default", input_ids=x, use_cache=True)],
              steps=dict(prefill=x, attention_mask=pad_mask, tokens=ids(g, 4, 3, V)), seed=1)

    # 2. All layers MoE, expert groups (n_group 4, topk_group 2), norm_topk_prob off, linear RoPE,
    #    logits_to_keep as a list, inputs_embeds, packed sequences (no cache, non-consecutive positions).
    x = ids(g, 2, 7, V)
    make_case("groups_moe0", dict(first_k_dense_replace=0, n_routed_experts=16, n_group=4, topk_group=2,
                                  num_experts_per_tok=4, norm_topk_prob=False, routed_scaling_factor=1.7,
                                  rope_parameters=dict(rope_type="linear", factor=2.0, rope_theta=500.0)),
              runs=[dict(name="labels", input_ids=x, labels=x, output_hidden_states=True),
                    dict(name="keep_list", input_ids=x, logits_to_keep=[0, 3, -1]),
                    dict(name="embeds", inputs_embeds=torch.randn(2, 7, 32, generator=g).tolist()),
                    dict(name="packed", input_ids=x, position_ids=[[0, 1, 2, 0, 1, 2, 3], [0, 1, 0, 1, 2, 3, 4]],
                          use_cache=False, output_attentions=True)],
              steps=dict(prefill=[r[:4] for r in x], tokens=ids(g, 3, 2, V)), seed=2, fused=True)

    # 3. Sliding window 4 on layers >= 1 of 3, MQA (1 KV head), attention biases, tied embeddings, GELU;
    #    sequences longer than the window; cached steps that pass the window; a padded sliding batch.
    x = ids(g, 2, 10, V)
    pad_mask = [[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], [1] * 10]
    make_case("sliding_mqa", dict(sliding_window=4, max_window_layers=1, num_key_value_heads=1, attention_bias=True,
                                  tie_word_embeddings=True, hidden_act="gelu", num_experts_per_tok=3),
              runs=[dict(name="full", input_ids=x, output_hidden_states=True, output_attentions=True, labels=x),
                    dict(name="padded", input_ids=x, attention_mask=pad_mask,
                         position_ids=padded_positions(torch.tensor(pad_mask)).tolist(), output_attentions=True)],
              steps=dict(prefill=[r[:3] for r in x], tokens=ids(g, 8, 2, V)), seed=3)

    # 4. Dynamic NTK RoPE: sequences beyond max_position_embeddings trigger the runtime update; the cached
    #    steps cross it (HF does not re-rotate cached keys).
    x = ids(g, 1, 24, V)
    make_case("rope_dynamic", dict(max_position_embeddings=16, rope_scaling=dict(type="dynamic", factor=2.0), rope_theta=1000.0),
              runs=[dict(name="long", input_ids=x), dict(name="short", input_ids=[x[0][:10]])],
              steps=dict(prefill=[x[0][:12]], tokens=[[t] for t in x[0][12:20]]), seed=4)

    # 5. YaRN (rope_parameters spelling, explicit original length), 6. LongRoPE (long factors beyond the
    #    original length), 7. Llama-3 RoPE. Each with a long and a short run.
    x = ids(g, 1, 20, V)
    make_case("rope_yarn", dict(rope_parameters=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=8,
                                                     rope_theta=10000.0, beta_fast=16, beta_slow=2)),
              runs=[dict(name="long", input_ids=x)], steps=None, seed=5)
    half = 4  # head_dim 8 -> 4 frequencies
    make_case("rope_longrope", dict(rope_scaling=dict(rope_type="longrope", short_factor=[1.0, 1.1, 1.3, 1.7][:half],
                                                      long_factor=[1.0, 2.0, 4.0, 8.0][:half], original_max_position_embeddings=8),
                                    max_position_embeddings=32),
              runs=[dict(name="long", input_ids=x), dict(name="short", input_ids=[x[0][:6]])],
              steps=dict(prefill=[x[0][:5]], tokens=[[t] for t in x[0][5:11]]), seed=6)
    make_case("rope_llama3", dict(rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                                    original_max_position_embeddings=16), rope_theta=50.0),
              runs=[dict(name="long", input_ids=x)], steps=None, seed=7)
    # 8. Proportional RoPE (HF main): only the first int(prf * head_dim // 2) frequency pairs rotate, the rest
    #    pass through; the one rope type for which Dots1 honours partial_rotary_factor.
    make_case("rope_proportional", dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                        rope_parameters=dict(rope_type="proportional", partial_rotary_factor=0.5, factor=2.0,
                                                             rope_theta=10000.0)),
              runs=[dict(name="long", input_ids=x, output_attentions=True)],
              steps=dict(prefill=[x[0][:8]], tokens=[[t] for t in x[0][8:12]]), seed=8)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"total {total / 1024:.0f} KiB in {OUT}")


if __name__ == "__main__":
    sys.exit(main())
