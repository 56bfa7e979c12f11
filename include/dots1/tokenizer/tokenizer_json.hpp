// dots1/tokenizer/tokenizer_json.hpp — fast reading of tokenizer.json. The file is mostly model.vocab
// (~150k entries) and model.merges (~150k pairs); building them as a nlohmann DOM takes ~3x longer than
// parsing, so a SAX handler streams those two into flat vectors and builds a DOM for the rest.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/base/input_file.hpp"
#include "dots1/base/json_input.hpp"
#include "dots1/base/limits.hpp"

namespace dots1::tok {

struct TokenizerJson {
  nlohmann::json root;                                   ///< everything except model.vocab / model.merges
  std::vector<std::pair<std::string, int64_t>> vocab;    ///< model.vocab, in file order
  std::vector<std::pair<std::string, std::string>> merges;  ///< model.merges as pairs, in rank order
  bool has_vocab = false, has_merges = false;
};

namespace detail {

class TokenizerJsonSax final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit TokenizerJsonSax(TokenizerJson& out) : out_(out) {}
  std::string error;

  bool null() override { return value(nlohmann::json()); }
  bool boolean(bool v) override { return value(v); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == Mode::Vocab) return vocab_id(v);
    return value(v);
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == Mode::Vocab) return vocab_id(v > static_cast<number_unsigned_t>(INT64_MAX) ? -1 : static_cast<int64_t>(v));
    return value(v);
  }
  bool number_float(number_float_t v, const string_t&) override {
    if (mode_ == Mode::Vocab) return fail("model.vocab ids must be integers");
    return value(v);
  }
  bool string(string_t& s) override {
    switch (mode_) {
      case Mode::Merges: {  // legacy "a b" form, as HF's convert_merges_to_hashmap splits it
        const auto sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          return fail("model.merges entry " + std::to_string(out_.merges.size()) + " ('" + shown(s) + "') is not 'a b'");
        out_.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        return true;
      }
      case Mode::MergePair:
        if (pair_.size() == 2) return fail("model.merges entry " + std::to_string(out_.merges.size()) + " has more than 2 parts");
        pair_.push_back(std::move(s));
        return true;
      case Mode::Vocab:
        return fail("model.vocab values must be integer ids");
      case Mode::Normal:
        return value(std::move(s));
    }
    return true;
  }
  bool binary(binary_t&) override { return fail("unexpected binary value"); }

  bool start_object(std::size_t) override {
    if (mode_ != Mode::Normal) return fail("unexpected object inside model.vocab or model.merges");
    if (at_model_field("vocab")) {
      mode_ = Mode::Vocab;
      out_.has_vocab = true;
      return true;
    }
    return open(nlohmann::json::object());
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (mode_ == Mode::Vocab) {
      mode_ = Mode::Normal;
      return true;
    }
    return close();
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::Merges) {
      mode_ = Mode::MergePair;
      pair_.clear();
      return true;
    }
    if (mode_ != Mode::Normal) return fail("unexpected array inside model.vocab or model.merges");
    if (at_model_field("merges")) {
      mode_ = Mode::Merges;
      out_.has_merges = true;
      return true;
    }
    return open(nlohmann::json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::MergePair) {
      if (pair_.size() != 2) return fail("model.merges entry " + std::to_string(out_.merges.size()) + " is not a pair");
      out_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = Mode::Merges;
      return true;
    }
    if (mode_ == Mode::Merges) {
      mode_ = Mode::Normal;
      return true;
    }
    return close();
  }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& e) override {
    return fail(std::string(e.what()) + " (byte " + std::to_string(pos) + ")");
  }

 private:
  enum class Mode { Normal, Vocab, Merges, MergePair };

  bool fail(std::string msg) {
    if (error.empty()) error = std::move(msg);
    return false;
  }
  // Are we about to open root["model"][name]?
  bool at_model_field(const char* name) const {
    return stack_.size() == 2 && keys_[1] == "model" && stack_[1]->is_object() && key_ == name;
  }
  nlohmann::json* insert(nlohmann::json&& v) {
    if (stack_.empty()) {
      out_.root = std::move(v);
      return &out_.root;
    }
    nlohmann::json& top = *stack_.back();
    if (top.is_object()) return &(top[key_] = std::move(v));
    top.push_back(std::move(v));
    return &top.back();
  }
  bool value(nlohmann::json&& v) {
    insert(std::move(v));
    return true;
  }
  bool open(nlohmann::json&& container) {
    // The limit every JSON reader of dots1 applies (base/json_input.hpp): deeper documents are refused before
    // the DOM gets deep (its destructor and copies recurse).
    if (stack_.size() >= limits::kMaxJsonDepth)
      return fail("arrays and objects nested more than " + std::to_string(limits::kMaxJsonDepth) + " levels deep (the limit of HF's JSON readers too)");
    const std::string k = !stack_.empty() && stack_.back()->is_object() ? key_ : std::string();
    stack_.push_back(insert(std::move(container)));
    keys_.push_back(k);
    return true;
  }
  bool close() {
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool vocab_id(int64_t id) {
    out_.vocab.emplace_back(std::move(key_), id);
    key_.clear();
    return true;
  }

  TokenizerJson& out_;
  Mode mode_ = Mode::Normal;
  std::vector<nlohmann::json*> stack_;  // open containers; pointers stay valid (parents only grow after a child closes)
  std::vector<std::string> keys_;       // the key each open container has in its parent object
  std::string key_;
  std::vector<std::string> pair_;
};

}  // namespace detail

/// Parses the text of a tokenizer.json. `origin` (usually the path) is put in error messages.
inline TokenizerJson parse_tokenizer_json(std::string_view text, std::string_view origin) {
  // NUL bytes first (nlohmann's lexer takes one for the end of the text: base/json_input.hpp); the depth limit
  // is the handler's (open()), as its DOM is the only deep structure (a pre-scan would cost ~20 ms on 11 MB).
  if (const std::string problem = io::nul_problem(text); !problem.empty())
    throw TokenizerError(std::string(origin) + ": invalid tokenizer.json: " + problem);
  TokenizerJson out;
  out.vocab.reserve(200000);
  out.merges.reserve(200000);
  detail::TokenizerJsonSax sax(out);
  const bool ok = nlohmann::json::sax_parse(text.begin(), text.end(), &sax);
  if (!ok || !sax.error.empty())
    throw TokenizerError(std::string(origin) + ": invalid tokenizer.json: " + (sax.error.empty() ? "parse error" : shown(sax.error, 2 * kMaxShownBytes)));
  if (!out.root.is_object()) throw TokenizerError(std::string(origin) + ": tokenizer.json is not a JSON object");
  return out;
}

/// A tokenizer file's text (regular files only, at most `max_bytes`; base/input_file.hpp).
inline std::string read_text_file(const std::string& path, std::string_view what = "tokenizer file",
                                  uint64_t max_bytes = limits::kMaxTokenizerJsonBytes) {
  return io::read_input_file(path, what, max_bytes);
}

}  // namespace dots1::tok
