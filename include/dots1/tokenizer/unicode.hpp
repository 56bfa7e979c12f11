// dots1/tokenizer/unicode.hpp — UTF-8 validation and decoding, NFC as HF tokenizers computes it,
// Rust's lossy UTF-8 decoding, and the character classes the added-token rules use.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <utf8proc.h>

#include "dots1/error.hpp"
#include "dots1/tokenizer/unicode_tables.hpp"

namespace dots1::tok {

/// Is `cp` inside one of the sorted, disjoint `ranges`?
inline bool in_ranges(char32_t cp, std::span<const tables::CodepointRange> ranges) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), cp,
                             [](char32_t c, const tables::CodepointRange& r) { return c < r.first; });
  return it != ranges.begin() && cp <= std::prev(it)->last;
}

/// Length of the UTF-8 sequence that starts with byte `b` (1 for continuation/invalid bytes).
inline int utf8_len(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xF0) return 4;
  if (b >= 0xE0) return 3;
  if (b >= 0xC0) return 2;
  return 1;
}

/// Decodes the code point at s[i] of *valid* UTF-8 and advances i.
inline char32_t utf8_next(std::string_view s, size_t& i) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) {
    ++i;
    return b;
  }
  const int n = utf8_len(b);
  char32_t cp = b & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

/// Decodes the code point that ends just before s[i] of *valid* UTF-8 and moves i back to its start.
inline char32_t utf8_prev(std::string_view s, size_t& i) {
  size_t j = i - 1;
  while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
  size_t k = j;
  i = j;
  return utf8_next(s, k);
}

inline void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are not valid UTF-8.
/// For an invalid sequence, `*bad_len` receives the length of its maximal valid prefix (at least 1):
/// the unit Rust's String::from_utf8_lossy replaces by one U+FFFD.
inline size_t utf8_valid_seq(std::string_view s, size_t i, size_t* bad_len = nullptr) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;   // no overlongs
    if (b == 0xED) hi = 0x9F;   // no surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;   // no overlongs
    if (b == 0xF4) hi = 0x8F;   // nothing above U+10FFFF
  } else {
    if (bad_len) *bad_len = 1;
    return 0;
  }
  size_t k = 1;
  for (; k <= need; ++k) {
    if (i + k >= s.size()) break;
    const auto c = static_cast<unsigned char>(s[i + k]);
    if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
  }
  if (k == need + 1) return need + 1;
  if (bad_len) *bad_len = k;
  return 0;
}

/// Throws TokenizerError naming the byte offset of the first invalid UTF-8 sequence in `s`.
inline void validate_utf8(std::string_view s, std::string_view what = "input text") {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // Fast path over ASCII, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t len = utf8_valid_seq(s, i);
    if (len == 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(s[i]));
      throw TokenizerError(std::string(what) + " is not valid UTF-8: bad byte " + hex + " at byte offset " +
                           std::to_string(i) + " (HF tokenizers only accepts Unicode strings)");
    }
    i += len;
  }
}

/// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD. This is what
/// HF's ByteLevel decoder does with byte sequences that are not UTF-8 (e.g. half a character).
inline std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 0;
    const size_t len = utf8_valid_seq(s, i, &bad);
    if (len) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

/// Rust's char::is_whitespace / regex \s: the Unicode White_Space property (same set as Oniguruma's \s).
inline bool is_white_space(char32_t cp) { return in_ranges(cp, tables::kOnigSpace); }

/// Rust regex \w (Unicode), which HF's single_word rule for added tokens uses: Alphabetic, marks,
/// decimal digits, connector punctuation, joiners, in the regex crate's Unicode version.
inline bool is_word_char(char32_t cp) {
  if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') || cp == '_';
  return in_ranges(cp, tables::kRustWord);
}

namespace detail {

// One bit per code point: set when the code point can never be changed by NFC nor change its
// neighbours (combining class 0, no canonical decomposition, never the second half of a composition,
// and known to HF's normalization tables). Built once, on first use (~1.1M cheap property lookups).
inline const std::vector<uint64_t>& nfc_inert_bits() {
  static const std::vector<uint64_t> bits = [] {
    std::vector<uint64_t> b(0x110000 / 64, 0);
    for (char32_t cp = 0; cp < 0x110000; ++cp) {
      bool inert;
      if (cp < 0x300) {
        inert = true;  // Latin-1 and friends: no singletons, no marks; compositions need a mark >= U+0300
      } else {
        const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
        const bool canonical_decomposition = p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0;
        inert = p->combining_class == 0 && !canonical_decomposition &&
                !in_ranges(cp, tables::kNfcCcc0Seconds) && !in_ranges(cp, tables::kNfcHfUnknown);
      }
      if (inert) b[cp >> 6] |= uint64_t{1} << (cp & 63);
    }
    return b;
  }();
  return bits;
}

inline std::string utf8proc_nfc(std::string_view s) {
  if (s.empty()) return {};
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                   &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw TokenizerError(std::string("NFC normalization failed: ") + utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(out, &std::free);
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

}  // namespace detail

/// True when NFC cannot change `s` (valid UTF-8): every code point is inert. Cheap; lets the common
/// case (ASCII, most CJK and Latin text) skip utf8proc entirely.
inline bool nfc_quick_check(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  const std::vector<uint64_t>* bits = nullptr;
  while (i < n) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const char32_t cp = utf8_next(s, i);
    if (cp < 0x300) continue;
    if (!bits) bits = &detail::nfc_inert_bits();
    if (!(((*bits)[cp >> 6] >> (cp & 63)) & 1)) return false;
  }
  return true;
}

/// NFC exactly as HF tokenizers' NFC normalizer computes it (valid UTF-8 in, UTF-8 out). utf8proc does
/// the work; code points HF's older tables do not know are kept as they are and cut the text into
/// runs normalized separately, which is what HF's tables amount to (they are inert starters there).
inline std::string nfc_no_quick_check(std::string_view s);

inline std::string nfc(std::string_view s) {
  if (nfc_quick_check(s)) return std::string(s);
  return nfc_no_quick_check(s);
}

/// nfc() for text already known to fail nfc_quick_check().
inline std::string nfc_no_quick_check(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t run = 0, i = 0;
  while (i < s.size()) {
    const size_t at = i;
    const char32_t cp = utf8_next(s, i);
    if (cp >= 0x300 && in_ranges(cp, tables::kNfcHfUnknown)) {
      out += detail::utf8proc_nfc(s.substr(run, at - run));
      out.append(s.data() + at, i - at);
      run = i;
    }
  }
  out += detail::utf8proc_nfc(s.substr(run));
  return out;
}

}  // namespace dots1::tok
