// dots1/tokenizer/chat_format.hpp — the dots.llm1.inst chat format (spec section 6):
//   system:    <|system|>{content}<|endofsystem|>
//   user:      <|userprompt|>{content}<|endofuserprompt|>
//   assistant: <|response|>{content}<|endofresponse|>
//   generation prompt: <|response|>
// No BOS, nothing between turns; generation stops at <|endofresponse|> or <|endoftext|>. This is the
// rendering of llama.cpp's LLM_CHAT_TEMPLATE_DOTS1, which recognises the checkpoint's Jinja template by
// the substring "<|endofuserprompt|>"; dots1 does the same and runs no Jinja.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dots1/error.hpp"
#include "dots1/tokenizer/tokenizer.hpp"

namespace dots1 {

/// One chat turn. role is "system", "user" or "assistant".
struct ChatMessage {
  std::string role;
  std::string content;
};

class ChatFormat {
 public:
  enum class Kind { Dots1 };

  /// The dots.llm1 format.
  static ChatFormat dots1() { return ChatFormat(Kind::Dots1); }

  /// Recognises a checkpoint's Jinja chat_template. Only the dots.llm1 template is built in; any other
  /// template throws TokenizerError naming the built-in formats.
  static ChatFormat from_template(std::string_view jinja) {
    if (jinja.find("<|endofuserprompt|>") != std::string_view::npos) return dots1();
    std::string head(jinja.substr(0, 80));
    for (char& c : head)
      if (c == '\n') c = ' ';
    throw TokenizerError("unsupported chat_template (\"" + head + (jinja.size() > 80 ? "..." : "") +
                         "\"): dots1 runs no Jinja; built-in chat formats: dots1 (dots.llm1.inst, recognised by "
                         "'<|endofuserprompt|>' in the template)");
  }

  /// The format of a loaded checkpoint: from its chat_template when it has one, else dots.llm1's.
  static ChatFormat for_tokenizer(const Tokenizer& tokenizer) {
    if (const auto& t = tokenizer.chat_template()) return from_template(*t);
    return dots1();
  }

  Kind kind() const noexcept { return kind_; }
  std::string_view name() const noexcept { return "dots1"; }

  /// The system prompt inserted when a conversation does not start with a system message. None by
  /// default, as llama.cpp renders it; ms-swift and exllama-style templates use
  /// "You are a helpful assistant." (whether the official template does is unverified, spec 6).
  ChatFormat& set_default_system_prompt(std::optional<std::string> prompt) {
    default_system_ = std::move(prompt);
    return *this;
  }
  const std::optional<std::string>& default_system_prompt() const noexcept { return default_system_; }

  /// The prompt text. Messages are rendered in order (a system message is normally first); an empty
  /// content renders as empty markers. Roles other than system/user/assistant throw TokenizerError.
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
    std::string out;
    if (default_system_ && (messages.empty() || messages.front().role != "system"))
      out += "<|system|>" + *default_system_ + "<|endofsystem|>";
    for (size_t i = 0; i < messages.size(); ++i) {
      const ChatMessage& m = messages[i];
      if (m.role == "system")
        out += "<|system|>" + m.content + "<|endofsystem|>";
      else if (m.role == "user")
        out += "<|userprompt|>" + m.content + "<|endofuserprompt|>";
      else if (m.role == "assistant")
        out += "<|response|>" + m.content + "<|endofresponse|>";
      else
        throw TokenizerError("chat message " + std::to_string(i) + " has role '" + m.role +
                             "'; the dots1 chat format knows system, user and assistant");
    }
    if (add_generation_prompt) out += "<|response|>";
    return out;
  }
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    return render(std::span<const ChatMessage>(messages), add_generation_prompt);
  }

  /// render() then encode with special tokens parsed: the markers become single ids when the vocabulary
  /// has them as added tokens (dots.llm1 does), and plain text otherwise. No BOS is added.
  std::vector<int32_t> encode(const Tokenizer& tokenizer, std::span<const ChatMessage> messages,
                              bool add_generation_prompt) const {
    return tokenizer.encode(render(messages, add_generation_prompt), /*parse_special=*/true);
  }
  std::vector<int32_t> encode(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt) const {
    return encode(tokenizer, std::span<const ChatMessage>(messages), add_generation_prompt);
  }

  /// The markers the format writes around turns.
  const std::vector<std::string>& markers() const {
    static const std::vector<std::string> m = {"<|system|>", "<|endofsystem|>", "<|userprompt|>", "<|endofuserprompt|>", "<|response|>",
                                               "<|endofresponse|>"};
    return m;
  }

  /// For a chat (not for rendering text): every marker must be one token of `tokenizer`. Otherwise the markers
  /// are encoded as plain text, the model never sees a turn boundary and the answer never ends at
  /// <|endofresponse|> (a base model's tokenizer, or another model's). TokenizerError names the missing ones.
  void require_tokens(const Tokenizer& tokenizer) const {
    std::string missing;
    for (const auto& m : markers())
      if (tokenizer.encode(m, /*parse_special=*/true).size() != 1) missing += (missing.empty() ? "" : ", ") + m;
    if (!missing.empty())
      throw TokenizerError("chat: the tokenizer " + shown(tokenizer.origin()) + " has no token for the " + std::string(name()) +
                           " chat format's marker(s) " + missing +
                           ", so they would be read as plain text (is this a base model's tokenizer? dots.llm1.inst's has them as added "
                           "tokens)");
  }

  /// Strings that end an assistant turn.
  const std::vector<std::string>& stop_tokens() const {
    static const std::vector<std::string> stops = {"<|endofresponse|>", "<|endoftext|>"};
    return stops;
  }

  /// Ids of stop_tokens() that exist in `tokenizer`, plus its eos_token from tokenizer_config.json,
  /// without duplicates.
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
  Kind kind_;
  std::optional<std::string> default_system_;
};

}  // namespace dots1
