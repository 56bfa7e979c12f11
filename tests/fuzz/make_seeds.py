#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/). Run from anywhere; the
outputs are committed, so this only needs running again to change the seeds. Standard library only."""
import json
import struct
from pathlib import Path

here = Path(__file__).resolve().parent
fixtures = here.parent / "fixtures"
corpus = here / "corpus"


def write(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# ---- safetensors: small valid files of every layout feature (the fuzzer mutates them into bad ones)
def safetensors(tensors, metadata=None, pad_to=8):
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % pad_to)
    return struct.pack("<Q", len(h)) + h + blob


write("safetensors", "f32_i64_meta", safetensors(
    [("w", "F32", [2, 2], struct.pack("<4f", 1, -2, 0.5, 3)), ("ids", "I64", [3], struct.pack("<3q", 1, -1, 7))],
    {"format": "pt"}))
write("safetensors", "half_types", safetensors(
    [("bf", "BF16", [2], struct.pack("<2H", 0x3F80, 0xC000)), ("h", "F16", [3], struct.pack("<3H", 0x3C00, 0x0001, 0x7C00)),
     ("d", "F64", [1], struct.pack("<d", 2.5))]))
write("safetensors", "scalar_and_empty", safetensors(
    [("s", "F32", [], struct.pack("<f", 4)), ("e", "F32", [0, 5], b""), ("b", "BOOL", [2], b"\x01\x00")]))
write("safetensors", "small_ints_f8", safetensors(
    [("u8", "U8", [2], b"\x01\xff"), ("i8", "I8", [2], b"\x80\x7f"), ("u16", "U16", [1], b"\x01\x00"),
     ("f8", "F8_E4M3", [2], b"\x38\x40"), ("i16", "I16", [1], b"\xff\xff"), ("i32", "I32", [1], b"\x01\x00\x00\x00")]))

# ---- config: the fixture checkpoints' config.json files (real HF output) and a dense-only variant
for name in ["gqa_dense2", "sliding_mqa", "rope_yarn", "rope_longrope", "rope_llama3", "groups_moe0"]:
    src = fixtures / "model" / name / "config.json"
    write("config", name, src.read_bytes())
write("config", "dense_v4_spelling", json.dumps({
    "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": None, "first_k_dense_replace": 2, "rope_theta": 500000.0,
    "rope_scaling": {"type": "dynamic", "factor": 2.0}, "sliding_window": 16, "max_window_layers": 1,
    "eos_token_id": [1, 2], "tie_word_embeddings": True, "partial_rotary_factor": 1.0}))


# ---- tokenizer.json: small tokenizers of the supported kinds
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def added(i, content, special=True, normalized=False):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": normalized, "special": special}


b2u = bytes_to_unicode()
vocab = {b2u[b]: b for b in range(256)}
merges = [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["i", "n"], ["e", "r"], ["Ġ", "a"], ["o", "n"], ["Ġ", "w"], ["r", "e"]]
for a, b in merges:
    vocab[a + b] = len(vocab)
qwen_regex = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
byte_level = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [added(len(vocab), "<|endoftext|>"), added(len(vocab) + 1, "<think>", special=False)],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": qwen_regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
    "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None,
              "fuse_unk": False, "byte_fallback": False, "ignore_merges": False, "vocab": vocab, "merges": merges}}
write("tokenizer_json", "byte_level_qwen2_like", json.dumps(byte_level, ensure_ascii=False))
gpt2 = json.loads(json.dumps(byte_level))
gpt2["normalizer"] = None
gpt2["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
gpt2["model"]["merges"] = [" ".join(m) for m in merges]  # legacy "a b" form
gpt2["model"]["ignore_merges"] = True
write("tokenizer_json", "gpt2_legacy_merges", json.dumps(gpt2, ensure_ascii=False))
cases = json.loads((here.parent / "bad_inputs" / "cases.json").read_text())
write("tokenizer_json", "unk_whitespace", json.dumps(cases["bases"]["tokenizer"]))
chars = {"<unk>": 0, "a": 1, "b": 2, "##a": 3, "##b": 4, "ab": 5, "<0x20>": 6, "ab</w>": 7, "a</w>": 8}
write("tokenizer_json", "prefix_suffix_fallback", json.dumps({
    "version": "1.0", "added_tokens": [added(9, "[X]", special=False, normalized=True)],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": ","}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Contiguous", "invert": True}]},
    "post_processor": None, "decoder": None,
    "model": {"type": "BPE", "unk_token": "<unk>", "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>",
              "fuse_unk": True, "byte_fallback": True, "vocab": chars, "merges": [["a", "##b"]]}}))

# ---- tokenizer_encode: first byte = mode (bit 0: ids instead of text, bit 1: parse_special / skip_special)
write("tokenizer_encode", "text_mixed", b"\x00" + "Hello world, 你好! It's 2024 — naïve café\n\n\tx  ".encode())
write("tokenizer_encode", "text_special", b"\x02<|im_start|>user\nHi<|im_end|><think>ok</think><|endoftext|>")
write("tokenizer_encode", "text_unnormalized", b"\x00" + "e\u0301 A\u030a \ufb01 \u2126 한\u1100\u1161".encode())
write("tokenizer_encode", "ids_mixed", b"\x01" + struct.pack("<8i", 9707, 1879, 151643, -1, 151644, 2000000, 220, 0))
write("tokenizer_encode", "ids_split_utf8", b"\x03" + struct.pack("<4i", 25715, 102, 151645, 99))

# ---- forward: `dots1 forward` input files for the gqa_dense2 fixture (vocab 96)
write("forward", "ids", json.dumps({"input_ids": [[1, 2, 3, 4]]}))
write("forward", "batch_mask_labels", json.dumps({"input_ids": [[5, 6, 7], [8, 9, 10]],
                                                  "attention_mask": [[0, 1, 1], [1, 1, 1]], "labels": [[-100, 6, 7], [8, 9, -100]]}))
write("forward", "positions_keep", json.dumps({"input_ids": [[11, 12, 13, 14]], "position_ids": [[0, 1, 0, 1]],
                                               "logits_to_keep": [0, -1]}))
write("forward", "broadcast_positions", json.dumps({"input_ids": [[1, 2], [3, 4]], "position_ids": [[7, 8]], "logits_to_keep": 1}))

# ---- chat_template: real chat templates (from the chat-template fixture) and one-construct templates
chat = json.loads((fixtures / "tokenizer" / "chat_templates.json").read_text(encoding="utf-8"))
for t in chat["templates"]:
    if t["name"] in ("llama.cpp/meta-llama-Llama-3.1-8B-Instruct", "llama.cpp/Qwen-Qwen3-0.6B", "llama.cpp/google-gemma-2-2b-it",
                     "llama.cpp/mistralai-Mistral-Nemo-Instruct-2407", "llama.cpp/openai-gpt-oss-120b",
                     "llama.cpp/CohereForAI-c4ai-command-r-plus-tool_use", "ollama/phi3:3.8b", "ollama/deepseek-v3:671b",
                     "dots1/kjv-tiny", "dots1/ms-swift"):
        write("chat_template", t["name"].replace("/", "_").replace(":", "_").replace(".", "_"), t["template"])
for i, u in enumerate(chat["unit"][:40]):
    write("chat_template", f"unit_{i:02d}", u["template"])

# ---- regressions: inputs that once found bugs (the fuzzers replay them on every run)
write("safetensors", "regression_f64_bytes_wrap", safetensors([("w", "F64", [2**61], b"")]))  # 2^64 bytes wrapped to 0
gqa = json.loads((fixtures / "model" / "gqa_dense2" / "config.json").read_text())
write("config", "regression_partial_rotary_huge", json.dumps(
    dict(gqa, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}, partial_rotary_factor=1e300)))
write("config", "regression_parameter_count_overflow", json.dumps(
    dict(gqa, hidden_size=2**24, moe_intermediate_size=2**24, n_routed_experts=2**24)))  # count_parameters overflowed

# ---- trace: `dots1 report` inputs: two option bytes (row, max_tokens, an attention map, an expert map), then a
# trace (a dots1-trace safetensors file): one dense layer with attention, one MoE layer with routing
def trace(past=0, extra_meta=None, seq=3):
    ids = list(range(5, 5 + seq))
    kv = past + seq
    attn = []
    for _ in range(2):
        for q in range(seq):
            row = [0.0] * kv
            for k in range(past + q + 1):
                row[k] = 1.0 / (past + q + 1)
            attn += row
    tensors = [("input_ids", "I64", [1, seq], struct.pack(f"<{seq}q", *ids)),
               ("layers.0.resid_pre", "F32", [1, seq, 4], struct.pack(f"<{4 * seq}f", *([0.5] * 4 * seq))),
               ("layers.0.attn_weights", "F32", [1, 2, seq, kv], struct.pack(f"<{len(attn)}f", *attn)),
               ("layers.1.router_logits", "F32", [1, seq, 4], struct.pack(f"<{4 * seq}f", *[(i % 5) - 2.0 for i in range(4 * seq)])),
               ("layers.1.router_scores", "F32", [1, seq, 4], struct.pack(f"<{4 * seq}f", *([0.5] * 4 * seq))),
               ("layers.1.router_bias", "F32", [4], struct.pack("<4f", 0, 0.1, -0.1, 0)),
               ("layers.1.topk_indices", "I64", [1, seq, 2], struct.pack(f"<{2 * seq}q", *[(i * 3) % 4 for i in range(2 * seq)])),
               ("layers.1.topk_weights", "F32", [1, seq, 2], struct.pack(f"<{2 * seq}f", *([0.5] * 2 * seq)))]
    meta = {"format": "dots1-trace", "version": "1", "tokens": json.dumps([f"t{i}" for i in range(seq)]), "model": "m", "config": "{}",
            "router": json.dumps({"experts": 4, "top_k": 2, "n_group": 2, "topk_group": 1, "norm_topk_prob": True, "routed_scaling_factor": 2.5}),
            "layers": "2", "past": str(past)}
    meta.update(extra_meta or {})
    return safetensors(tensors, meta)


write("trace", "dense_and_moe", b"\x05\x00" + trace())
write("trace", "cached_past", b"\x09\x03" + trace(past=2))
write("trace", "expert_map", b"\x0d\x21" + trace(seq=5))

# ---- json: generator choices (fuzz_json.cpp): first byte = the reader, then the generator's bytes
for reader in range(7):
    write("json", f"reader{reader}_object", bytes([reader, 0, 5, 3, 0, 4, 2, 0, 7, 1, 3, 0, 3, 1, 4, 4]))
    write("json", f"reader{reader}_deep", bytes([reader, 2, 9, 1, 3, 0]))
write("json", "long_arrays", bytes([2, 0, 1, 33, 7, 40]))

# ---- cli_args: command lines, arguments separated by NUL bytes
for name, argv in [("sampling", ["--max-new-tokens", "5", "--top-k", "40", "--seed", "7"]),
                   ("edits", ["--zero-head", "0:1", "--forbid-expert", "1:3", "--force-experts", "2:1,4"]),
                   ("lists", ["--ids", "1,2,3", "--layers", "0,3", "--context", "0,512"]),
                   ("edges", ["--threads", "65536", "--row", "9223372036854775807", "--bench-seed", "18446744073709551615", "--ranks", "1"])]:
    write("cli_args", name, b"\0".join(a.encode() for a in argv))
