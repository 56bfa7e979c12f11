// dots1/tokenizer/decode_stream.hpp — incremental decoding for generation: feed ids one at a time, get
// text as soon as it is complete UTF-8 (HF tokenizers' DecodeStream, same algorithm).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dots1/error.hpp"
#include "dots1/tokenizer/tokenizer.hpp"

namespace dots1 {

/// Keeps a reference to the tokenizer, which must outlive the stream.
class DecodeStream {
 public:
  explicit DecodeStream(const Tokenizer& tokenizer, bool skip_special = false)
      : tok_(tokenizer), skip_special_(skip_special) {}

  /// Adds one id. Returns the new text, or nullopt while the bytes so far end inside a character (the
  /// decoded text would end with U+FFFD). Keeps only a short window of ids.
  std::optional<std::string> step(int32_t id) {
    static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
    auto ends_with_replacement = [](const std::string& s) {
      return s.size() >= 3 && std::string_view(s).substr(s.size() - 3) == kReplacement;
    };
    if (prefix_.empty() && !ids_.empty()) {
      std::string p = tok_.decode(ids_, skip_special_);
      if (!ends_with_replacement(p)) {
        prefix_ = std::move(p);
        prefix_index_ = ids_.size();
      }
    }
    ids_.push_back(id);
    std::string s = tok_.decode(ids_, skip_special_);
    if (s.size() <= prefix_.size() || ends_with_replacement(s)) return std::nullopt;
    if (s.compare(0, prefix_.size(), prefix_) != 0)
      throw TokenizerError("DecodeStream: decoded text no longer starts with the previous text after id " +
                           std::to_string(id));
    std::string fresh = s.substr(prefix_.size());
    const size_t new_prefix_index = ids_.size() - prefix_index_;
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_index_));
    prefix_ = tok_.decode(ids_, skip_special_);
    prefix_index_ = new_prefix_index;
    return fresh;
  }

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  std::string prefix_;
  size_t prefix_index_ = 0;
};

}  // namespace dots1
