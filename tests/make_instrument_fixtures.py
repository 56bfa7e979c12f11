#!/usr/bin/env python3
"""Reference fixtures for the research instruments (dots1/instrument/), generated with HF transformers.

One tiny random Dots1 (float32, eager attention, fixed seed; expert groups with a non-zero correction bias,
norm_topk_prob, routed scaling, GQA, a dense first layer) is run several times on the same batch, each
time observed or edited the way the C++ instruments observe or edit ours:

  natural      forward hooks record, per layer, the residual stream entering the layer (resid_pre), after
               the attention sub-block (resid_mid, the input of post_attention_layernorm) and leaving the
               layer (resid_post); the attention weights (output_attentions); and on every MoE router
               (mlp.gate) its outputs: router logits, top-k weights and top-k indices.
  forced       the routers of some layers are monkeypatched to return a fixed expert choice for some
               tokens: the K experts with the LOWEST sigmoid scores, so the choice is disjoint from the
               natural one (asserted). Weights follow HF's own formula on the forced experts: sigmoid
               scores gathered, renormalised when norm_topk_prob, times routed_scaling_factor.
  forbid       some experts are forbidden in some layers: their e_score_correction_bias is set to -inf,
               so HF's own router never selects them (one expert per group at most, so every group keeps
               two finite scores and the group ranking stays defined).
  zero_heads   the o_proj columns of some heads are zeroed (= those heads' outputs zeroed before o_proj).
  zero_experts the down_proj of some experts is zeroed (= those experts' routing weights set to 0).
  steer        a fixed vector is added to the residual stream entering one layer, for some tokens
               (a forward pre-hook on the decoder layer).

Writes tests/fixtures/instrument/: config.json + model.safetensors (save_pretrained), case.json (the
input ids and every edit, with the natural choices), expected.safetensors (<run>.logits and the recorded
tensors named <run>.<tensor>.<layer>).  Run from the repository root:
  python3 tests/make_instrument_fixtures.py        (needs: pip install torch transformers safetensors)
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_fixtures import make_model  # noqa: E402  (randomize()d float32 eager model)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "instrument")

CONFIG = dict(
    vocab_size=64, hidden_size=32, intermediate_size=48, moe_intermediate_size=12, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, head_dim=8, n_routed_experts=12, n_shared_experts=1,
    num_experts_per_tok=3, n_group=3, topk_group=2, first_k_dense_replace=1, norm_topk_prob=True,
    routed_scaling_factor=2.0, max_position_embeddings=64, rms_norm_eps=1e-6, sliding_window=None,
)
SEED = 11
BATCH, SEQ = 2, 7


def moe_layers(model):
    return [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate")]


def run(model, ids, attentions=False):
    """One forward with hooks: returns logits and a dict of recorded tensors (name.layer -> tensor)."""
    rec, handles = {}, []
    T = ids.numel()
    for i, layer in enumerate(model.model.layers):
        def pre(mod, args, kwargs, i=i):
            h = args[0] if args else kwargs["hidden_states"]
            rec[f"resid_pre.{i}"] = h.detach().clone()
        def post(mod, args, kwargs, out, i=i):
            rec[f"resid_post.{i}"] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        def mid(mod, args, i=i):
            rec[f"resid_mid.{i}"] = args[0].detach().clone()
        handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(layer.register_forward_hook(post, with_kwargs=True))
        handles.append(layer.post_attention_layernorm.register_forward_pre_hook(mid))
        if hasattr(layer.mlp, "gate"):
            def gate_hook(mod, args, out, i=i):
                logits, weights, indices = out
                rec[f"router_logits.{i}"] = logits.detach().clone().view(BATCH, SEQ, -1)
                rec[f"router_scores.{i}"] = logits.sigmoid().detach().clone().view(BATCH, SEQ, -1)
                rec[f"topk_weights.{i}"] = weights.detach().clone().view(BATCH, SEQ, -1)
                rec[f"topk_indices.{i}"] = indices.detach().clone().to(torch.int64).view(BATCH, SEQ, -1)
            handles.append(layer.mlp.gate.register_forward_hook(gate_hook))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=False, output_attentions=attentions)
    finally:
        for h in handles:
            h.remove()
    if attentions:
        for i, a in enumerate(out.attentions):
            rec[f"attn_weights.{i}"] = a.detach().clone()
    assert all(f"router_logits.{i}" in rec for i in moe_layers(model)) and len(rec) > T * 0
    return out.logits.detach().clone(), rec


def forced_router(router, choice):
    """Replaces router.forward: HF's logits, then the given indices [T, K] (-1 = keep HF's choice for that
    token) with weights by HF's formula (gather sigmoid scores, renormalise, scale)."""
    original = router.forward

    def forward(hidden_states):
        logits, weights, indices = original(hidden_states)
        keep = (choice < 0).any(dim=-1, keepdim=True)
        forced = torch.where(keep, indices, choice.clamp(min=0))
        w = logits.sigmoid().gather(1, forced)
        if router.norm_topk_prob:
            w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
        w = w * router.routed_scaling_factor
        return logits, torch.where(keep, weights, w), forced

    router.forward = forward
    return original


def main():
    torch.manual_seed(SEED)
    model = make_model(CONFIG, {}, SEED)
    shutil.rmtree(OUT, ignore_errors=True)
    model.save_pretrained(OUT)
    K, E = CONFIG["num_experts_per_tok"], CONFIG["n_routed_experts"]
    per_group = E // CONFIG["n_group"]
    g = torch.Generator().manual_seed(SEED + 1)
    ids = torch.randint(0, CONFIG["vocab_size"], (BATCH, SEQ), generator=g)
    expected, case = {}, {"input_ids": ids.tolist(), "moe_layers": moe_layers(model)}

    # natural
    logits, rec = run(model, ids, attentions=True)
    expected["natural.logits"] = logits
    for k, v in rec.items():
        expected[f"natural.{k}"] = v
    natural = {i: rec[f"topk_indices.{i}"].view(-1, K) for i in moe_layers(model)}
    scores = {i: rec[f"router_scores.{i}"].view(-1, E) for i in moe_layers(model)}

    # forced: layer 1 every token; layer 2 only (row 1, position 3) and (row 0, position 0)
    forced = []
    for layer, tokens in ((1, [(b, s) for b in range(BATCH) for s in range(SEQ)]), (2, [(1, 3), (0, 0)])):
        choice = torch.full((BATCH * SEQ, K), -1, dtype=torch.int64)
        for b, s in tokens:
            t = b * SEQ + s
            lowest = torch.argsort(scores[layer][t])[:K]
            assert not set(lowest.tolist()) & set(natural[layer][t].tolist()), "forced choice overlaps the natural one"
            choice[t] = lowest
            forced.append(dict(layer=layer, row=b, position=s, experts=lowest.tolist()))
        forced_router(model.model.layers[layer].mlp.gate, choice)
    logits, rec = run(model, ids)
    for layer in (1, 2):
        del model.model.layers[layer].mlp.gate.forward  # back to the class method
    expected["forced.logits"] = logits
    for layer in moe_layers(model):
        expected[f"forced.topk_indices.{layer}"] = rec[f"topk_indices.{layer}"]
        expected[f"forced.topk_weights.{layer}"] = rec[f"topk_weights.{layer}"]
    case["forced"] = forced

    # forbid: in layer 1 the experts most often chosen naturally in groups 0 and 2; in layer 2 one expert
    counts = torch.bincount(natural[1].flatten(), minlength=E)
    forbid = {1: [int(torch.argmax(counts[0:per_group])), 2 * per_group + int(torch.argmax(counts[2 * per_group:]))],
              2: [int(torch.bincount(natural[2].flatten(), minlength=E).argmax())]}
    saved = {}
    for layer, experts in forbid.items():
        bias = model.model.layers[layer].mlp.gate.e_score_correction_bias
        saved[layer] = bias.clone()
        for e in experts:
            bias[e] = float("-inf")
    logits, rec = run(model, ids)
    for layer, b in saved.items():
        model.model.layers[layer].mlp.gate.e_score_correction_bias.copy_(b)
    changed = sum(int(not set(rec[f"topk_indices.{l}"].view(-1, K)[t].tolist()) == set(natural[l][t].tolist()))
                  for l in forbid for t in range(BATCH * SEQ))
    assert changed > 0, "forbidding changed no choice"
    expected["forbid.logits"] = logits
    for layer in moe_layers(model):
        expected[f"forbid.topk_indices.{layer}"] = rec[f"topk_indices.{layer}"]
        expected[f"forbid.topk_weights.{layer}"] = rec[f"topk_weights.{layer}"]
    case["forbid"] = [dict(layer=l, experts=e) for l, e in forbid.items()]

    # zero heads: head 1 of layer 0, heads 0 and 3 of layer 2
    heads = [(0, 1), (2, 0), (2, 3)]
    d = CONFIG["head_dim"]
    saved = {}
    with torch.no_grad():
        for layer, h in heads:
            w = model.model.layers[layer].self_attn.o_proj.weight
            saved.setdefault(layer, w.clone())
            w[:, h * d:(h + 1) * d] = 0
    logits, _ = run(model, ids)
    with torch.no_grad():
        for layer, w in saved.items():
            model.model.layers[layer].self_attn.o_proj.weight.copy_(w)
    expected["zero_heads.logits"] = logits
    case["zero_heads"] = [dict(layer=l, head=h) for l, h in heads]

    # zero experts: the naturally most used expert of layer 1, and expert 5 of layer 2
    zero = [(1, int(counts.argmax())), (2, 5)]
    saved = {}
    with torch.no_grad():
        for layer, e in zero:
            experts = model.model.layers[layer].mlp.experts
            saved.setdefault(layer, experts.down_proj.clone())
            experts.down_proj[e] = 0
    logits, _ = run(model, ids)
    with torch.no_grad():
        for layer, w in saved.items():
            model.model.layers[layer].mlp.experts.down_proj.copy_(w)
    expected["zero_experts.logits"] = logits
    case["zero_experts"] = [dict(layer=l, expert=e) for l, e in zero]

    # steer: add v to the residual entering layer 1 at positions 2..4 of row 0 and every position of row 1
    v = torch.randn(CONFIG["hidden_size"], generator=g)
    tokens = [(0, s) for s in (2, 3, 4)] + [(1, s) for s in range(SEQ)]

    def steer_hook(mod, args, kwargs):
        h = (args[0] if args else kwargs["hidden_states"]).clone()
        for b, s in tokens:
            h[b, s] += v
        if args:
            return (h,) + tuple(args[1:]), kwargs
        kwargs["hidden_states"] = h
        return args, kwargs
    handle = model.model.layers[1].register_forward_pre_hook(steer_hook, with_kwargs=True)
    logits, _ = run(model, ids)
    handle.remove()
    expected["steer.logits"] = logits
    case["steer"] = dict(layer=1, vector=v.tolist(), tokens=[[b, s] for b, s in tokens])

    # the model must be unchanged by all of this
    again, _ = run(model, ids)
    assert torch.equal(again, expected["natural.logits"]), "the model was not restored"
    for name in list(expected):
        base = expected[f"{name.split('.')[0]}.logits"]
        if name.endswith(".logits") and name != "natural.logits":
            diff = (base - expected["natural.logits"]).abs().max().item()
            assert diff > 1e-3, f"{name} equals the natural logits (max |diff| {diff})"
            print(f"{name}: max |diff| vs natural {diff:.3f}")
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "case.json"), "w") as f:
        json.dump(case, f)
    size = sum(os.path.getsize(os.path.join(OUT, x)) for x in os.listdir(OUT))
    print(f"instrument fixtures: {size / 1024:.0f} KiB in {OUT}")


if __name__ == "__main__":
    sys.exit(main())
