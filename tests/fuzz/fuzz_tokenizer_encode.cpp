// libFuzzer target: encode / decode / DecodeStream of the Qwen2 byte-level BPE tokenizer (the one dots.llm1
// uses) on arbitrary bytes, loaded once from shared/tokenizers/qwen2-bpe/tokenizer.json (or
// $DOTS1_FUZZ_TOKENIZER). The first input byte picks the mode:
//   bit 0 clear: the rest is text. encode() must throw TokenizerError exactly when the text is not UTF-8
//     (checked against an independent validator); ids must be tokens; decode(encode(t)) must be NFC(t)
//     when no added token can match (no '<' in t); DecodeStream's pieces must add up to decode(ids)
//     (up to a trailing U+FFFD, which the stream holds back).
//     bit 1: parse_special.
//   bit 0 set: the rest is little-endian int32 ids (any value): decode() and DecodeStream must not crash
//     and decode() must return valid UTF-8 (ids that are no token are dropped, as HF does).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <dots1/tokenizer.hpp>

#include "fuzz_support.hpp"

namespace {

std::unique_ptr<dots1::Tokenizer> tokenizer;

/// RFC 3629 UTF-8 (no overlongs, no surrogates, at most U+10FFFF), written independently of the library.
bool is_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0, min = 0;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; min = 0x10000; }
    else return false;
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

std::string stream_decode(const std::vector<int32_t>& ids, bool skip_special) {
  dots1::DecodeStream stream(*tokenizer, skip_special);
  std::string out;
  for (int32_t id : ids)
    if (auto piece = stream.step(id)) out += *piece;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto path = dots1_fuzz::data_path("DOTS1_FUZZ_TOKENIZER", std::filesystem::path(DOTS1_SHARED_DIR) / "tokenizers" / "qwen2-bpe" / "tokenizer.json");
  try {
    tokenizer = std::make_unique<dots1::Tokenizer>(dots1::Tokenizer::from_file(path));
  } catch (const dots1::Error& e) {
    std::fprintf(stderr, "fuzz_tokenizer_encode: cannot load %s (set DOTS1_FUZZ_TOKENIZER): %s\n", path.c_str(), e.what());
    std::exit(1);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto& tok = *tokenizer;
  if (mode & 1) {
    std::vector<int32_t> ids(rest.size() / 4);
    if (!ids.empty()) std::memcpy(ids.data(), rest.data(), ids.size() * 4);
    const bool skip = mode & 2;
    const std::string text = tok.decode(ids, skip);
    FUZZ_CHECK(is_utf8(text), "decode returned invalid UTF-8");
    for (int32_t id : ids) (void)tok.id_to_token(id);
    try {
      (void)stream_decode(ids, skip);
    } catch (const dots1::TokenizerError&) {
      // Lossy decoding of arbitrary byte tokens can rewrite earlier text; HF's DecodeStream errors too.
    }
    return 0;
  }
  const bool parse_special = mode & 2;
  std::vector<int32_t> ids;
  try {
    ids = tok.encode(rest, parse_special);
  } catch (const dots1::TokenizerError& e) {
    FUZZ_CHECK(!is_utf8(rest), std::string("valid UTF-8 refused: ") + e.what());
    return 0;
  }
  FUZZ_CHECK(is_utf8(rest), "invalid UTF-8 accepted by encode");
  for (int32_t id : ids) FUZZ_CHECK(id >= 0 && static_cast<size_t>(id) < tok.vocab_size() && tok.id_to_token(id), "id " + std::to_string(id));
  const std::string back = tok.decode(ids);
  FUZZ_CHECK(is_utf8(back), "decode returned invalid UTF-8");
  if (rest.find('<') == std::string_view::npos)  // every added token of this vocabulary starts with '<'
    FUZZ_CHECK(back == tok.normalize(rest), "decode(encode(t)) != NFC(t)");
  // The stream holds back text ending in U+FFFD (it cannot tell a real one from an incomplete character,
  // like HF's DecodeStream); otherwise its pieces add up to decode().
  const std::string streamed = stream_decode(ids, false);
  FUZZ_CHECK(back.compare(0, streamed.size(), streamed) == 0, "DecodeStream pieces are not a prefix of decode()");
  FUZZ_CHECK(streamed == back || back.ends_with("\xEF\xBF\xBD"), "DecodeStream lost text");
  (void)tok.decode(ids, /*skip_special=*/true);
  return 0;
}
