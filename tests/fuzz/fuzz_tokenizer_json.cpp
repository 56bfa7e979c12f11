// libFuzzer target: Tokenizer::from_json_text on arbitrary text (the tokenizer.json loader: SAX parsing,
// vocab and merges, added tokens, normalizer, pre-tokenizer and regex translation, decoder). Rejections must
// be TokenizerError. A tokenizer that loads must encode sample texts into ids that are tokens, and decode
// them into valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <dots1/tokenizer.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::optional<dots1::Tokenizer> tok;
  try {
    tok.emplace(dots1::Tokenizer::from_json_text(text, "fuzz/tokenizer.json"));
  } catch (const dots1::TokenizerError&) {
    return 0;
  }
  static const std::string samples[] = {"Hello, w\xc3\xb6rld! 123 abc", " \n\t  x  ", "<s>ab</s><|endoftext|>",
                                        "\xe4\xbd\xa0\xe5\xa5\xbd", "e\xcc\x81 \xef\xac\x81"};
  for (const auto& s : samples) {
    std::vector<int32_t> ids;
    try {
      ids = tok->encode(s);
    } catch (const dots1::TokenizerError&) {
      continue;  // e.g. a Split regex that hits PCRE2's match limit: refused with a message, not a crash
    }
    for (int32_t id : ids) FUZZ_CHECK(id >= 0 && tok->id_to_token(id).has_value(), "encode produced id " + std::to_string(id));
    const std::string back = tok->decode(ids);
    try {
      dots1::tok::validate_utf8(back, "decoded text");
    } catch (const dots1::TokenizerError& e) {
      FUZZ_CHECK(false, e.what());
    }
  }
  return 0;
}
