#!/usr/bin/env python3
"""Reference fixtures for Qwen3 (Qwen3ForCausalLM) and Qwen3-MoE (Qwen3MoeForCausalLM), made with Hugging Face
transformers, in the formats of tests/fixtures/model and tests/fixtures/generation so the same C++ readers apply.

For each tiny random config this writes tests/fixtures/qwen3/<case>/:
  config.json, generation_config.json, model.safetensors
                        the checkpoint exactly as save_pretrained writes it: per-expert
                        mlp.experts.<e>.{gate,up,down}_proj.weight (HF reverts its fused in-memory layout on save,
                        the layout of released Qwen3-MoE checkpoints), or, for the case marked fused_experts,
                        save_pretrained(save_original_format=False): HF's in-memory fused
                        mlp.experts.gate_up_proj [E, 2*Im, H] and mlp.experts.down_proj [E, H, Im]
  case.json             as tests/fixtures/model: the inputs of every forward run and of the cached step sequence
                        (plus, for MoE cases, min_router_gap: the smallest gap between the k-th and (k+1)-th
                        router probability met in any call, so that no expert choice is a near tie)
  expected.safetensors  HF's outputs: <run>.logits, <run>.loss, <run>.hidden_states.<i>, <run>.attentions.<i>,
                        steps.logits.<k>
  runs.json             as tests/fixtures/generation: greedy generate() runs (a left-padded batch of 2 and a single
                        prompt) with HF's sequences and the smallest top-1/top-2 margin met on the way

Everything is float32 with eager attention, HF's default experts implementation, fixed seeds and one CPU thread
(so the bytes do not depend on the machine's core count). Rerunning rewrites identical files. From the repository root:
  HF_HUB_OFFLINE=1 python3 tests/make_qwen3_fixtures.py   (needs: pip install torch transformers safetensors)
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeTopKRouter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_generation_fixtures as generation  # noqa: E402  (left_pad, hf_generate, MIN_MARGIN)
import make_model_fixtures as reference  # noqa: E402  (randomize, run_forward, run_steps, padded_positions)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "qwen3")
MIN_ROUTER_GAP = 1e-4  # k-th vs (k+1)-th router probability: our probabilities match HF's to ~1e-7

DENSE = dict(vocab_size=96, hidden_size=32, intermediate_size=24, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, head_dim=12, max_position_embeddings=64, rms_norm_eps=1e-6)
MOE = dict(vocab_size=96, hidden_size=32, intermediate_size=24, moe_intermediate_size=8, num_hidden_layers=3,
           num_attention_heads=4, num_key_value_heads=2, head_dim=12, num_experts=8, num_experts_per_tok=2,
           max_position_embeddings=64, rms_norm_eps=1e-6)
KINDS = {"qwen3": (Qwen3Config, Qwen3ForCausalLM), "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM)}


def make_model(kind, cfg, seed):
    """A float32 eager model of the given config with make_model_fixtures.randomize()d weights (O(1) logits)."""
    config_class, model_class = KINDS[kind]
    torch.manual_seed(seed)
    config = config_class(**cfg)
    config._attn_implementation = "eager"
    model = model_class(config).eval().to(torch.float32)
    model.config._attn_implementation = "eager"
    reference.randomize(model, seed)
    if config.tie_word_embeddings:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


class RouterGap:
    """The smallest k-th / (k+1)-th router probability gap over every routed token of every call."""

    def __init__(self, model):
        self.gap = float("inf")
        self.handles = [m.register_forward_hook(self.hook) for m in model.modules() if isinstance(m, Qwen3MoeTopKRouter)]

    def hook(self, module, args, output):
        probs = torch.softmax(output[0].float(), dim=-1)
        top = torch.topk(probs, module.top_k + 1, dim=-1).values
        self.gap = min(self.gap, float((top[:, module.top_k - 1] - top[:, module.top_k]).min()))

    def close(self):
        for h in self.handles:
            h.remove()


def reload_check(kind, folder, model, run):
    """HF's own from_pretrained of the written folder must give the same logits: the files are what HF reads.
    (Not bit for bit: fused expert tensors are then memory-mapped at 8-byte-aligned offsets, which changes the CPU
    kernel's rounding in the last bit; per-expert ones are copied into fresh tensors by HF's conversion.)"""
    _, model_class = KINDS[kind]
    loaded = model_class.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    a = reference.run_forward(model, run).logits
    b = reference.run_forward(loaded, run).logits
    diff = float((a - b).abs().max())
    assert diff <= 1e-6, f"{folder}: reloaded checkpoint differs from the saved model by {diff}"
    return diff


def generation_runs(model, name, seed, prompts, single, max_new_tokens=8):
    ids, mask = generation.left_pad(prompts, 0)
    runs = [dict(name="padded_batch", input_ids=ids, attention_mask=mask, options=dict(max_new_tokens=max_new_tokens)),
            dict(name="single", input_ids=[single], options=dict(max_new_tokens=max_new_tokens))]
    for r in runs:
        seqs, margin = generation.hf_generate(model, r["input_ids"], r.get("attention_mask"), r["options"])
        assert margin > generation.MIN_MARGIN, f"{name}/{r['name']}: greedy margin {margin} too small, pick other prompts"
        r["sequences"] = seqs
        r["min_margin"] = margin
    return {"seed": seed, "runs": runs}


def make_case(name, kind, cfg, runs, steps, seed, gen, fused=False):
    model = make_model(kind, cfg, seed)
    config = model.config
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    # save_original_format=True (the default) reverts HF's fused experts to released checkpoints' per-expert tensors
    model.save_pretrained(folder, save_original_format=not fused)
    gap = RouterGap(model)
    expected = {}
    for run in runs:
        out = reference.run_forward(model, run)
        expected[f"{run['name']}.logits"] = out.logits.float().contiguous()
        if out.loss is not None:
            expected[f"{run['name']}.loss"] = out.loss.float().reshape(1)
        if run.get("output_hidden_states"):
            assert len(out.hidden_states) == config.num_hidden_layers + 1
            for i, h in enumerate(out.hidden_states):
                expected[f"{run['name']}.hidden_states.{i}"] = h.contiguous()
        if run.get("output_attentions"):
            assert len(out.attentions) == config.num_hidden_layers
            for i, a in enumerate(out.attentions):
                expected[f"{run['name']}.attentions.{i}"] = a.contiguous()
    if steps is not None:
        for k, logits in enumerate(reference.run_steps(model, config, steps)):
            expected[f"steps.logits.{k}"] = logits.contiguous()
    save_file(expected, os.path.join(folder, "expected.safetensors"))
    runs_json = generation_runs(model, name, seed, **gen)
    gap.close()
    case = {"runs": runs, "steps": steps, "fused_experts": fused, "seed": seed}
    if kind == "qwen3_moe":
        assert gap.gap > MIN_ROUTER_GAP, f"{name}: router near-tie ({gap.gap}), pick another seed"
        case["min_router_gap"] = gap.gap
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump(case, f)
    with open(os.path.join(folder, "runs.json"), "w") as f:
        json.dump(runs_json, f, indent=1)
    reloaded = reload_check(kind, folder, model, runs[0])
    size = sum(os.path.getsize(os.path.join(folder, x)) for x in os.listdir(folder))
    margins = ", ".join(f"{r['name']} {r['min_margin']:.3g}" for r in runs_json["runs"])
    router = f", min router gap {gap.gap:.3g}" if kind == "qwen3_moe" else ""
    print(f"{name}: {size / 1024:.0f} KiB, layer kinds {layer_kinds(model)}, runs {[r['name'] for r in runs]}, "
          f"steps {steps is not None}, greedy margins {margins}{router}, from_pretrained max |diff| {reloaded:.2g}")


def layer_kinds(model):
    kinds = []
    for layer in model.model.layers:
        mlp = "moe" if hasattr(layer.mlp, "experts") else "mlp"
        sliding = layer.self_attn.sliding_window  # Qwen3: per layer_types; Qwen3-MoE: config.sliding_window
        kinds.append(f"{mlp}{'/sw' + str(sliding) if sliding else ''}")
    return kinds


def ids(g, b, s, v):
    return torch.randint(0, v, (b, s), generator=g).tolist()


def padded_runs(x, pad_mask, keep):
    """A left-padded batch with generate()'s positions, labels, hidden states and attentions; the same batch with
    the mask alone (HF then uses positions 0..S-1); logits_to_keep."""
    labels = [[-100 if m == 0 else t for t, m in zip(row, mrow)] for row, mrow in zip(x, pad_mask)]
    pos = reference.padded_positions(torch.tensor(pad_mask)).tolist()
    return [dict(name="padded", input_ids=x, attention_mask=pad_mask, position_ids=pos, labels=labels,
                 output_hidden_states=True, output_attentions=True),
            dict(name="mask_only", input_ids=x, attention_mask=pad_mask),
            dict(name="keep", input_ids=x, logits_to_keep=keep)]


def main():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(4321)
    V = DENSE["vocab_size"]
    rand = lambda n: torch.randint(1, V, (n,), generator=g).tolist()  # noqa: E731  (0 is kept for padding)
    os.makedirs(OUT, exist_ok=True)

    # 1. Qwen3 dense: GQA 4/2, head_dim 12 != 32/4, no biases, rope_theta 1e6 (as released Qwen3); a left-padded
    #    batch with labels, hidden states and attentions; logits_to_keep as an int and as a list; cached steps on
    #    the padded batch.
    x = ids(g, 2, 8, V)
    pad_mask = [[0, 0, 0, 1, 1, 1, 1, 1], [1] * 8]
    make_case("qwen3_dense", "qwen3", dict(DENSE, rope_parameters=dict(rope_type="default", rope_theta=1e6)),
              runs=padded_runs(x, pad_mask, 2) + [dict(name="keep_list", input_ids=x, logits_to_keep=[0, 3, -1])],
              steps=dict(prefill=x, attention_mask=pad_mask, tokens=ids(g, 4, 2, V)), seed=11,
              gen=dict(prompts=[rand(3), rand(6)], single=rand(4)))

    # 2. Qwen3 sliding: use_sliding_window with window 4 and max_window_layers 1 -> layer 0 full, 1, 2 sliding;
    #    MQA (1 KV head); attention biases; tied embeddings. Sequences of 10 > window; cached steps from a padded prefill of 6
    #    running 8 tokens past the window; generation of 10 tokens.
    x = ids(g, 2, 10, V)
    pad_mask = [[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], [1] * 10]
    make_case("qwen3_sliding", "qwen3", dict(DENSE, use_sliding_window=True, sliding_window=4, max_window_layers=1, num_key_value_heads=1,
                                              attention_bias=True, tie_word_embeddings=True),
              runs=[dict(name="full", input_ids=x, labels=x, output_hidden_states=True, output_attentions=True),
                    dict(name="padded", input_ids=x, attention_mask=pad_mask,
                         position_ids=reference.padded_positions(torch.tensor(pad_mask)).tolist(), output_attentions=True)],
              steps=dict(prefill=[r[:6] for r in x], attention_mask=[m[:6] for m in pad_mask], tokens=ids(g, 8, 2, V)),
              seed=12, gen=dict(prompts=[rand(2), rand(5)], single=rand(3), max_new_tokens=10))

    # 3. Qwen3-MoE: 8 experts, top-2, norm_topk_prob, mlp_only_layers [0] (layer 0 dense, 1-2 MoE),
    #    moe_intermediate_size 8 != intermediate_size 24, explicit head_dim 12; the runs of case 1.
    x = ids(g, 2, 8, V)
    pad_mask = [[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8]
    make_case("qwen3_moe", "qwen3_moe", dict(MOE, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[0]),
              runs=padded_runs(x, pad_mask, 3),
              steps=dict(prefill=x, attention_mask=pad_mask, tokens=ids(g, 4, 2, V)), seed=13,
              gen=dict(prompts=[rand(3), rand(6)], single=rand(4)))

    # 4. Qwen3-MoE, decoder_sparse_step 2 (layers 1, 3 MoE; 0, 2 dense), mlp_only_layers [], norm_topk_prob off,
    #    top-3; no head_dim in the config (Qwen3-MoE then uses hidden/heads = 8, unlike Qwen3's 128); saved in
    #    HF's fused in-memory layout (save_original_format=False).
    x = ids(g, 2, 8, V)
    pad_mask = [[0, 1, 1, 1, 1, 1, 1, 1], [1] * 8]
    cfg = dict(MOE, num_hidden_layers=4, decoder_sparse_step=2, mlp_only_layers=[], norm_topk_prob=False,
               num_experts_per_tok=3)
    del cfg["head_dim"]
    make_case("qwen3_moe_sparse_step", "qwen3_moe", cfg, runs=padded_runs(x, pad_mask, 1),
              steps=dict(prefill=[r[:5] for r in x], tokens=ids(g, 4, 2, V)), seed=14,
              gen=dict(prompts=[rand(4), rand(2)], single=rand(5)), fused=True)

    # 5. Qwen3-MoE with use_sliding_window: Qwen3-MoE has no layer_types, so EVERY layer slides (window 3) and
    #    max_window_layers (here 1, kept in config.json) is ignored, unlike Qwen3; attention biases; tied
    #    embeddings; 4 experts.
    x = ids(g, 2, 9, V)
    pad_mask = [[0, 0, 0, 1, 1, 1, 1, 1, 1], [1] * 9]
    make_case("qwen3_moe_sliding", "qwen3_moe",
              dict(MOE, num_hidden_layers=2, num_experts=4, norm_topk_prob=True, use_sliding_window=True, sliding_window=3,
                   max_window_layers=1, attention_bias=True, tie_word_embeddings=True),
              runs=[dict(name="full", input_ids=x, output_hidden_states=True, output_attentions=True, labels=x),
                    dict(name="padded", input_ids=x, attention_mask=pad_mask,
                         position_ids=reference.padded_positions(torch.tensor(pad_mask)).tolist(), output_attentions=True)],
              steps=dict(prefill=[r[:2] for r in x], tokens=ids(g, 6, 2, V)), seed=15,
              gen=dict(prompts=[rand(2), rand(4)], single=rand(3)))

    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"total {total / 1024:.0f} KiB in {OUT}")
    assert total < 1024 * 1024


if __name__ == "__main__":
    sys.exit(main())
