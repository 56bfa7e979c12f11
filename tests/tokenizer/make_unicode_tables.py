#!/usr/bin/env python3
"""Generate include/dots1/tokenizer/unicode_tables.hpp.

HF `tokenizers` (the Rust library on PyPI) splits text with Oniguruma and normalizes with the
`unicode-normalization-alignments` crate. dots1 uses PCRE2 and utf8proc instead. The four libraries
ship different Unicode versions (on Debian 12: PCRE2 10.42 = Unicode 14, utf8proc 2.8 = Unicode 15,
Oniguruma in tokenizers 0.23 = Unicode 16, the normalization crate = about Unicode 11), so a few
thousand recently assigned code points are classified differently. This script measures the
differences by asking both sides about every code point and writes them as tables that the C++
code uses to reproduce HF exactly:

  * kOnigLetterExtra / kOnigNumberExtra: code points Oniguruma puts in \\p{L} / \\p{N} and PCRE2 does
    not (added to those classes when a Split regex is translated for PCRE2);
  * kOnigSpace: Oniguruma's \\s (the White_Space property; PCRE2's \\s differs, e.g. on U+180E);
  * kNfcHfUnknown: code points whose NFC behaviour in HF differs from utf8proc (HF does not know
    their combining class or composition; dots1 treats them as inert starters, as HF does);
  * kNfcCcc0Seconds: combining class 0 code points that can be the second half of a canonical
    composition (utf8proc data), needed by the NFC quick check;
  * kRustWord: Rust regex's Unicode \\w, which HF uses for the single_word rule of added tokens
    (its \\s, used by lstrip/rstrip, is checked to equal kOnigSpace).

Run it when the PCRE2, utf8proc or tokenizers version changes:
    python3 tests/tokenizer/make_unicode_tables.py
The tokenizer tests check that the library versions match the ones recorded in the header.
"""
import ctypes
import ctypes.util
import os
import random
import sys

import tokenizers
from tokenizers import Regex, Tokenizer
from tokenizers.normalizers import NFC
from tokenizers.pre_tokenizers import Split

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "include", "dots1", "tokenizer", "unicode_tables.hpp")

ALL = [c for c in range(0x110000) if not (0xD800 <= c <= 0xDFFF)]

# ---- PCRE2 and utf8proc through ctypes ---------------------------------------------------------
pcre = ctypes.CDLL(ctypes.util.find_library("pcre2-8") or "libpcre2-8.so.0")
pcre.pcre2_compile_8.restype = ctypes.c_void_p
pcre.pcre2_compile_8.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32,
                                 ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t),
                                 ctypes.c_void_p]
pcre.pcre2_match_data_create_8.restype = ctypes.c_void_p
pcre.pcre2_match_data_create_8.argtypes = [ctypes.c_uint32, ctypes.c_void_p]
pcre.pcre2_match_8.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                               ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p]
pcre.pcre2_config_8.argtypes = [ctypes.c_uint32, ctypes.c_void_p]
PCRE2_UTF, PCRE2_UCP = 0x00080000, 0x00020000


def pcre_version(what):
    buf = ctypes.create_string_buffer(64)
    pcre.pcre2_config_8(what, buf)
    return buf.value.decode()


def pcre_set(pattern):
    err, off = ctypes.c_int(), ctypes.c_size_t()
    code = pcre.pcre2_compile_8(pattern.encode(), len(pattern.encode()), PCRE2_UTF | PCRE2_UCP,
                                ctypes.byref(err), ctypes.byref(off), None)
    assert code, pattern
    md = pcre.pcre2_match_data_create_8(1, None)
    out = set()
    for c in ALL:
        b = chr(c).encode()
        if pcre.pcre2_match_8(code, b, len(b), 0, 0, md, None) >= 0:
            out.add(c)
    return out


u8 = ctypes.CDLL(ctypes.util.find_library("utf8proc") or "libutf8proc.so.2")
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.free.argtypes = [ctypes.c_void_p]
u8.utf8proc_unicode_version.restype = ctypes.c_char_p
u8.utf8proc_version.restype = ctypes.c_char_p
u8.utf8proc_map.restype = ctypes.c_ssize_t
u8.utf8proc_map.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t, ctypes.POINTER(ctypes.c_void_p),
                            ctypes.c_int]
UTF8PROC_STABLE, UTF8PROC_COMPOSE, UTF8PROC_DECOMPOSE = 1 << 1, 1 << 3, 1 << 4


class Prop(ctypes.Structure):
    _fields_ = [("category", ctypes.c_int16), ("combining_class", ctypes.c_int16)]


u8.utf8proc_get_property.restype = ctypes.POINTER(Prop)
u8.utf8proc_get_property.argtypes = [ctypes.c_int32]


def u8map(s, opts):
    b = s.encode()
    p = ctypes.c_void_p()
    n = u8.utf8proc_map(b, len(b), ctypes.byref(p), opts)
    assert n >= 0
    r = ctypes.string_at(p.value, n).decode()
    libc.free(p.value)
    return r


def u8nfc(s):
    return u8map(s, UTF8PROC_STABLE | UTF8PROC_COMPOSE)


def u8nfd(s):
    return u8map(s, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE)


def ccc(c):
    return u8.utf8proc_get_property(c).contents.combining_class


# ---- Oniguruma classes as HF sees them ---------------------------------------------------------
def onig_set(pattern):
    """Code points matched by `pattern` in HF: NUL-separated probes through a Split pre-tokenizer."""
    split = Split(Regex(pattern), "isolated")
    out = set()
    for i in range(0, len(ALL), 4096):
        chunk = ALL[i:i + 4096]
        text = "".join("\x00" + chr(c) for c in chunk)  # NUL is in none of the probed classes
        for piece, _ in split.pre_tokenize_str(text):
            if len(piece) == 1 and piece != "\x00":
                out.add(ord(piece))
    return out


def rust_classes():
    """Rust regex \\w and \\s as HF's added-token rules apply them: single_word and lstrip probes."""
    from tokenizers import AddedToken, models
    tk = Tokenizer(models.BPE())
    tk.add_special_tokens([AddedToken("\u00a7", single_word=True, normalized=False)])
    tk.add_tokens([AddedToken("\u00b6", lstrip=True, normalized=False)])
    sid, pid = tk.token_to_id("\u00a7"), tk.token_to_id("\u00b6")
    cps = [c for c in ALL if chr(c) not in "\u00a7\u00b6"]
    # "<c>§": § is found only when c is not a word character.
    word = {c for c, e in zip(cps, tk.encode_batch([chr(c) + "\u00a7" for c in cps])) if sid not in e.ids}
    # "a<c>¶": ¶ swallows c when c is whitespace.
    space = set()
    for c, e in zip(cps, tk.encode_batch(["a" + chr(c) + "\u00b6" for c in cps])):
        if e.offsets[e.ids.index(pid)][0] == 1:
            space.add(c)
    return word, space


def ranges(cps):
    cps = sorted(cps)
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


# ---- NFC: where HF and utf8proc disagree -------------------------------------------------------
hf_nfc = NFC()


def nfc_differences():
    flagged = set()
    # Single code points, NUL-separated (NUL is a starter: nothing interacts across it).
    for i in range(0, len(ALL), 4096):
        chunk = [c for c in ALL[i:i + 4096] if c != 0]
        text = "\x00".join(chr(c) for c in chunk)
        a, b = hf_nfc.normalize_str(text).split("\x00"), u8nfc(text).split("\x00")
        assert len(a) == len(b) == len(chunk)
        for c, x, y in zip(chunk, a, b):
            if x != y:
                flagged.add(c)
    # Combining classes: does HF reorder the mark around an old mark of another class?
    for c in ALL:
        k = ccc(c)
        if k == 0:
            continue
        probe = "a" + chr(c) + "\u0334" if k > 1 else "a\u0301" + chr(c)
        if hf_nfc.normalize_str(probe) != u8nfc(probe):
            flagged.add(c)
    # Compositions: for every code point with a canonical decomposition, recompose its NFD.
    for c in ALL:
        d = u8nfd(chr(c))
        if d == chr(c) or len(d) < 2:
            continue
        if hf_nfc.normalize_str(d) != u8nfc(d):
            flagged.add(c)
            flagged.update(ord(x) for x in d if ord(x) >= 0x300)
    return flagged


def ccc0_seconds():
    out = set()
    for c in ALL:
        d = u8nfd(chr(c))
        for x in d[1:]:
            if ccc(ord(x)) == 0:
                out.add(ord(x))
    return out


def emulate_nfc(text, flagged):
    """What dots1 does: NFC each run between flagged code points, keep flagged ones as they are."""
    out, run = [], []
    for ch in text:
        if ord(ch) in flagged:
            out.append(u8nfc("".join(run)))
            run = []
            out.append(ch)
        else:
            run.append(ch)
    out.append(u8nfc("".join(run)))
    return "".join(out)


def verify_nfc(flagged):
    rng = random.Random(1234)
    marks = [c for c in ALL if ccc(c) != 0]
    seconds = sorted(ccc0_seconds())
    bases = [ord(x) for x in "aeiouAEIOUnNcCsS"] + [0x0915, 0x0B95, 0x0D15, 0x1100, 0xAC00, 0x11935,
                                                   0x3046, 0x304B, 0x05D0, 0x0627]
    probes = []
    for c in sorted(flagged):
        for m in (0x0334, 0x0301, 0x0316, 0x05B0):
            probes += ["a" + chr(c) + chr(m), "a" + chr(m) + chr(c), chr(c) + chr(m)]
    for _ in range(200000):
        n = rng.randint(1, 5)
        pool = marks + seconds + sorted(flagged)
        probes.append(chr(rng.choice(bases)) + "".join(chr(rng.choice(pool)) for _ in range(n)))
    bad = [p for p in probes if hf_nfc.normalize_str(p) != emulate_nfc(p, flagged)]
    return bad


def fmt_ranges(name, rs, comment):
    lines = [f"// {comment}", f"inline constexpr CodepointRange {name}[] = {{"]
    row = []
    for a, b in rs:
        row.append(f"{{0x{a:04X}, 0x{b:04X}}}")
        if len(row) == 6:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    if not rs:
        lines.append("    {0xFFFFFFFF, 0xFFFFFFFF},  // (empty: placeholder that matches nothing)")
    lines.append("};")
    return "\n".join(lines)


def main():
    pcre_unicode = pcre_version(10)  # PCRE2_CONFIG_UNICODE_VERSION
    u8_unicode = u8.utf8proc_unicode_version().decode()
    print(f"PCRE2 Unicode {pcre_unicode}, utf8proc {u8.utf8proc_version().decode()} "
          f"(Unicode {u8_unicode}), tokenizers {tokenizers.__version__}", file=sys.stderr)

    extra = {}
    for cls in ("L", "N"):
        hf, pc = onig_set(r"\p{" + cls + "}"), pcre_set(r"^\p{" + cls + "}$")
        if pc - hf:
            sys.exit(f"PCRE2 \\p{{{cls}}} has code points Oniguruma lacks: "
                     f"{sorted(pc - hf)[:20]}; the class translation cannot express this")
        extra[cls] = hf - pc
        print(f"\\p{{{cls}}}: {len(extra[cls])} code points only in Oniguruma", file=sys.stderr)
    space = onig_set(r"\s")
    print(f"\\s: {len(space)} code points", file=sys.stderr)

    rust_word, rust_space = rust_classes()
    if rust_space != space:
        sys.exit(f"Rust \\s differs from Oniguruma \\s: {sorted(rust_space ^ space)[:20]}")
    print(f"Rust \\w: {len(rust_word)} code points", file=sys.stderr)

    flagged = nfc_differences()
    print(f"NFC: {len(flagged)} code points differ", file=sys.stderr)
    bad = verify_nfc(flagged)
    if bad:
        sys.exit(f"NFC emulation still differs from HF on {len(bad)} probes, e.g. "
                 f"{[hex(ord(c)) for c in bad[0]]}")
    seconds = ccc0_seconds()

    parts = [
        "// dots1/tokenizer/unicode_tables.hpp — GENERATED by tests/tokenizer/make_unicode_tables.py; do not edit.",
        "//",
        "// Unicode data where HF tokenizers (Oniguruma, unicode-normalization-alignments) and the libraries",
        "// dots1 uses (PCRE2, utf8proc) disagree, measured by asking both about every code point.",
        f"// Generated with PCRE2 Unicode {pcre_unicode}, utf8proc Unicode {u8_unicode}, "
        f"tokenizers {tokenizers.__version__}.",
        "#pragma once",
        "",
        "#include <cstdint>",
        "",
        "namespace dots1::tok::tables {",
        "",
        "struct CodepointRange {",
        "  char32_t first, last;",
        "};",
        "",
        f'inline constexpr const char* kPcre2UnicodeVersion = "{pcre_unicode}";',
        f'inline constexpr const char* kUtf8procUnicodeVersion = "{u8_unicode}";',
        f'inline constexpr const char* kHfTokenizersVersion = "{tokenizers.__version__}";',
        "",
        fmt_ranges("kOnigLetterExtra", ranges(extra["L"]),
                   "Oniguruma \\p{L} minus PCRE2 \\p{L}."),
        "",
        fmt_ranges("kOnigNumberExtra", ranges(extra["N"]),
                   "Oniguruma \\p{N} minus PCRE2 \\p{N}."),
        "",
        fmt_ranges("kOnigSpace", ranges(space), "Oniguruma \\s (White_Space)."),
        "",
        fmt_ranges("kNfcHfUnknown", ranges(flagged),
                   "NFC in HF treats these as inert starters (its tables predate them)."),
        "",
        fmt_ranges("kNfcCcc0Seconds", ranges(seconds),
                   "Combining class 0 code points that can be the second half of a composition."),
        "",
        fmt_ranges("kRustWord", ranges(rust_word),
                   "Rust regex \\w (Unicode), used by HF for the single_word rule of added tokens."),
        "",
        "}  // namespace dots1::tok::tables",
        "",
    ]
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
