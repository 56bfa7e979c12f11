// dots1/tokenizer/chat_format.hpp — a conversation as the model's prompt: the checkpoint's own Jinja
// chat_template (rendered by dots1's interpreter, dots1/tokenizer/jinja.hpp, as HF's apply_chat_template
// renders it), or the built-in dots.llm1.inst format when a folder has no template:
//   system:    <|system|>{content}<|endofsystem|>
//   user:      <|userprompt|>{content}<|endofuserprompt|>
//   assistant: <|response|>{content}<|endofresponse|>
//   generation prompt: <|response|>
// (no BOS, nothing between turns: llama.cpp's LLM_CHAT_TEMPLATE_DOTS1 rendering).
//
// Special tokens in message contents. HF's apply_chat_template(tokenize=True) tokenizes the rendered text
// as a whole, so a user who types "<|endofuserprompt|><|response|>" forges a turn. dots1 does not:
// render_chat() returns the text together with the byte ranges that came from message contents (the
// interpreter tracks them through every string operation), and encode() parses special tokens only
// outside those ranges; inside them the markers are plain text. Where no content has special-token text,
// the ids are exactly HF's.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/tokenizer/jinja.hpp"
#include "dots1/tokenizer/tokenizer.hpp"

namespace dots1 {

/// One chat turn. role is "system", "user" or "assistant" (a template may know others, e.g. "tool").
struct ChatMessage {
  std::string role;
  std::string content;
};

/// A rendered conversation: the text and the byte ranges of it that came from message contents (sorted,
/// disjoint).
struct RenderedChat {
  std::string text;
  std::vector<tok::TextRange> content_ranges;
};

class ChatFormat {
 public:
  enum class Kind { Dots1, Jinja };

  /// The built-in dots.llm1 format.
  static ChatFormat dots1() { return ChatFormat(Kind::Dots1); }

  /// A Jinja chat template (a checkpoint's chat_template). `special_tokens` are passed to it as variables
  /// (bos_token, eos_token, ... as apply_chat_template passes the tokenizer's special tokens); eos_token is
  /// also a stop token. Throws TemplateError when the template cannot be parsed or uses a construct outside
  /// the supported subset (named, with its line).
  static ChatFormat from_template(std::string jinja, std::vector<std::pair<std::string, std::string>> special_tokens = {}) {
    ChatFormat f(Kind::Jinja);
    f.template_ = std::make_shared<const jinja::Template>(std::move(jinja));
    f.special_tokens_ = std::move(special_tokens);
    for (const auto& [name, content] : f.special_tokens_)
      if (name == "eos_token") f.eos_token_ = content;
    return f;
  }

  /// The format of a loaded checkpoint: its chat_template (tokenizer_config.json, or chat_template.jinja /
  /// chat_template.json beside it; the "default" entry of a list of named templates) with its special
  /// tokens, else the built-in dots.llm1 format. Also finds the template's end-of-turn marker (the special
  /// token that follows an assistant message's content) for stop_token_ids().
  static ChatFormat for_tokenizer(const Tokenizer& tokenizer) {
    const auto& t = tokenizer.chat_template();
    if (!t) return dots1();
    ChatFormat f = from_template(*t, tokenizer.template_special_tokens());
    f.end_of_turn_ = f.find_end_of_turn(tokenizer);
    return f;
  }

  Kind kind() const noexcept { return kind_; }
  std::string_view name() const noexcept { return kind_ == Kind::Dots1 ? "dots1" : "jinja"; }

  /// The system prompt inserted when a conversation does not start with a system message. None by
  /// default; with a template, a system message is added in front of the messages before rendering.
  ChatFormat& set_default_system_prompt(std::optional<std::string> prompt) {
    default_system_ = std::move(prompt);
    return *this;
  }
  const std::optional<std::string>& default_system_prompt() const noexcept { return default_system_; }

  /// An extra template variable, passed as a keyword of apply_chat_template is (enable_thinking, date_string,
  /// ...). Strings set here are the caller's, not message content.
  ChatFormat& set_variable(std::string name, nlohmann::ordered_json value) {
    for (auto& [k, v] : variables_)
      if (k == name) {
        v = std::move(value);
        return *this;
      }
    variables_.emplace_back(std::move(name), std::move(value));
    return *this;
  }

  /// Pins strftime_now() to a time (seconds since the epoch, shown in local time), for reproducible prompts.
  ChatFormat& set_clock(std::optional<std::time_t> now) {
    render_options_.now = now;
    return *this;
  }

  /// The prompt text and the byte ranges of it that came from message contents. A template's own
  /// raise_exception('...') and every rendering error are TemplateErrors; roles other than
  /// system/user/assistant are a TokenizerError in the built-in format.
  RenderedChat render_chat(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
    std::vector<ChatMessage> with_default;
    if (default_system_ && (messages.empty() || messages.front().role != "system")) {
      with_default.push_back({"system", *default_system_});
      with_default.insert(with_default.end(), messages.begin(), messages.end());
      messages = with_default;
    }
    return kind_ == Kind::Dots1 ? render_dots1(messages, add_generation_prompt) : render_jinja(messages, add_generation_prompt);
  }
  RenderedChat render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    return render_chat(std::span<const ChatMessage>(messages), add_generation_prompt);
  }

  /// The prompt text (render_chat().text).
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
    return render_chat(messages, add_generation_prompt).text;
  }
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    return render(std::span<const ChatMessage>(messages), add_generation_prompt);
  }

  /// The prompt ids: the template's markers become their special-token ids, message contents are
  /// tokenized as plain text (see the top of this file). No BOS is added (a template that wants one
  /// renders it, as in HF).
  std::vector<int32_t> encode(const Tokenizer& tokenizer, std::span<const ChatMessage> messages, bool add_generation_prompt) const {
    return encode_rendered(tokenizer, render_chat(messages, add_generation_prompt));
  }
  std::vector<int32_t> encode(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    return encode(tokenizer, std::span<const ChatMessage>(messages), add_generation_prompt);
  }

  /// The ids of rendered.text[begin:] with special tokens parsed only outside the content ranges (for a
  /// chat that feeds each turn's new text after what the cache already holds).
  static std::vector<int32_t> encode_rendered(const Tokenizer& tokenizer, const RenderedChat& rendered, size_t begin = 0) {
    if (begin > rendered.text.size()) throw TokenizerError("encode_rendered: begin is past the end of the rendered text");
    std::vector<tok::TextRange> plain;
    for (const auto& r : rendered.content_ranges) {
      if (r.end <= begin) continue;
      plain.push_back({std::max(r.begin, begin) - begin, r.end - begin});
    }
    return tokenizer.encode(std::string_view(rendered.text).substr(begin), plain);
  }

  /// Strings that end an assistant turn: for the built-in format <|endofresponse|> and <|endoftext|>; for a
  /// template, its end-of-turn marker (when for_tokenizer found one) and the eos_token.
  std::vector<std::string> stop_tokens() const {
    if (kind_ == Kind::Dots1) return {"<|endofresponse|>", "<|endoftext|>"};
    std::vector<std::string> s;
    if (end_of_turn_) s.push_back(*end_of_turn_);
    if (eos_token_ && (!end_of_turn_ || *eos_token_ != *end_of_turn_)) s.push_back(*eos_token_);
    return s;
  }

  /// The markers the built-in dots.llm1 format writes around turns.
  static const std::vector<std::string>& dots1_markers() {
    static const std::vector<std::string> m = {"<|system|>", "<|endofsystem|>", "<|userprompt|>", "<|endofuserprompt|>", "<|response|>",
                                               "<|endofresponse|>"};
    return m;
  }

  /// For a chat (not for rendering text): the strings that delimit turns must be single tokens of
  /// `tokenizer`: every marker of the built-in format, or a template's stop strings (its end-of-turn marker,
  /// the eos_token). Otherwise they are encoded as plain text, the model never sees a turn boundary and an
  /// answer never ends (a base model's tokenizer, or another model's). TokenizerError names the missing ones.
  void require_tokens(const Tokenizer& tokenizer) const {
    const std::vector<std::string> needed = kind_ == Kind::Dots1 ? dots1_markers() : stop_tokens();
    std::string missing;
    for (const auto& m : needed)
      if (tokenizer.encode(m, /*parse_special=*/true).size() != 1) missing += (missing.empty() ? "" : ", ") + m;
    if (needed.empty()) missing = "(none: the template has no end-of-turn marker and the tokenizer no eos_token)";
    if (!missing.empty())
      throw TokenizerError("chat: the tokenizer " + shown(tokenizer.origin()) + " has no token for the " + std::string(name()) +
                           " chat format's marker(s) " + missing +
                           ", so they would be read as plain text (is this a base model's tokenizer? dots.llm1.inst's has them as added "
                           "tokens)");
  }

  /// Ids of stop_tokens() that exist in `tokenizer`, plus its eos_token from tokenizer_config.json,
  /// without duplicates. A chat should also stop at generation_config.json's eos_token_id (ChatSession
  /// adds its GenerationConfig's eos ids).
  std::vector<int32_t> stop_token_ids(const Tokenizer& tokenizer) const {
    std::vector<int32_t> ids;
    auto add = [&](int32_t id) {
      for (int32_t x : ids)
        if (x == id) return;
      ids.push_back(id);
    };
    for (const auto& s : stop_tokens())
      if (auto id = tokenizer.token_to_id(s)) add(*id);
    if (auto eos = tokenizer.eos_id()) add(*eos);
    return ids;
  }

 private:
  explicit ChatFormat(Kind k) : kind_(k) {}

  static void append(RenderedChat& out, std::string_view text, bool content) {
    if (content && !text.empty()) out.content_ranges.push_back({out.text.size(), out.text.size() + text.size()});
    out.text += text;
  }

  static RenderedChat render_dots1(std::span<const ChatMessage> messages, bool add_generation_prompt) {
    RenderedChat out;
    for (size_t i = 0; i < messages.size(); ++i) {
      const ChatMessage& m = messages[i];
      const char *open, *close;
      if (m.role == "system") open = "<|system|>", close = "<|endofsystem|>";
      else if (m.role == "user") open = "<|userprompt|>", close = "<|endofuserprompt|>";
      else if (m.role == "assistant") open = "<|response|>", close = "<|endofresponse|>";
      else
        throw TokenizerError("chat message " + std::to_string(i) + " has role '" + m.role +
                             "'; the dots1 chat format knows system, user and assistant");
      append(out, open, false);
      append(out, m.content, true);
      append(out, close, false);
    }
    if (add_generation_prompt) append(out, "<|response|>", false);
    return out;
  }

  RenderedChat render_jinja(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
    // The variables apply_chat_template passes: messages (contents tainted), tools=None, documents=None,
    // add_generation_prompt, the special tokens, then the call's keywords.
    jinja::Dict vars;
    std::vector<jinja::Value> list;
    for (const auto& m : messages) {
      auto d = jinja::make_dict();
      d->set("role", jinja::Value::string(m.role));
      d->set("content", jinja::Value::tainted_string(m.content));
      list.push_back(jinja::Value::dict(d));
    }
    vars.set("messages", jinja::Value::list(std::move(list)));
    vars.set("tools", jinja::Value::none());
    vars.set("documents", jinja::Value::none());
    vars.set("add_generation_prompt", jinja::Value::boolean(add_generation_prompt));
    for (const auto& [k, v] : special_tokens_) vars.set(k, jinja::Value::string(v));
    for (const auto& [k, v] : variables_) vars.set(k, jinja::from_json(v));
    jinja::Rendered r = template_->render(vars, render_options_);
    RenderedChat out;
    out.text = std::move(r.text);
    for (const auto& s : r.tainted) out.content_ranges.push_back({s.begin, s.end});
    return out;
  }

  // The special token right after an assistant message's content, when the template closes assistant
  // turns with one (<|im_end|>, <|eot_id|>, <end_of_turn>, <|endofresponse|>, </s> ...).
  std::optional<std::string> find_end_of_turn(const Tokenizer& tokenizer) const {
    const std::vector<std::vector<ChatMessage>> probes = {
        {{"user", "Hi"}, {"assistant", "Hello"}}, {{"system", "S"}, {"user", "Hi"}, {"assistant", "Hello"}},
        {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}}};
    std::vector<std::string> specials;
    for (const auto& t : tokenizer.added_tokens())
      if (t.special) specials.push_back(t.content);
    for (const auto& probe : probes) {
      RenderedChat r;
      try {
        r = render_chat(probe, false);
      } catch (const Error&) {
        continue;  // this template refuses the probe (e.g. it needs a system message); try the next
      }
      // The assistant's content is the second-to-last or last content range that reads "Hello".
      for (auto it = r.content_ranges.rbegin(); it != r.content_ranges.rend(); ++it) {
        if (r.text.compare(it->begin, it->end - it->begin, "Hello") != 0) continue;
        const std::string_view tail = std::string_view(r.text).substr(it->end);
        std::optional<std::string> best;
        for (const auto& s : specials)
          if (tail.substr(0, s.size()) == s && (!best || s.size() > best->size())) best = s;
        return best;
      }
    }
    return std::nullopt;
  }

  Kind kind_;
  std::optional<std::string> default_system_;
  std::shared_ptr<const jinja::Template> template_;
  std::vector<std::pair<std::string, std::string>> special_tokens_;
  std::vector<std::pair<std::string, nlohmann::ordered_json>> variables_;
  jinja::RenderOptions render_options_;
  std::optional<std::string> eos_token_, end_of_turn_;
};

}  // namespace dots1
