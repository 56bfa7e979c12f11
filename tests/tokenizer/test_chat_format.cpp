// The dots.llm1 chat format: rendering, template detection, encoding with and without the chat
// markers in the vocabulary, stop tokens.
#define BOOST_TEST_MODULE chat_format
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include <dots1/tokenizer.hpp>

#include "tokenizer_fixtures.hpp"

using dots1::ChatFormat;
using dots1::ChatMessage;
using dots1::Tokenizer;
using dots1::TokenizerError;
using dots1_test::fixtures;
using dots1_test::ids_of;
using dots1_test::qwen2_dir;
using dots1_test::read_jsonl;

namespace {

const Tokenizer& qwen2() {
  static const Tokenizer t = Tokenizer::from_folder(qwen2_dir());
  return t;
}

std::vector<ChatMessage> messages_of(const nlohmann::json& j) {
  std::vector<ChatMessage> m;
  for (const auto& e : j) m.push_back({e["role"], e["content"]});
  return m;
}

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const TokenizerError& e) {
    return e.what();
  }
  return "(no TokenizerError)";
}

}  // namespace

BOOST_AUTO_TEST_CASE(renders_the_dots1_format) {
  const ChatFormat f = ChatFormat::dots1();
  // Without a system message, with the generation prompt.
  BOOST_TEST(f.render({{"user", "Hi"}}, true) == "<|userprompt|>Hi<|endofuserprompt|><|response|>");
  BOOST_TEST(f.render({{"user", "Hi"}}, false) == "<|userprompt|>Hi<|endofuserprompt|>");
  // With a system message; no newlines between turns; no BOS.
  BOOST_TEST(f.render({{"system", "Be nice."}, {"user", "Hi"}}, true) ==
             "<|system|>Be nice.<|endofsystem|><|userprompt|>Hi<|endofuserprompt|><|response|>");
  // An empty system message is rendered, empty.
  BOOST_TEST(f.render({{"system", ""}, {"user", "Hi"}}, true) ==
             "<|system|><|endofsystem|><|userprompt|>Hi<|endofuserprompt|><|response|>");
  // Multi-turn.
  BOOST_TEST(f.render({{"system", "S"}, {"user", "u1"}, {"assistant", "a1"}, {"user", "u2"}}, true) ==
             "<|system|>S<|endofsystem|><|userprompt|>u1<|endofuserprompt|><|response|>a1<|endofresponse|>"
             "<|userprompt|>u2<|endofuserprompt|><|response|>");
  BOOST_TEST(f.render(std::vector<ChatMessage>{}, true) == "<|response|>");
  BOOST_TEST(error_of([&] { f.render({{"tool", "x"}}, false); }).find("role 'tool'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(default_system_prompt_is_optional) {
  ChatFormat f = ChatFormat::dots1();
  BOOST_TEST(!f.default_system_prompt().has_value());
  f.set_default_system_prompt("You are a helpful assistant.");
  BOOST_TEST(f.render({{"user", "Hi"}}, true) ==
             "<|system|>You are a helpful assistant.<|endofsystem|><|userprompt|>Hi<|endofuserprompt|><|response|>");
  // An explicit system message, even empty, replaces the default.
  BOOST_TEST(f.render({{"system", ""}, {"user", "Hi"}}, false) == "<|system|><|endofsystem|><|userprompt|>Hi<|endofuserprompt|>");
}

BOOST_AUTO_TEST_CASE(fixture_conversations_render_and_encode_like_hf) {
  // chat_cases.jsonl: conversations, the text the spec's format gives, and HF's ids of that text with
  // a vocabulary that has the chat markers as special tokens (tiny dots1_chat) and one that does not
  // (Qwen2: the markers are then ordinary text).
  const Tokenizer with_markers = Tokenizer::from_file(fixtures() / "tiny" / "dots1_chat.json");
  const Tokenizer& qwen2 = ::qwen2();
  const ChatFormat f = ChatFormat::dots1();
  const auto cases = read_jsonl(fixtures() / "chat_cases.jsonl");
  BOOST_TEST(cases.size() >= 8u);
  for (const auto& c : cases) {
    const auto msgs = messages_of(c["messages"]);
    const bool gen = c["add_generation_prompt"];
    BOOST_TEST(f.render(msgs, gen) == c["text"].get<std::string>());
    BOOST_TEST(f.encode(with_markers, msgs, gen) == ids_of(c["ids_dots1_chat"]));
    BOOST_TEST(f.encode(qwen2, msgs, gen) == ids_of(c["ids_qwen2"]));
  }
  // With the markers in the vocabulary each one is a single id.
  const auto ids = f.encode(with_markers, {{"user", "x"}}, true);
  BOOST_TEST(ids.front() == with_markers.token_to_id("<|userprompt|>").value());
  BOOST_TEST(ids.back() == with_markers.token_to_id("<|response|>").value());
}

BOOST_AUTO_TEST_CASE(stop_tokens) {
  const ChatFormat f = ChatFormat::dots1();
  BOOST_TEST(f.stop_tokens() == (std::vector<std::string>{"<|endofresponse|>", "<|endoftext|>"}));
  const Tokenizer with_markers = Tokenizer::from_file(fixtures() / "tiny" / "dots1_chat.json");
  const auto ids = f.stop_token_ids(with_markers);
  BOOST_TEST(ids == (std::vector<int32_t>{with_markers.token_to_id("<|endofresponse|>").value(),
                                          with_markers.token_to_id("<|endoftext|>").value()}));
  // Qwen2 has <|endoftext|> but no <|endofresponse|>; its tokenizer_config eos (<|im_end|>) is added.
  BOOST_TEST(f.stop_token_ids(qwen2()) == (std::vector<int32_t>{151643, 151645}));
}

BOOST_AUTO_TEST_CASE(template_detection) {
  BOOST_TEST((ChatFormat::from_template("{% for m in messages %}<|userprompt|>{{ m.content }}<|endofuserprompt|>{% endfor %}").kind() ==
              ChatFormat::Kind::Dots1));
  // The Qwen2 vocabulary ships a ChatML template: not built in, so a clear error.
  const std::string e = error_of([&] { ChatFormat::for_tokenizer(qwen2()); });
  BOOST_TEST(e.find("unsupported chat_template") != std::string::npos);
  BOOST_TEST(e.find("built-in chat formats: dots1") != std::string::npos);
  // Without a template (tokenizer.json alone), the dots.llm1 format is used.
  const Tokenizer bare = Tokenizer::from_file(qwen2_dir() / "tokenizer.json");
  BOOST_TEST(ChatFormat::for_tokenizer(bare).name() == "dots1");
}
