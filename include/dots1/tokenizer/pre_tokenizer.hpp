// dots1/tokenizer/pre_tokenizer.hpp — tokenizer.json "pre_tokenizer": Split (regex or literal, all five
// delimiter behaviours, invert) and ByteLevel, possibly in a Sequence; the same semantics as HF.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/tokenizer/regex.hpp"

namespace dots1::tok {

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

/// GPT-2's pattern, which HF's ByteLevel pre-tokenizer applies when use_regex is true.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// One Split step.
struct SplitRule {
  std::shared_ptr<const Regex> regex;  // null for a literal pattern
  std::string literal;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;

  /// HF's Pattern::find_matches: consecutive (start, end, is_match) pieces covering all of `s`.
  template <class F>
  void find_matches(std::string_view s, F&& f) const {
    if (s.empty()) {
      f(size_t{0}, size_t{0}, invert);
      return;
    }
    size_t prev = 0;
    auto on_match = [&](size_t a, size_t b) {
      if (prev != a) f(prev, a, invert);
      f(a, b, !invert);
      prev = b;
    };
    if (regex) {
      regex->for_each_match(s, on_match);
    } else {
      for (size_t at = s.find(literal); at != std::string_view::npos; at = s.find(literal, at + literal.size()))
        on_match(at, at + literal.size());
    }
    if (prev != s.size()) f(prev, s.size(), invert);
  }

  /// NormalizedString::split: the pieces of `s` kept by the behaviour, in order (may be empty).
  template <class Out>
  void split(std::string_view s, Out&& out) const {
    if (behavior == SplitBehavior::Isolated) {
      find_matches(s, [&](size_t a, size_t b, bool) { out(s.substr(a, b - a)); });
      return;
    }
    struct M { size_t a, b; bool match; };
    thread_local std::vector<M> ms;
    ms.clear();
    find_matches(s, [&](size_t a, size_t b, bool m) { ms.push_back({a, b, m}); });
    switch (behavior) {
      case SplitBehavior::Removed:
        for (const auto& m : ms)
          if (!m.match) out(s.substr(m.a, m.b - m.a));
        return;
      case SplitBehavior::Contiguous: {
        // Runs of consecutive pieces with the same flag are fused.
        std::vector<std::pair<size_t, size_t>> acc;
        bool previous = false;
        for (const auto& m : ms) {
          if (m.match == previous && !acc.empty())
            acc.back().second = m.b;
          else
            acc.emplace_back(m.a, m.b);
          previous = m.match;
        }
        for (auto [a, b] : acc) out(s.substr(a, b - a));
        return;
      }
      case SplitBehavior::MergedWithPrevious: {
        std::vector<std::pair<size_t, size_t>> acc;
        bool previous = false;
        for (const auto& m : ms) {
          if (m.match && !previous && !acc.empty())
            acc.back().second = m.b;
          else
            acc.emplace_back(m.a, m.b);
          previous = m.match;
        }
        for (auto [a, b] : acc) out(s.substr(a, b - a));
        return;
      }
      case SplitBehavior::MergedWithNext: {
        // The same, walking backwards: a match is glued to the piece that follows it.
        std::vector<std::pair<size_t, size_t>> acc;
        bool previous = false;
        for (auto it = ms.rbegin(); it != ms.rend(); ++it) {
          if (it->match && !previous && !acc.empty())
            acc.back().first = it->a;
          else
            acc.emplace_back(it->a, it->b);
          previous = it->match;
        }
        for (auto it = acc.rbegin(); it != acc.rend(); ++it) out(s.substr(it->first, it->second - it->first));
        return;
      }
      case SplitBehavior::Isolated:
        return;
    }
  }
};

/// The whole pre-tokenization stage. Byte-level mapping itself is left to the model (it works on raw
/// bytes), so this class only cuts text into words.
class PreTokenizer {
 public:
  PreTokenizer() = default;

  static PreTokenizer from_json(const nlohmann::json& j, std::string_view origin) {
    PreTokenizer p;
    p.parse(j, origin);
    return p;
  }

  /// True when a ByteLevel step is present: the model must see the byte-level alphabet.
  bool byte_level() const noexcept { return byte_level_; }

  /// Cuts `text` (normalized, valid UTF-8) into words and calls emit(word) for each non-empty word.
  template <class F>
  void run(std::string_view text, F&& emit) const {
    // Fast path (Qwen2, Llama 3, ...): one Isolated split and nothing that changes the text.
    if (steps_.size() == 1 && !steps_[0].prefix_space && steps_[0].rule.behavior == SplitBehavior::Isolated) {
      steps_[0].rule.split(text, [&](std::string_view w) {
        if (!w.empty()) emit(w);
      });
      return;
    }
    thread_local std::vector<std::string_view> cur, next;
    thread_local std::deque<std::string> arena;  // storage for pieces that got a prefix space
    arena.clear();
    cur.assign(1, text);
    for (const auto& step : steps_) {
      next.clear();
      for (std::string_view piece : cur) {
        if (step.prefix_space && (piece.empty() || piece.front() != ' ')) {
          std::string& with_space = arena.emplace_back();
          with_space.reserve(piece.size() + 1);
          with_space += ' ';
          with_space.append(piece);
          piece = with_space;
        }
        if (step.has_rule) {
          step.rule.split(piece, [&](std::string_view w) {
            if (!w.empty()) next.push_back(w);
          });
        } else if (!piece.empty()) {
          next.push_back(piece);
        }
      }
      std::swap(cur, next);
    }
    for (std::string_view w : cur) emit(w);
  }

 private:
  struct Step {
    bool prefix_space = false;  // ByteLevel add_prefix_space: prepend ' ' to pieces not starting with one
    bool has_rule = true;
    SplitRule rule;
  };

  void parse(const nlohmann::json& j, std::string_view origin) {
    if (j.is_null()) return;
    const std::string where = std::string(origin) + " pre_tokenizer";
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
      throw TokenizerError(where + ": must be null or an object with a 'type'");
    if (byte_level_)
      throw TokenizerError(where + ": a step after ByteLevel is not supported (ByteLevel must come last)");
    const std::string type = j["type"].get<std::string>();
    if (type == "Sequence") {
      if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
        throw TokenizerError(where + ": Sequence without a 'pretokenizers' array");
      for (const auto& sub : j["pretokenizers"]) parse(sub, origin);
    } else if (type == "Split") {
      Step s;
      const auto& pat = j.value("pattern", nlohmann::json());
      if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
        s.rule.regex = std::make_shared<const Regex>(pat["Regex"].get<std::string>(), where);
      } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
        s.rule.literal = pat["String"].get<std::string>();
        if (s.rule.literal.empty()) throw TokenizerError(where + ": Split with an empty String pattern");
      } else {
        throw TokenizerError(where + ": Split 'pattern' must be {\"Regex\": ...} or {\"String\": ...}");
      }
      const std::string behavior = j.value("behavior", std::string());
      if (behavior == "Removed") s.rule.behavior = SplitBehavior::Removed;
      else if (behavior == "Isolated") s.rule.behavior = SplitBehavior::Isolated;
      else if (behavior == "MergedWithPrevious") s.rule.behavior = SplitBehavior::MergedWithPrevious;
      else if (behavior == "MergedWithNext") s.rule.behavior = SplitBehavior::MergedWithNext;
      else if (behavior == "Contiguous") s.rule.behavior = SplitBehavior::Contiguous;
      else throw TokenizerError(where + ": unknown Split behavior '" + shown(behavior) + "'");
      s.rule.invert = j.value("invert", false);
      steps_.push_back(std::move(s));
    } else if (type == "ByteLevel") {
      byte_level_ = true;
      Step s;
      s.prefix_space = j.value("add_prefix_space", true);
      if (j.value("use_regex", true)) {
        s.rule.regex = std::make_shared<const Regex>(kGpt2Pattern, where);
      } else {
        s.has_rule = false;
      }
      if (s.prefix_space || s.has_rule) steps_.push_back(std::move(s));
    } else {
      throw TokenizerError(where + ": unsupported pre_tokenizer type '" + shown(type) +
                           "' (dots1 supports Split, ByteLevel and Sequence)");
    }
  }

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace dots1::tok
