#!/usr/bin/env python3
"""Generate the tokenizer test fixtures under tests/fixtures/tokenizer/ from HF `tokenizers` (PyPI).

  python3 tests/tokenizer/make_tokenizer_fixtures.py [--shared ../shared]

Writes
  qwen2_corpus.jsonl  one JSON object per line: {"src", "text", "ids"} and, only where they differ
                      from the obvious, "ids_plain" (special tokens not parsed), "decoded"
                      (decode(ids) when it is not the text itself), "decoded_skip" (skip_special_tokens).
                      Texts come from local files (prose, man pages in 20 languages, C headers, Python
                      source, logs) and from generated edge cases (every Unicode general category,
                      combining marks, CJK, emoji sequences, unusual but valid UTF-8, whitespace runs,
                      \\r\\n mixes, digits, upper-case contractions, added tokens glued to words, ...).
  tiny/*.json         small tokenizer.json files exercising features the Qwen2 file does not use
                      (lstrip/rstrip/single_word/normalized added tokens, Split behaviours, legacy
                      "a b" merges, ByteLevel add_prefix_space + use_regex, BPE without ByteLevel with
                      continuing_subword_prefix / end_of_word_suffix / unk / fuse_unk / byte_fallback /
                      ignore_merges), and tiny_cases.jsonl with their expected ids.
  meta.json           versions and counts.

The C++ tests only read these files (no Python at test time). Local files differ between machines,
so regenerating elsewhere gives another (equally valid) corpus; on one machine the corpus is the same
every run. The tiny tokenizers are retrained each run and HF's trainer breaks ties between equal pair
counts in hash-map order, so their files change too: they and tiny_cases.jsonl always go together.
"""
import argparse
import glob
import gzip
import json
import os
import random
import sys
import unicodedata

import tokenizers
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

rng = random.Random(20250611)


# ------------------------------------------------------------------------------------------------
# Texts from local files
# ------------------------------------------------------------------------------------------------
def read_text(path, limit=400_000):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read(limit)
        else:
            with open(path, "rb") as f:
                data = f.read(limit)
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return None


def chunks_of(text, n, lo=60, hi=900):
    """n chunks of `text` of random length, cut at random places (also mid-line, mid-word)."""
    out = []
    if not text:
        return out
    for _ in range(n):
        size = rng.randint(lo, hi)
        if len(text) <= size:
            out.append(text)
            continue
        start = rng.randrange(0, len(text) - size)
        out.append(text[start:start + size])
    return out


def pick(paths, k):
    paths = sorted(set(paths))
    rng.shuffle(paths)
    return paths[:k]


def file_texts():
    texts = []

    def add(src, chunks):
        texts.extend((src, c) for c in chunks if c.strip() or rng.random() < 0.1)

    # Prose: licenses, READMEs, changelogs, copyright files.
    prose = glob.glob("/usr/share/common-licenses/*") + glob.glob("/usr/share/doc/*/README*") + \
        glob.glob("/usr/share/doc/*/changelog*") + glob.glob("/usr/share/doc/*/copyright")
    for p in pick([p for p in prose if os.path.isfile(p)], 160):
        add("prose:" + p, chunks_of(read_text(p), 3))
    # Man pages in many languages (groff source: prose with markup).
    for lang_dir in sorted(glob.glob("/usr/share/man/*/")):
        lang = os.path.basename(lang_dir.rstrip("/"))
        pages = glob.glob(lang_dir + "man*/*.gz")
        n = 2 if lang.startswith("man") else 6
        for p in pick(pages, n):
            add("man:" + p, chunks_of(read_text(p), 4))
    # Source code: C/C++ headers, Python, shell.
    headers = glob.glob("/usr/include/*.h") + glob.glob("/usr/include/*/*.h") + \
        glob.glob("/usr/include/c++/*/bits/*.h")
    for p in pick(headers, 120):
        add("code:" + p, chunks_of(read_text(p), 2))
    pys = glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")) + \
        glob.glob(os.path.join(os.path.dirname(os.__file__), "*/*.py"))
    for p in pick(pys, 120):
        add("code:" + p, chunks_of(read_text(p), 2))
    scripts = [p for p in glob.glob("/usr/bin/*") if os.path.isfile(p) and os.path.getsize(p) < 200_000]
    scripts = [p for p in scripts if (read_text(p, 64) or "").startswith("#!")]
    for p in pick(scripts, 40):
        add("code:" + p, chunks_of(read_text(p), 2))
    # Logs.
    for p in ["/var/log/dpkg.log", "/var/log/apt/history.log", "/var/log/alternatives.log",
              "/var/log/apt/term.log", "/var/log/fontconfig.log"]:
        add("log:" + p, chunks_of(read_text(p, 2_000_000), 25))
    return texts


# ------------------------------------------------------------------------------------------------
# Generated edge cases
# ------------------------------------------------------------------------------------------------
ALL_CPS = [c for c in range(0x110000) if not (0xD800 <= c <= 0xDFFF)]
BY_CAT = {}
for c in ALL_CPS:
    BY_CAT.setdefault(unicodedata.category(chr(c)), []).append(c)


def sample(cat, k):
    pool = BY_CAT[cat]
    return [chr(rng.choice(pool)) for _ in range(k)]


ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|box_end|>",
         "<|vision_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
         "<|repo_name|>", "<|file_sep|>", "<think>", "</think>", "<tool_response>"]
WORDS = ["hello", "world", "the", "Tokenizer", "naïve", "café", "über", "日本語", "中文", "한국어",
         "Привет", "مرحبا", "שלום", "नमस्ते", "ελληνικά", "x", "I", "a1", "foo_bar", "URL", "#", "..."]


def generated():
    g = []

    def add(src, t):
        g.append(("gen:" + src, t))

    # Every general category (Python's Unicode data), alone, between letters, after a space/apostrophe.
    for cat in sorted(BY_CAT):
        if cat == "Cs":
            continue  # surrogates are not Unicode scalar values: no UTF-8 encoding exists
        for _ in range(8):
            cs = sample(cat, 6)
            add("category:" + cat, "".join(cs))
            add("category:" + cat, "x" + cs[0] + "y " + cs[1] + cs[2] + " 1" + cs[3] + "2 '" + cs[4] + " " + cs[5] + "\n")
            add("category:" + cat, rng.choice(WORDS) + " " + "".join(cs[:3]) + rng.choice(WORDS) + cs[3] * 3)
    # Code points whose class differs between Unicode versions (see unicode_tables.hpp).
    newer = [0x1C89, 0xA7CB, 0x105C0, 0x10D4A, 0x10D40, 0x116D0, 0x11F04, 0x11F50, 0x13460, 0x16100,
             0x16130, 0x1E4D0, 0x1E4F0, 0x1E5D0, 0x2EBF0, 0x31350, 0x323AF, 0x1CCF0, 0x180E, 0x0085]
    for c in newer:
        add("unicode-version", "a" + chr(c) + chr(c) + "b " + chr(c) + "1 " + chr(c) + " x")
    # Combining marks: random stacks (reordering), known compositions, decomposed/precomposed.
    marks = BY_CAT["Mn"] + BY_CAT["Mc"] + BY_CAT["Me"]
    for _ in range(150):
        base = rng.choice("aeiouAEIOUnNcCsSzZ" + "ąęᾳ" + "कखगঅআகஉ" + "אבגابت" + "가ᄀ")
        add("marks", base + "".join(chr(rng.choice(marks)) for _ in range(rng.randint(1, 4))) +
            rng.choice([" ", "", "x", "\n"]) + rng.choice(WORDS))
    for s in ["e\u0301", "\u00e9", "a\u0316\u0301", "a\u0301\u0316", "o\u0308\u0304", "\u01d6",
              "\u1100\u1161\u11a8", "\u1100\u1161", "\uac00\u11a8", "\u0915\u093c", "\u0958",
              "\u0bc6\u0bbe", "\u0bca", "\u2126", "\u212b", "\uf900", "\u0344", "\u0340\u0341",
              "\u1e9b\u0323", "\u0f73", "\U00011935\U00011930", "a\u1ac1\u0316", "a\u0334\u1df6",
              "Ǆǅǆ", "ﬁﬂﬀ", "Å", "A\u030a", "\u3099\u304b", "\u304b\u3099", "\u30cf\u309a"]:
        add("nfc", s)
        add("nfc", "x " + s + "y" + s + " " + s)
    # CJK.
    cjk = ["机器学习是人工智能的一个分支。", "東京は日本の首都です。ひらがな、カタカナ、漢字。",
           "한국어 텍스트입니다. 안녕하세요!", "「引用」と『二重引用』、（括弧）。", "２０２４年１２月３１日",
           "𠀀𠀁𪚥𰀀 Ext-B/G", "ｈｅｌｌｏ　ｗｏｒｌｄ！", "中文English混合mixed文本123。", "㈱㍻㎏㎡"]
    for s in cjk:
        add("cjk", s)
    for _ in range(60):
        n = rng.randint(3, 40)
        add("cjk", "".join(chr(rng.choice([rng.randint(0x4E00, 0x9FFF), rng.randint(0x3040, 0x30FF),
                                           rng.randint(0xAC00, 0xD7A3), rng.randint(0x20000, 0x2A6DF),
                                           0x3000, 0x3001, 0x3002, 0xFF0C])) for _ in range(n)))
    # Emoji: ZWJ sequences, modifiers, flags, keycaps, tags, variation selectors.
    emoji = ["👨\u200d👩\u200d👧\u200d👦", "🏳\ufe0f\u200d🌈", "👍🏽", "👩🏿\u200d💻", "🇫🇷🇯🇵", "1\ufe0f\u20e3",
             "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "❤\ufe0f", "☺\ufe0e",
             "🧑\u200d🤝\u200d🧑", "😀😃😄😁", "🙂 ok 🙃", "🫠🫶🪿"]
    for e in emoji:
        add("emoji", e)
        add("emoji", "I " + e + " it" + e + "!" + e * 3)
    # Unusual but valid UTF-8.
    odd = ["\ufffd", "\ufeffBOM", "\ufffe\uffff", "\U0001fffe\U0010ffff", "\ud7ff\ue000", "\uf8ff",
           "\U000f0000\U00100000", "\x00nul\x00", "\x7f\x01\x02\x1b[31mred\x1b[0m", "\x80\x85\x9f",
           "Ã©tÃ© â€™", "ĠĊĉ Ġthe", "\u200b\u200c\u200d\u2060", "\u202e reversed \u202c",
           "\U000e0001\U000e0020", "\u0000" * 5, "\u034f\u115f\u1160"]
    for s in odd:
        add("odd-utf8", s)
        add("odd-utf8", "a" + s + " b " + s + "c")
    # Whitespace.
    ws = [" " * 1000, "\t" * 200, "word" + " " * 50 + "word", "   leading", "trailing   ", "\n\n\n",
          " \n \n ", "\t \u3000\u00a0\u2003 x", "a \u00a0 b", " " * 17 + "\n" + " " * 3, "x\u3000\u3000y",
          "\u2028\u2029", "a\u0085b\u0085\u0085c", "\u180e\u180ex", "\v\f\v", "end \n"]
    for s in ws:
        add("whitespace", s)
    for _ in range(40):
        add("whitespace", "".join(rng.choice([" ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "x", "yz", "1"])
                                  for _ in range(rng.randint(5, 60))))
    # Line endings.
    for s in ["a\r\nb\rc\nd\r\n\r\n", " \r\n  x", "\r\r\n\n", "line1\r\nline2\r\n", "\r", "\r\n",
              "x \r\n\r\n y", "code {\r\n\treturn 0;\r\n}\r\n", "\n\r", "  \r\n"]:
        add("crlf", s)
    # Digits and numbers.
    for s in ["1234567890", "3.14159", "1,000,000", "٠١٢٣٤٥٦٧٨٩", "०१२३", "１２３", "x²³", "½¾⅓", "ⅫⅣ",
              "①②③", "𝟘𝟙𝟚", "0x7FFF", "1e-9", "v1.2.3-rc4", "2024-12-31T23:59:59Z", "+33 6 12 34 56 78",
              "99999999999999999999", "1.", ".5", "-0"]:
        add("digits", s)
        add("digits", "n=" + s + " and " + s + "x")
    # Contractions, upper and mixed case, odd apostrophes.
    for s in ["DON'T", "I'M", "YOU'RE", "WE'VE", "SHE'LL", "HE'D", "IT'S", "It'S", "'S'T'RE'VE'M'LL'D",
              "x'ſ y'K", "'ſ", "don’t", "rock'n'roll", "O'NEIL's", "'''", "y'all'd've", "'s", "'S", "' s",
              "CAN'T WON'T SHOULDN'T", "'LL'D", "l'été", "ʼs ＇s"]:
        add("contractions", s)
        add("contractions", "He said " + s + " twice: " + s.lower() + " " + s.upper())
    # Added tokens glued to words, partial, nested, repeated.
    for _ in range(120):
        parts = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.4:
                parts.append(rng.choice(ADDED))
            elif r < 0.5:
                t = rng.choice(ADDED)
                parts.append(t[:rng.randint(1, len(t) - 1)])  # a prefix of a token
            elif r < 0.6:
                parts.append(rng.choice([" ", "\n", "  ", "<", ">", "|", "<|", "|>"]))
            else:
                parts.append(rng.choice(WORDS))
        add("added-tokens", "".join(parts))
    for s in ["hello<|endoftext|>world", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
              "<|im_start|><|im_end|>", "<<|endoftext|>>", "<|endoftext|><|endoftext|>", "<think>\nreason\n</think>\n\nanswer",
              "<tool_call>{\"name\": \"f\"}</tool_call>", "x<|fim_prefix|>y<|fim_suffix|>z<|fim_middle|>",
              " <|endoftext|> ", "<|unknown|>", "<|system|>sys<|endofsystem|><|userprompt|>hi<|endofuserprompt|><|response|>",
              "<|endoftext", "|endoftext|>", "<|ENDOFTEXT|>", "\u00e9<|endoftext|>\u0301"]:
        add("added-tokens", s)
    # Random code point soup.
    for _ in range(300):
        n = rng.randint(1, 50)
        add("random", "".join(chr(rng.choice(ALL_CPS)) if rng.random() < 0.5 else
                              rng.choice("abc XYZ 019 ,.;'\"\n\t-_()[]{}<>|!?") for _ in range(n)))
    # A few long texts (the corpus caps other texts at ~1 kB).
    for p in pick(glob.glob("/usr/share/common-licenses/*"), 3):
        t = read_text(p) or ""
        add("long", t[:12000])
    add("long", "word " * 3000)
    add("long", "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(3000)))
    return g


# ------------------------------------------------------------------------------------------------
# Tiny tokenizers for features Qwen2's file does not use
# ------------------------------------------------------------------------------------------------
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TRAIN_TEXT = None


def train_corpus():
    global TRAIN_TEXT
    if TRAIN_TEXT is None:
        texts = []
        for p in sorted(glob.glob("/usr/share/common-licenses/*"))[:6]:
            texts.append(read_text(p) or "")
        texts += ["naïve café über Ünïcödé façade 日本語 中文 测试 한국어 ΑΒΓ αβγ"] * 20
        TRAIN_TEXT = texts
    return TRAIN_TEXT


def tiny_tokenizers():
    from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, trainers

    tiny = {}

    # 1. Byte-level BPE in the Qwen2 layout, with every added-token flag, merges saved as "a b".
    tk = Tokenizer(models.BPE())
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(train_corpus(), trainers.BpeTrainer(
        vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tk.add_special_tokens([AddedToken("<s>", special=True, normalized=False),
                           AddedToken("[MASK]", special=True, lstrip=True, rstrip=True, normalized=False),
                           AddedToken("<sep>", special=True, single_word=True, normalized=False)])
    tk.add_tokens([AddedToken("hello", single_word=True, normalized=True),
                   AddedToken("Ünï", normalized=True),             # NFC form differs when given as NFD
                   AddedToken("e\u0301t\u00e9", normalized=True),   # pattern is the NFC form
                   AddedToken(" spaced", normalized=False, lstrip=True),
                   AddedToken("<raw>", normalized=False)])
    j = json.loads(tk.to_str())
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    tiny["bytelevel_added"] = j

    # 2. GPT-2 layout: ByteLevel pre-tokenizer alone with add_prefix_space and its own regex.
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(train_corpus(), trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tk.add_special_tokens(["<|endoftext|>"])
    tiny["gpt2_prefix_space"] = json.loads(tk.to_str())

    # 3. Split behaviours and invert, Sequence of Splits, then ByteLevel.
    for behavior in ["removed", "merged_with_previous", "merged_with_next", "contiguous"]:
        for invert in [False, True]:
            tk = Tokenizer(models.BPE())
            tk.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(r"\s+|[,.;]"), behavior=behavior, invert=invert),
                pre_tokenizers.Split(",", behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
            tk.decoder = decoders.ByteLevel()
            tk.train_from_iterator(train_corpus(), trainers.BpeTrainer(
                vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
            tiny[f"split_{behavior}_{'inv' if invert else 'noinv'}"] = json.loads(tk.to_str())

    # 4. Character-level BPE (no ByteLevel): prefix/suffix, unk, fuse_unk, no decoder.
    for name, kw in [("chars_prefix_unk", dict(unk_token="[UNK]", continuing_subword_prefix="##", fuse_unk=False)),
                     ("chars_suffix_fuse", dict(unk_token="[UNK]", end_of_word_suffix="</w>", fuse_unk=True))]:
        tk = Tokenizer(models.BPE(**kw))
        tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s+"), behavior="removed")
        targs = dict(vocab_size=300, special_tokens=["[UNK]"], show_progress=False)
        if "continuing_subword_prefix" in kw:
            targs["continuing_subword_prefix"] = kw["continuing_subword_prefix"]
        if "end_of_word_suffix" in kw:
            targs["end_of_word_suffix"] = kw["end_of_word_suffix"]
        tk.train_from_iterator([t[:3000] for t in train_corpus()], trainers.BpeTrainer(**targs))
        tiny[name] = json.loads(tk.to_str())

    # 5. The dots.llm1 chat markers as special added tokens on a small byte-level model.
    j = json.loads(json.dumps(tiny["bytelevel_added"]))
    next_id = max(t["id"] for t in j["added_tokens"]) + 1
    for content in DOTS1_MARKERS:
        j["added_tokens"].append({"id": next_id, "content": content, "single_word": False, "lstrip": False,
                                  "rstrip": False, "normalized": False, "special": True})
        next_id += 1
    Tokenizer.from_str(json.dumps(j))  # HF must accept it
    tiny["dots1_chat"] = j

    # 6. byte_fallback and ignore_merges, built by hand.
    vocab = {"<unk>": 0}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for tok in ["a", "b", "c", "ab", "abc", "bc", "é", "ca", "cab"]:
        vocab[tok] = len(vocab)
    merges = [["a", "b"], ["ab", "c"], ["b", "c"], ["c", "a"], ["ca", "b"]]
    base = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed", "invert": False},
            "post_processor": None, "decoder": None}
    for name, extra in [("byte_fallback", dict(byte_fallback=True, ignore_merges=False)),
                        ("ignore_merges", dict(byte_fallback=False, ignore_merges=True, unk_token="<unk>"))]:
        m = {"type": "BPE", "dropout": None, "unk_token": extra.get("unk_token"), "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": extra["byte_fallback"],
             "ignore_merges": extra["ignore_merges"], "vocab": vocab, "merges": merges}
        j = dict(base, model=m)
        Tokenizer.from_str(json.dumps(j))  # HF must accept it
        tiny[name] = j
    return tiny


DOTS1_MARKERS = ["<|endoftext|>", "<|system|>", "<|endofsystem|>", "<|userprompt|>", "<|endofuserprompt|>",
                 "<|response|>", "<|endofresponse|>"]

# Conversations for the chat-format test: (messages, add_generation_prompt).
CHATS = [
    ([("user", "Hello!")], True),
    ([("user", "Hello!")], False),
    ([("system", "You are a helpful assistant."), ("user", "What is 2+2?")], True),
    ([("system", ""), ("user", "hi")], True),
    ([("system", "Be brief."), ("user", "Name a color."), ("assistant", "Blue."), ("user", "Another?")], True),
    ([("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")], False),
    ([("user", "多轮对话：你好"), ("assistant", "你好！有什么可以帮你？"), ("user", "讲个笑话\n")], True),
    ([("system", "line1\nline2"), ("user", " spaced  "), ("assistant", "")], False),
    ([], True),
]


def render_dots1(messages, add_generation_prompt):
    """The dots.llm1 format as spec section 6 states it (written independently of the C++ code)."""
    wrap = {"system": ("<|system|>", "<|endofsystem|>"), "user": ("<|userprompt|>", "<|endofuserprompt|>"),
            "assistant": ("<|response|>", "<|endofresponse|>")}
    out = "".join(wrap[r][0] + c + wrap[r][1] for r, c in messages)
    return out + ("<|response|>" if add_generation_prompt else "")


def decode_cases(tk, n=400):
    """Random id sequences (any id, including special ones and lone bytes of multi-byte characters)."""
    out = []
    size = tk.get_vocab_size(with_added_tokens=True)
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    byte_char = {b: chr(b) for b in printable}
    byte_char.update({b: chr(256 + i) for i, b in enumerate(b for b in range(256) if b not in byte_char)})
    # lone bytes of multi-byte characters: lead bytes and continuation bytes
    byte_ids = [tk.token_to_id(byte_char[b]) for b in [0xC3, 0xA9, 0xE4, 0xB8, 0xAD, 0xF0, 0x9F, 0x98, 0x80, 0xFF]]
    assert None not in byte_ids
    for _ in range(n):
        k = rng.randint(1, 12)
        ids = [rng.choice([rng.randrange(size), rng.randrange(151643, size), rng.choice(byte_ids),
                           rng.randrange(256)]) for _ in range(k)]
        out.append({"ids": ids, "decoded": tk.decode(ids, skip_special_tokens=False),
                    "decoded_skip": tk.decode(ids, skip_special_tokens=True)})
    return out


TINY_TEXTS = [
    "", " ", "hello world", "Hello hello, hello_world ahello hello!", "<s>x<s> <s>", "a [MASK] b", "a[MASK]b",
    "x  [MASK]  y", "[MASK][MASK]", "Ünï Ünï ÜnïX", "U\u0308n\u0131\u0308 U\u0308ni\u0308", "e\u0301t\u00e9 \u00e9t\u00e9 ete",
    "a spaced b", "a  spaced", "spaced", "<raw><raw>", "x <sep> y", "x<sep>y", "<sep>", "(<sep>)", "_<sep>_",
    "naïve café über 日本語", "It's 2024, isn't it?  Yes.\n\nNo;  maybe", "abc bca cab  ab é ü 😀 z",
    "abcabc cabc", "The GNU General Public License", "  leading and trailing  ", "a,b,,c;d. e",
    "\u00e9t\u00e9\u0301", "helloworld hello\u0301", "\t tab", "<|endoftext|>x<|endoftext|>",
    "<|system|>s<|endofsystem|><|userprompt|>u<|endofuserprompt|><|response|>r<|endofresponse|>",
    # single_word next to letters and marks of recent Unicode versions (Rust's \\w is Unicode 16).
    "\U00013d70<sep>x", ".\U00014093hello", "x\U00013825<sep>", "\U0001e5d0hello\u0345", "hello\U000116d0",
]


def tiny_random_texts(n=60):
    """Random mixes of the pieces the tiny tokenizers care about, and random code points."""
    r = random.Random(99)
    pieces = [" ", "  ", "\n", "\t", "hello", "Hello", "_", "x", "[MASK]", "<s>", "<sep>", "\u00dcn\u00ef", "U\u0308",
              "ni\u0308", "\u00e9t\u00e9", "e\u0301t\u00e9", " spaced", "spaced", "<raw>", "a", "b", "c", "ab", "abc",
              "\u00e9", "\U0001f600", ",", ";", ".", "  ,", "<|endoftext|>", "\u3000", "1", "'s", "\u0301", "<|response|>"]
    out = []
    for _ in range(n):
        out.append("".join(r.choice(pieces) if r.random() < 0.8 else chr(r.choice(ALL_CPS))
                           for _ in range(r.randint(1, 25))))
    return out


# ------------------------------------------------------------------------------------------------
def encode_record(tk, src, text):
    tk.encode_special_tokens = False
    ids = tk.encode(text).ids
    tk.encode_special_tokens = True
    plain = tk.encode(text).ids
    tk.encode_special_tokens = False
    rec = {"src": src, "text": text, "ids": ids}
    if plain != ids:
        rec["ids_plain"] = plain
    dec = tk.decode(ids, skip_special_tokens=False)
    if dec != text:
        rec["decoded"] = dec
    dec_skip = tk.decode(ids, skip_special_tokens=True)
    if dec_skip != dec:
        rec["decoded_skip"] = dec_skip
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    args = ap.parse_args()
    tk = Tokenizer.from_file(os.path.join(args.shared, "tokenizers", "qwen2-bpe", "tokenizer.json"))
    nfc = tk.normalizer
    added = sorted((t.content for t in tk.get_added_tokens_decoder().values()), key=len, reverse=True)

    texts = file_texts() + generated()
    seen, records = set(), []
    for src, text in texts:
        if text in seen:
            continue
        seen.add(text)
        rec = encode_record(tk, src, text)
        # decode(encode(x)) == NFC(x), where NFC is applied between added tokens, as HF does.
        expected = "".join(nfc.normalize_str(p) if i % 2 == 0 else p
                           for i, p in enumerate(split_added(text, added)))
        if rec.get("decoded", text) != expected:
            print("note: decode(encode(x)) != NFC(x) for", repr(text[:60]), file=sys.stderr)
        records.append(rec)

    os.makedirs(os.path.join(OUT, "tiny"), exist_ok=True)
    with open(os.path.join(OUT, "qwen2_corpus.jsonl"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")

    tiny = tiny_tokenizers()
    cases = []
    for name, j in sorted(tiny.items()):
        path = os.path.join(OUT, "tiny", name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
        t = Tokenizer.from_file(path)
        for text in TINY_TEXTS + tiny_random_texts():
            rec = encode_record(t, name, text)
            rec["tokenizer"] = name
            cases.append(rec)
    with open(os.path.join(OUT, "tiny_cases.jsonl"), "w", encoding="utf-8") as f:
        for r in cases:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")

    with open(os.path.join(OUT, "decode_cases.jsonl"), "w", encoding="utf-8") as f:
        for r in decode_cases(tk):
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")

    chat_tk = Tokenizer.from_file(os.path.join(OUT, "tiny", "dots1_chat.json"))
    with open(os.path.join(OUT, "chat_cases.jsonl"), "w", encoding="utf-8") as f:
        for messages, gen in CHATS:
            text = render_dots1(messages, gen)
            rec = {"messages": [{"role": r, "content": c} for r, c in messages], "add_generation_prompt": gen,
                   "text": text, "ids_dots1_chat": chat_tk.encode(text).ids, "ids_qwen2": tk.encode(text).ids}
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")

    cats = {}
    for r in records:
        k = r["src"].split(":")[0] if not r["src"].startswith("gen:") else r["src"].split(":")[1]
        cats[k] = cats.get(k, 0) + 1
    meta = {"tokenizers_version": tokenizers.__version__, "python_unicode": unicodedata.unidata_version,
            "texts": len(records), "by_source": cats, "tiny_tokenizers": len(tiny), "tiny_cases": len(cases)}
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta, indent=1), file=sys.stderr)


def split_added(text, added):
    """Text cut at the added tokens `added` (longest first): even indices ordinary text, odd a token."""
    out, i, last = [], 0, 0
    while i < len(text):
        for c in added:
            if text.startswith(c, i):
                out += [text[last:i], c]
                i += len(c)
                last = i
                break
        else:
            i += 1
    out.append(text[last:])
    return out


if __name__ == "__main__":
    main()
