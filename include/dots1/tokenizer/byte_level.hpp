// dots1/tokenizer/byte_level.hpp — GPT-2's byte-level alphabet: every byte maps to one printable
// character, so BPE can work on bytes while its vocabulary stays valid Unicode text.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "dots1/tokenizer/unicode.hpp"

namespace dots1::tok {

struct ByteLevelTables {
  std::array<char32_t, 256> byte_to_cp{};
  std::array<std::string, 256> byte_to_utf8;  // UTF-8 of byte_to_cp
  std::array<int16_t, 0x144> cp_to_byte{};    // inverse; -1 where no byte maps (all targets are < U+0144)
};

/// HF's bytes_char(): printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in order.
inline const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables t = [] {
    ByteLevelTables r;
    r.cp_to_byte.fill(-1);
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) r.byte_to_cp[b] = printable(b) ? static_cast<char32_t>(b) : next++;
    for (int b = 0; b < 256; ++b) {
      utf8_append(r.byte_to_utf8[b], r.byte_to_cp[b]);
      r.cp_to_byte[r.byte_to_cp[b]] = static_cast<int16_t>(b);
    }
    return r;
  }();
  return t;
}

/// The byte-level form of raw bytes (what HF's ByteLevel pre-tokenizer hands to the model).
inline std::string byte_level_encode(std::string_view raw) {
  const auto& t = byte_level_tables();
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char b : raw) out += t.byte_to_utf8[b];
  return out;
}

/// HF's ByteLevel decoder for one token: its characters mapped back to bytes, or, when some character
/// is outside the byte alphabet (e.g. an added token such as "<|im_start|>" containing a space), the
/// token's own UTF-8 unchanged.
inline std::string byte_level_decode_token(std::string_view token) {
  const auto& t = byte_level_tables();
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    const char32_t cp = utf8_next(token, i);
    if (cp >= t.cp_to_byte.size() || t.cp_to_byte[cp] < 0) return std::string(token);
    out += static_cast<char>(t.cp_to_byte[cp]);
  }
  return out;
}

}  // namespace dots1::tok
