// dots1/generation/stop_strings.hpp — HF's StopStringCriteria (transformers/generation/stopping_criteria.py):
// a row stops when the text of its last tokens ends a stop string, matched on each token's own string.
//
// What HF matches, exactly (and so what this does):
//   * every token has a fixed string, and the match runs on its units: for a byte-level vocabulary (Qwen2,
//     dots.llm1: HF's "byte_level" matching mode, transformers >= 5.25) the bytes the ByteLevel decoder makes
//     of the token alone, so a character split across tokens still matches; stop strings are taken as their
//     UTF-8 bytes. Otherwise the token's decoded text, and lengths count code points (Python's len()).
//   * the stop string must overlap the sequence's last token: the last token starts with the end of the
//     stop string ("st" "op"), or contains all of it, or ends its overlap inside the token ("st" "opera":
//     the stop string ends inside the last token, "era" after it). A stop string followed by a whole further
//     token does not match (it would have matched one step earlier).
//   * walking back from there, each earlier token must fit the rest of the stop string exactly at its end
//     position; the first token of the match may begin before the stop string ("las" "topper" for "stop").
//   * only the last max(len(stop string)) tokens of the row are looked at, prompt tokens (and left pads)
//     included, as HF slices input_ids[:, -maximum_token_len:].
// Ids without a string (gaps in the vocabulary, ids past the tokenizer's vocabulary that the model's larger
// head can produce) never take part in a match, as HF's dummy row does.
//
// HF matches with precomputed per-token tables and tensor ops so that it compiles under XLA; here the same
// tables (valid positions and end overlaps of each token for each stop string) drive a plain backward walk.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dots1/error.hpp"

namespace dots1 {

namespace detail {

/// Code points of UTF-8 text; invalid UTF-8 raises InputError naming `what` and the byte offset.
inline std::u32string utf8_code_points(std::string_view s, const std::string& what) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    int n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    char32_t cp = n == 1 ? b : n == 2 ? b & 0x1F : n == 3 ? b & 0x0F : b & 0x07;
    bool ok = n > 0 && i + static_cast<size_t>(n) <= s.size();
    for (int k = 1; ok && k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      ok = (c & 0xC0) == 0x80;
      cp = (cp << 6) | (c & 0x3F);
    }
    // overlong forms, surrogates and values past U+10FFFF are not UTF-8 either
    ok = ok && !(n == 2 && cp < 0x80) && !(n == 3 && cp < 0x800) && !(n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
         !(cp >= 0xD800 && cp <= 0xDFFF);
    if (!ok) throw InputError(what + ": invalid UTF-8 at byte " + std::to_string(i));
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

}  // namespace detail

/// Each token id's string as HF's StopStringCriteria sees it (see the top of this file): what generate()
/// needs of a tokenizer to honour stop strings. Build it once per tokenizer (O(vocab)) and share it.
class TokenStrings {
 public:
  /// How strings are compared: HF's "byte_level" mode (bytes) or its plain mode (code points).
  enum class Units { bytes, code_points };

  TokenStrings() = default;
  /// `strings[id]`: token `id`'s string, or nullopt where `id` is no token. In `bytes` mode a string is the
  /// raw bytes the decoder makes of the token (need not be valid UTF-8); in `code_points` mode UTF-8 text.
  TokenStrings(const std::vector<std::optional<std::string>>& strings, Units units) : units_(units) {
    strings_.resize(strings.size());
    for (size_t id = 0; id < strings.size(); ++id)
      if (strings[id]) strings_[id] = to_units(*strings[id], "token string of id " + std::to_string(id), units);
  }
  /// From a dots1::Tokenizer (or anything with vocab_size(), id_to_token(id), token_bytes(id),
  /// byte_level_decoder() and decode(ids)): a byte-level vocabulary in bytes mode (each token's decoder
  /// bytes, HF's _token_to_bytes), any other in code points of the token decoded alone (clean_tokenizer_vocab).
  template <class Tok>
    requires requires(const Tok& t, std::vector<int32_t> ids) {
      t.vocab_size();
      t.id_to_token(int32_t{0});
      { t.byte_level_decoder() } -> std::convertible_to<bool>;
      { t.token_bytes(int32_t{0}) } -> std::convertible_to<std::string_view>;
      { t.decode(ids) } -> std::convertible_to<std::string>;
    }
  static TokenStrings of(const Tok& tokenizer) {
    const bool bytes = tokenizer.byte_level_decoder();
    std::vector<std::optional<std::string>> strings(tokenizer.vocab_size());
    std::vector<int32_t> one(1);
    for (size_t id = 0; id < strings.size(); ++id) {
      one[0] = static_cast<int32_t>(id);
      if (!tokenizer.id_to_token(one[0])) continue;
      strings[id] = bytes ? std::string(tokenizer.token_bytes(one[0])) : tokenizer.decode(one);
    }
    return TokenStrings(strings, bytes ? Units::bytes : Units::code_points);
  }

  Units units() const { return units_; }
  size_t size() const { return strings_.size(); }
  /// The units of token `id`, or nullptr for an id that is no token (or outside the table).
  const std::u32string* at(int64_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= strings_.size() || !strings_[static_cast<size_t>(id)]) return nullptr;
    return &*strings_[static_cast<size_t>(id)];
  }
  /// UTF-8 text (a stop string) in this table's units; invalid UTF-8 raises InputError naming `what`.
  std::u32string units_of(std::string_view text, const std::string& what) const {
    const std::u32string cps = detail::utf8_code_points(text, what);  // validates in both modes
    return units_ == Units::code_points ? cps : to_units(text, what, Units::bytes);
  }

 private:
  static std::u32string to_units(std::string_view s, const std::string& what, Units units) {
    if (units == Units::code_points) return detail::utf8_code_points(s, what);
    std::u32string out(s.size(), U'\0');
    for (size_t i = 0; i < s.size(); ++i) out[i] = static_cast<unsigned char>(s[i]);
    return out;
  }

  Units units_ = Units::bytes;
  std::vector<std::optional<std::u32string>> strings_;
};

/// HF's StopStringCriteria for a set of stop strings over one TokenStrings table.
class StopStringCriteria {
 public:
  StopStringCriteria(const std::vector<std::string>& stop_strings, const TokenStrings& tokens) {
    if (stop_strings.empty()) throw GenerationError("stop_strings: empty list");
    for (size_t s = 0; s < stop_strings.size(); ++s) {
      Target t;
      t.text = tokens.units_of(stop_strings[s], "stop string " + std::to_string(s));
      if (t.text.empty()) throw GenerationError("stop string " + std::to_string(s) + " is empty: it would match before any text");
      targets_.push_back(std::move(t));
      window_ = std::max(window_, static_cast<int64_t>(targets_.back().text.size()));
    }
    lengths_.assign(tokens.size(), -1);
    bool any_end = false;
    for (size_t id = 0; id < tokens.size(); ++id) {
      const std::u32string* tok = tokens.at(static_cast<int64_t>(id));
      if (!tok) continue;
      lengths_[id] = static_cast<int32_t>(tok->size());
      for (auto& t : targets_) add_token(t, static_cast<int64_t>(id), *tok);
    }
    for (const auto& t : targets_) any_end = any_end || !t.end_overlaps.empty();
    // HF's ValueError in _stop_string_create_embedding_vec
    if (!any_end)
      throw GenerationError("stop strings: no token of the vocabulary can end any of them (unusual characters that "
                            "are not in the tokenizer vocabulary?)");
  }

  /// The index of the first stop string that `ids` (a whole row: prompt, pads and generated tokens) ends
  /// with in HF's sense, or nullopt.
  std::optional<size_t> match(std::span<const int64_t> ids) const {
    if (ids.empty()) return std::nullopt;
    const auto n = static_cast<int64_t>(ids.size());
    const int64_t look = std::min(n, window_);  // input_ids[:, -maximum_token_len:]
    for (size_t s = 0; s < targets_.size(); ++s) {
      const Target& t = targets_[s];
      const auto target_len = static_cast<int64_t>(t.text.size());
      const auto ends = t.end_overlaps.find(ids[static_cast<size_t>(n - 1)]);
      if (ends == t.end_overlaps.end()) continue;
      for (int32_t end_length : ends->second) {
        int64_t matched = end_length;
        for (int64_t back = 1; matched < target_len && back < look; ++back) {
          const int64_t id = ids[static_cast<size_t>(n - 1 - back)];
          const auto pos = t.valid_positions.find(id);
          if (pos == t.valid_positions.end() ||
              std::find(pos->second.begin(), pos->second.end(), static_cast<int32_t>(matched)) == pos->second.end())
            break;
          matched += lengths_[static_cast<size_t>(id)];
        }
        if (matched >= target_len) return s;
      }
    }
    return std::nullopt;
  }

  /// How many trailing tokens a match can involve (HF's maximum_token_len: the longest stop string).
  int64_t window() const { return window_; }

 private:
  struct Target {
    std::u32string text;
    // token id -> the positions (characters matched so far, counted from the end) at which the token can
    // continue a match backwards; its overlaps with the end of the stop string
    std::unordered_map<int64_t, std::vector<int32_t>> valid_positions, end_overlaps;
  };

  /// HF's _stop_string_get_matching_positions for one token and one stop string, on reversed strings:
  /// shift i < 0 drops the token's last -i characters (the part after the stop string's end).
  static void add_token(Target& t, int64_t id, const std::u32string& token) {
    const auto L = static_cast<int64_t>(t.text.size()), T = static_cast<int64_t>(token.size());
    std::vector<int32_t> positions, ends;
    for (int64_t i = 1 - T; i < L; ++i) {
      // the token's characters, last first, without the overhang; the stop string's, last first, from i
      const int64_t skip = i < 0 ? -i : 0, at = std::max<int64_t>(i, 0);
      const int64_t tok_len = T - skip, stop_len = std::min(tok_len, L - at);
      // tok.startswith(stop): token[T-1-skip-k] == text[L-1-at-k] for k < stop_len
      bool same = true;
      for (int64_t k = 0; same && k < stop_len; ++k)
        same = token[static_cast<size_t>(T - 1 - skip - k)] == t.text[static_cast<size_t>(L - 1 - at - k)];
      if (!same) continue;
      if (at == 0) ends.push_back(static_cast<int32_t>(std::min(tok_len, stop_len)));
      else positions.push_back(static_cast<int32_t>(at));
    }
    if (!positions.empty()) t.valid_positions.emplace(id, std::move(positions));
    if (!ends.empty()) t.end_overlaps.emplace(id, std::move(ends));
  }

  std::vector<Target> targets_;
  std::vector<int32_t> lengths_;  // code points per id, -1 for ids that are no token
  int64_t window_ = 0;
};

}  // namespace dots1
