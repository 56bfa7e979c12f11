// dots1/tokenizer/added_tokens.hpp — tokenizer.json "added_tokens": found in the text before anything
// else (leftmost-longest, like HF's Aho-Corasick), with the single_word / lstrip / rstrip / normalized
// / special rules of HF's AddedVocabulary.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "dots1/error.hpp"
#include "dots1/tokenizer/bpe.hpp"
#include "dots1/tokenizer/normalizer.hpp"

namespace dots1::tok {

/// A byte range [begin, end) of a text.
struct TextRange {
  size_t begin = 0, end = 0;
};

/// Whether [b, e) overlaps one of the sorted, disjoint `ranges`.
inline bool overlaps(std::span<const TextRange> ranges, size_t b, size_t e) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), b, [](size_t x, const TextRange& r) { return x < r.end; });
  return it != ranges.end() && it->begin < e;
}

/// One added token, with HF's flags.
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;  ///< only match when not inside a word (\w on either side)
  bool lstrip = false;       ///< also swallow the whitespace before it
  bool rstrip = false;       ///< also swallow the whitespace after it
  bool normalized = true;    ///< match against the normalized text (content normalized too)
  bool special = false;      ///< a special token: skipped by decode(skip_special), not parsed when asked
};

class AddedVocabulary {
 public:
  /// Adds `tokens` the way HF's AddedVocabulary::add_tokens does when it loads tokenizer.json, and checks
  /// that the id HF would assign each token is the id written in the file (HF only warns; a silent
  /// difference would shift ids). Tokens with empty content are ignored, as in HF.
  void build(const std::vector<AddedToken>& tokens, const BpeModel& model, const Normalizer& norm, std::string_view origin) {
    int32_t next_id = static_cast<int32_t>(model.vocab_size());
    for (const auto& t : tokens) {
      if (t.content.empty()) continue;
      if (auto it = by_content_.find(t.content); it != by_content_.end()) {
        const AddedToken& old = by_id_.at(it->second);
        if (old.single_word == t.single_word && old.lstrip == t.lstrip && old.rstrip == t.rstrip &&
            old.normalized == t.normalized && old.special == t.special)
          continue;  // exact duplicate
      }
      int32_t id;
      if (auto it = by_content_.find(t.content); it != by_content_.end())
        id = it->second;
      else if (auto mid = model.token_to_id(t.content))
        id = *mid;
      else
        id = next_id++;
      if (t.id >= 0 && t.id != id)
        throw TokenizerError(std::string(origin) + ": added token '" + shown(t.content) + "' has id " + std::to_string(t.id) +
                             " in the file, but HF tokenizers would give it id " + std::to_string(id) +
                             " (ids of added tokens must follow the model vocab without gaps)");
      AddedToken tok = t;
      tok.id = id;
      by_content_[tok.content] = id;
      if (tok.special) special_contents_.insert(tok.content);
      by_id_[id] = std::move(tok);
    }
    // Patterns: non-normalized tokens match the raw text, normalized ones the normalized text.
    for (auto& [id, tok] : by_id_) {
      if (tok.normalized) {
        std::string n = norm.normalize(tok.content);
        if (n != tok.content) decode_form_[id] = n;
        normalized_.add(n, id);
      } else {
        raw_.add(tok.content, id);
      }
    }
    raw_.finish();
    normalized_.finish();
  }

  bool empty() const noexcept { return by_id_.empty(); }
  size_t size() const noexcept { return by_id_.size(); }

  std::optional<int32_t> token_to_id(std::string_view content) const {
    auto it = by_content_.find(std::string(content));
    if (it == by_content_.end()) return std::nullopt;
    return it->second;
  }
  const AddedToken* find(int32_t id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &it->second;
  }
  /// The string HF's decoder receives for this added token (its normalized form when that differs).
  const std::string* decode_form(int32_t id) const {
    if (auto it = decode_form_.find(id); it != decode_form_.end()) return &it->second;
    const AddedToken* t = find(id);
    return t ? &t->content : nullptr;
  }
  bool is_special_content(std::string_view s) const { return special_contents_.count(std::string(s)) != 0; }

  /// All tokens, by increasing id.
  std::vector<AddedToken> tokens() const {
    std::vector<AddedToken> v;
    for (const auto& [id, t] : by_id_) v.push_back(t);
    std::sort(v.begin(), v.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
    return v;
  }

  /// HF's find_matches + split_with_indices on `text`, with the raw (normalized == false) or the
  /// normalized token set: calls f(piece, id) for each added token found (id >= 0) and for each stretch
  /// of other text (id == -1). Empty text yields one empty stretch, as in HF. When `parse_special` is
  /// false, special tokens are left in the text (HF's encode_special_tokens = true). A special token that
  /// overlaps one of the sorted, disjoint `plain` ranges is left in the text too (text a user wrote: see
  /// ChatFormat), and the search goes on from the byte after its start.
  template <class F>
  void split(std::string_view text, bool normalized_set, bool parse_special, F&& f, std::span<const TextRange> plain = {}) const {
    const Matcher& m = normalized_set ? normalized_ : raw_;
    if (text.empty() || m.patterns.empty()) {
      f(text, -1);
      return;
    }
    size_t start_offset = 0, pos = 0;
    while (true) {
      size_t mstart, mlen;
      int32_t id;
      if (!m.find(text, pos, mstart, mlen, id)) break;
      pos = mstart + mlen;  // the automaton goes on after this match whether or not it is kept
      const AddedToken& tok = by_id_.at(id);
      if (!parse_special && tok.special) continue;
      if (tok.special && !plain.empty() && overlaps(plain, mstart, mstart + mlen)) {
        pos = mstart + 1;  // a template marker may still start inside the rejected match's extent
        continue;
      }
      size_t start = mstart, stop = mstart + mlen;
      if (tok.single_word) {
        const bool start_space = start == 0 || !ends_with_word(text.substr(0, start));
        const bool stop_space = stop == text.size() || !starts_with_word(text.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (tok.lstrip) start = std::max(whitespace_run_start(text.substr(0, start)), start_offset);
      if (tok.rstrip) stop += whitespace_run_length(text.substr(stop));
      if (start_offset < start) f(text.substr(start_offset, start - start_offset), -1);
      f(text.substr(start, stop - start), id);
      start_offset = stop;
    }
    if (start_offset != text.size()) f(text.substr(start_offset), -1);
  }

 private:
  // Leftmost-longest multi-pattern search. The number of added tokens is small (tens to thousands),
  // so candidates are bucketed by first byte and tried longest first.
  struct Matcher {
    std::vector<std::pair<std::string, int32_t>> patterns;
    std::array<std::vector<uint32_t>, 256> by_first{};
    int single_first = -1;  // when all patterns start with the same byte: memchr to the candidates

    void add(const std::string& p, int32_t id) {
      if (!p.empty()) patterns.emplace_back(p, id);
    }
    void finish() {
      for (uint32_t i = 0; i < patterns.size(); ++i) by_first[static_cast<unsigned char>(patterns[i].first[0])].push_back(i);
      int distinct = 0;
      for (int b = 0; b < 256; ++b) {
        auto& v = by_first[b];
        std::stable_sort(v.begin(), v.end(), [&](uint32_t x, uint32_t y) { return patterns[x].first.size() > patterns[y].first.size(); });
        if (!v.empty()) {
          ++distinct;
          single_first = b;
        }
      }
      if (distinct != 1) single_first = -1;
    }
    bool find(std::string_view text, size_t from, size_t& start, size_t& len, int32_t& id) const {
      const size_t n = text.size();
      for (size_t i = from; i < n; ++i) {
        if (single_first >= 0) {
          const void* hit = std::memchr(text.data() + i, single_first, n - i);
          if (!hit) return false;
          i = static_cast<size_t>(static_cast<const char*>(hit) - text.data());
        }
        const auto& cands = by_first[static_cast<unsigned char>(text[i])];
        for (uint32_t c : cands) {
          const std::string& p = patterns[c].first;
          if (p.size() <= n - i && std::memcmp(text.data() + i, p.data(), p.size()) == 0) {
            start = i;
            len = p.size();
            id = patterns[c].second;
            return true;
          }
        }
      }
      return false;
    }
  };

  // The regexes HF uses for these rules are Rust's Unicode \w and \s.
  static bool ends_with_word(std::string_view s) {
    if (s.empty()) return false;
    size_t i = s.size();
    return is_word_char(utf8_prev(s, i));
  }
  static bool starts_with_word(std::string_view s) {
    if (s.empty()) return false;
    size_t i = 0;
    return is_word_char(utf8_next(s, i));
  }
  static size_t whitespace_run_start(std::string_view s) {  // start of the trailing whitespace run
    size_t i = s.size();
    while (i > 0) {
      size_t j = i;
      if (!is_white_space(utf8_prev(s, j))) break;
      i = j;
    }
    return i;
  }
  static size_t whitespace_run_length(std::string_view s) {  // length of the leading whitespace run
    size_t i = 0;
    while (i < s.size()) {
      size_t j = i;
      if (!is_white_space(utf8_next(s, j))) break;
      i = j;
    }
    return i;
  }

  std::unordered_map<std::string, int32_t> by_content_;
  std::unordered_map<int32_t, AddedToken> by_id_;
  std::unordered_map<int32_t, std::string> decode_form_;
  std::unordered_set<std::string> special_contents_;
  Matcher raw_, normalized_;
};

}  // namespace dots1::tok
