#!/usr/bin/env python3
"""HF tokenizers' side of examples/bench_tokenizer.cpp (which runs this script itself).

  python3 examples/bench_tokenizer_hf.py --tokenizer tokenizer.json --corpus docs.jsonl [--repeats 3]

Encodes the documents of a JSON-lines file (one string per line) single-threaded: parallelism is
switched off before `tokenizers` is imported, and encode_batch then runs serially in Rust, without a
Python call per document. Prints one JSON object: load time, MB/s and tokens/s for the first pass (cold
word cache) and the best pass, and an order-sensitive checksum of the ids (the C++ side computes the
same) so the two runs can be compared.
"""
import argparse
import json
import os
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def checksum(all_ids):
    try:
        import numpy as np
        flat = np.fromiter((i for ids in all_ids for i in ids), dtype=np.uint64)
        pos = np.arange(1, len(flat) + 1, dtype=np.uint64)
        with np.errstate(over="ignore"):
            return int(np.sum((flat + np.uint64(1)) * pos, dtype=np.uint64))
    except ImportError:
        h, k = 0, 0
        for ids in all_ids:
            for i in ids:
                k += 1
                h = (h + (i + 1) * k) % (1 << 64)
        return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    with open(a.corpus, encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)

    t = time.perf_counter()
    tk = Tokenizer.from_file(a.tokenizer)
    load_s = time.perf_counter() - t

    runs = []
    for _ in range(max(1, a.repeats)):
        t = time.perf_counter()
        encs = tk.encode_batch(docs, add_special_tokens=True)
        s = time.perf_counter() - t
        ids = [e.ids for e in encs]
        runs.append((s, sum(len(x) for x in ids)))
    first, best = runs[0], min(runs)
    print(json.dumps({
        "version": tokenizers.__version__, "load_s": load_s, "bytes": nbytes, "tokens": first[1],
        "first_mb_per_s": nbytes / 1e6 / first[0], "first_tokens_per_s": first[1] / first[0],
        "best_mb_per_s": nbytes / 1e6 / best[0], "best_tokens_per_s": best[1] / best[0],
        "checksum": checksum(ids)}))


if __name__ == "__main__":
    main()
