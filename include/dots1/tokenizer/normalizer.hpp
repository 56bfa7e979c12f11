// dots1/tokenizer/normalizer.hpp — tokenizer.json "normalizer": none, or NFC (as Qwen2-family
// tokenizers use), possibly wrapped in a Sequence.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/tokenizer/unicode.hpp"

namespace dots1::tok {

class Normalizer {
 public:
  Normalizer() = default;

  /// Parses tokenizer.json's "normalizer" value. Other normalizer types (NFKC, Lowercase, Replace,
  /// Prepend, BertNormalizer, ...) are refused: they are not implemented, and ignoring them would
  /// encode differently from HF.
  static Normalizer from_json(const nlohmann::json& j, std::string_view origin) {
    Normalizer n;
    n.parse(j, origin);
    return n;
  }

  bool is_nfc() const noexcept { return nfc_; }
  bool is_identity() const noexcept { return !nfc_; }

  /// Normalizes valid UTF-8. Returns false (and leaves `out` untouched) when the text is unchanged,
  /// which is the common case and costs only a scan.
  bool apply(std::string_view in, std::string& out) const {
    if (!nfc_ || nfc_quick_check(in)) return false;
    out = nfc_no_quick_check(in);
    return true;
  }

  std::string normalize(std::string_view in) const {
    std::string out;
    return apply(in, out) ? out : std::string(in);
  }

 private:
  void parse(const nlohmann::json& j, std::string_view origin) {
    if (j.is_null()) return;
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
      throw TokenizerError(std::string(origin) + ": 'normalizer' must be null or an object with a 'type'");
    const std::string type = j["type"].get<std::string>();
    if (type == "NFC") {
      nfc_ = true;
    } else if (type == "Sequence") {
      if (!j.contains("normalizers") || !j["normalizers"].is_array())
        throw TokenizerError(std::string(origin) + ": Sequence normalizer without a 'normalizers' array");
      for (const auto& sub : j["normalizers"]) parse(sub, origin);  // NFC twice is NFC once
    } else {
      throw TokenizerError(std::string(origin) + ": unsupported normalizer type '" + shown(type) +
                           "' (dots1 supports NFC and Sequence of NFC, as in Qwen2-family tokenizers)");
    }
  }

  bool nfc_ = false;
};

}  // namespace dots1::tok
