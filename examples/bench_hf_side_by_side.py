#!/usr/bin/env python3
"""HF transformers and dots1 side by side on the CPU: the same Dots1 config, random weights of the same
shapes (scaled 1/sqrt(fan_in) in both, so that routing and activations look alike), the same workload,
the same number of threads.

  python examples/bench_hf_side_by_side.py [--config CONFIG.json] [--dtype f32|bf16] [--prompt 512]
      [--gen 128] [--context 0,512,2048] [--repeat 3] [--threads 2] [--dots1 build/perf/bin/dots1]
      [--probe] [--attn auto|eager|sdpa] [--experts auto|eager|batched_mm|grouped_mm]

Measures, for each engine: prompt tokens/s (a prefill of --prompt random tokens into an empty cache,
logits for the last position only, as generate() does) and decode tokens/s (--gen one-token steps with
random tokens after a prefill of C tokens, for each C of --context), median of --repeat runs, and peak
resident memory. HF runs in this process under torch.inference_mode() with torch.set_num_threads(T);
its attention implementation (eager or sdpa) and experts implementation (eager loop, batched_mm,
grouped_mm) are chosen as the fastest on a short trial unless given. dots1 runs as
`dots1 bench --config ... --json` in a subprocess after the HF model is freed. Prints both engines'
figures and dots1 / HF.
"""
import argparse
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=os.path.join(ROOT, "..", "shared", "bench", "dots1-bench-config.json"))
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--context", default="0")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dots1", default=None, help="the dots1 binary (default: build/perf/bin/dots1, else build/*/bin/dots1)")
    p.add_argument("--probe", action="store_true", help="pass --probe to dots1 bench (machine limits measured in its run)")
    p.add_argument("--attn", choices=["auto", "eager", "sdpa"], default="auto")
    p.add_argument("--experts", choices=["auto", "eager", "batched_mm", "grouped_mm"], default="auto")
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--skip-dots1", action="store_true")
    return p.parse_args()


def find_dots1(given):
    if given:
        return given
    for sub in ("perf", "core", "gen", "asan"):
        path = os.path.join(ROOT, "build", sub, "bin", "dots1")
        if os.path.exists(path):
            return path
    sys.exit("dots1 binary not found; build it (cmake --build build/perf --target dots1_tool) or pass --dots1")


def loadavg():
    return os.getloadavg()[0]


# ---------------------------------------------------------------------------------------------------- HF


def build_hf(config_path, dtype, attn, experts, seed):
    import torch
    from transformers import Dots1Config, Dots1ForCausalLM

    with open(config_path) as f:
        cfg_dict = json.load(f)
    cfg = Dots1Config(**{k: v for k, v in cfg_dict.items() if k not in ("architectures", "transformers_version", "torch_dtype", "dtype")})
    kwargs = {"attn_implementation": attn}
    if experts != "eager":
        kwargs["experts_implementation"] = experts
    torch.manual_seed(seed)
    model = Dots1ForCausalLM._from_config(cfg, **kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[-1]))  # like dots1's RandomWeights
            elif "norm" in name:
                p.fill_(1.0)
    if dtype == "bf16":
        model = model.to(torch.bfloat16)  # HF keeps the router (gate.weight, correction bias) in float32
    model.eval()
    return model


def hf_prefill(model, ids, cache):
    import torch

    t0 = time.perf_counter()
    model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return time.perf_counter() - t0


def hf_decode(model, gen, cache, vocab, gen_rng):
    import torch

    toks = torch.randint(0, vocab, (gen, 1, 1), generator=gen_rng)
    t0 = time.perf_counter()
    for s in range(gen):
        model(input_ids=toks[s], past_key_values=cache, use_cache=True)
    return time.perf_counter() - t0


def run_hf(args, contexts, attn, experts, prompt, gen, repeat, verbose=True):
    import torch
    from transformers import DynamicCache

    model = build_hf(args.config, args.dtype, attn, experts, args.seed)
    vocab = model.config.vocab_size
    rng = torch.Generator().manual_seed(args.seed + 1)
    res = {"attn": attn, "experts": experts, "prompt_s": [], "decode_s": {c: [] for c in contexts}}
    with torch.inference_mode():
        # warm-up
        cache = DynamicCache(config=model.config)
        hf_prefill(model, torch.randint(0, vocab, (1, min(16, max(prompt, 1))), generator=rng), cache)
        hf_decode(model, 2, cache, vocab, rng)
        for r in range(repeat):
            if prompt > 0:
                cache = DynamicCache(config=model.config)
                t = hf_prefill(model, torch.randint(0, vocab, (1, prompt), generator=rng), cache)
                res["prompt_s"].append(t)
                if verbose:
                    print(f"  HF run {r + 1}: prompt {prompt}: {t:.3f} s, {prompt / t:.1f} tok/s (load {loadavg():.2f})", flush=True)
            for c in contexts:
                if gen <= 0:
                    continue
                cache = DynamicCache(config=model.config)
                if c > 0:
                    hf_prefill(model, torch.randint(0, vocab, (1, c), generator=rng), cache)
                t = hf_decode(model, gen, cache, vocab, rng)
                res["decode_s"][c].append(t)
                if verbose:
                    print(f"  HF run {r + 1}: decode {gen} at context {c}: {t:.3f} s, {gen / t:.2f} tok/s (load {loadavg():.2f})", flush=True)
    del model
    gc.collect()
    res["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return res


def choose_hf_impl(args):
    """The fastest (attention, experts) implementations on a short trial (prompt 64, 8 decode steps, best of 2)."""
    attns = ["eager", "sdpa"] if args.attn == "auto" else [args.attn]
    experts = ["eager", "batched_mm", "grouped_mm"] if args.experts == "auto" else [args.experts]
    if len(attns) * len(experts) == 1:
        return attns[0], experts[0]
    best, best_t = None, None
    for a in attns:
        for e in experts:
            try:
                r = run_hf(args, [0], a, e, prompt=64, gen=8, repeat=2, verbose=False)
            except Exception as ex:  # an implementation this torch lacks
                print(f"  HF trial attn={a} experts={e}: unavailable ({type(ex).__name__}: {ex})".splitlines()[0])
                continue
            p, d = min(r["prompt_s"]), min(r["decode_s"][0])
            t = p / 64 * args.prompt + d / 8 * args.gen
            print(f"  HF trial attn={a} experts={e}: prompt 64 in {p:.3f} s, 8 decode steps in {d:.3f} s (best of 2)", flush=True)
            if best_t is None or t < best_t:
                best, best_t = (a, e), t
    if best is None:
        sys.exit("no HF implementation ran")
    return best


# ---------------------------------------------------------------------------------------------------- dots1


def run_dots1(args, binary):
    cmd = [binary, "bench", "--config", args.config, "--dtype", args.dtype, "--prompt", str(args.prompt), "--gen", str(args.gen),
           "--context", args.context, "--repeat", str(args.repeat), "--threads", str(args.threads), "--seed", str(args.seed), "--json"]
    if args.probe:
        cmd.append("--probe")
    print("  " + " ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


# ---------------------------------------------------------------------------------------------------- report


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    args = parse_args()
    contexts = [int(c) for c in args.context.split(",") if c != ""]
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    print(f"config {args.config}, dtype {args.dtype}, {args.threads} threads, prompt {args.prompt}, gen {args.gen}, contexts {contexts}, "
          f"repeat {args.repeat}; torch {torch.__version__}, load average {loadavg():.2f}", flush=True)

    d = None
    if not args.skip_dots1:
        print("dots1:", flush=True)
        d = run_dots1(args, find_dots1(args.dots1))
    h = None
    if not args.skip_hf:
        import transformers

        print(f"HF transformers {transformers.__version__}:", flush=True)
        attn, experts = choose_hf_impl(args)
        print(f"  using attn_implementation={attn}, experts_implementation={experts}", flush=True)
        h = run_hf(args, contexts, attn, experts, args.prompt, args.gen, args.repeat)

    print()
    print(f"{'median tokens/s':34s} {'HF':>10s} {'dots1':>10s} {'dots1/HF':>9s}")

    def row(label, hv, dv):
        ratio = dv / hv if (hv and dv and hv == hv and dv == dv) else float("nan")
        print(f"{label:34s} {hv:10.2f} {dv:10.2f} {ratio:9.2f}")

    if args.prompt > 0:
        hv = args.prompt / med(h["prompt_s"]) if h else float("nan")
        dv = d["prompt"]["tokens_per_s"]["median"] if d else float("nan")
        row(f"prompt {args.prompt}", hv, dv)
    for c in contexts:
        if args.gen <= 0:
            continue
        hv = args.gen / med(h["decode_s"][c]) if h else float("nan")
        dv = next((x["tokens_per_s"]["median"] for x in d["decode"] if x["context"] == c), float("nan")) if d else float("nan")
        row(f"decode {args.gen} @ context {c}", hv, dv)
    if h:
        print(f"{'HF peak RSS (this process)':34s} {h['peak_rss_bytes'] / 1e9:10.3f} GB")
    if d:
        print(f"{'dots1 peak RSS':34s} {d['memory']['peak_resident_bytes'] / 1e9:10.3f} GB")
        for x in d["decode"]:
            print(f"dots1 decode @ {x['context']}: {x['gbs']['median']:.1f} GB/s = {100 * x['fraction_of_bandwidth_limit']['median']:.1f}% of "
                  f"{d['limits']['read_gbs']:.1f} GB/s ({d['limits']['source']})")
        if "prompt" in d:
            print(f"dots1 prompt: {d['prompt']['gflops']['median']:.1f} GFLOP/s = {100 * d['prompt']['fraction_of_compute_limit']['median']:.1f}% of "
                  f"{d['limits']['compute_gflops']:.1f} GFLOP/s")
    print(f"load average at end {loadavg():.2f}")


if __name__ == "__main__":
    main()
