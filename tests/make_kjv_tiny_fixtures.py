#!/usr/bin/env python3
"""Write tests/fixtures/kjv_tiny/greedy.json from the shipped kjv-tiny checkpoint.

For each prompt it records the HF token ids of the prompt (no special tokens
added) and the ids HF transformers' `generate(do_sample=False,
max_new_tokens=40)` returns (prompt + new tokens), plus the decoded text.  The
model is loaded with dtype=torch.float32, attn_implementation="eager" and the
eager (per-expert loop) MoE implementation; the script checks that HF's default
experts implementation yields the same ids.

Usage:
    python3 tests/make_kjv_tiny_fixtures.py [--model examples/models/kjv-tiny] [--out tests/fixtures/kjv_tiny/greedy.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PROMPTS = [
    "In the beginning God created",
    "And the LORD said unto Moses,",
    "Blessed are the",
]
MAX_NEW_TOKENS = 40


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "examples", "models", "kjv-tiny"))
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures", "kjv_tiny", "greedy.json"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    ).eval()
    default_model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="eager"
    ).eval()

    cases = []
    for prompt in PROMPTS:
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        x = torch.tensor([prompt_ids], dtype=torch.long)
        with torch.no_grad():
            out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                 max_new_tokens=MAX_NEW_TOKENS)[0].tolist()
            out_default = default_model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                                 max_new_tokens=MAX_NEW_TOKENS)[0].tolist()
        if out != out_default:
            sys.exit(f"eager and {default_model.config._experts_implementation} experts disagree on {prompt!r}")
        assert out[: len(prompt_ids)] == prompt_ids
        new_ids = out[len(prompt_ids):]
        cases.append({
            "prompt": prompt,
            "prompt_ids": prompt_ids,
            "output_ids": out,
            "new_ids": new_ids,
            "text": tok.decode(out, skip_special_tokens=False),
            "new_text": tok.decode(new_ids, skip_special_tokens=False),
        })
        print(f"{prompt!r} -> {cases[-1]['new_text']!r}")

    fixture = {
        "description": "HF transformers greedy generation from examples/models/kjv-tiny "
                       "(made by tests/make_kjv_tiny_fixtures.py)",
        "model": os.path.relpath(args.model, ROOT),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "dtype": "float32",
        "attn_implementation": "eager",
        "do_sample": False,
        "max_new_tokens": MAX_NEW_TOKENS,
        "eos_token_id": model.config.eos_token_id,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    text = json.dumps(fixture, indent=2, ensure_ascii=False)
    # Keep each id list on one line.
    text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", lambda m: "[" + re.sub(r",\s*", ", ", m.group(1)) + "]", text)
    assert json.loads(text) == fixture
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
