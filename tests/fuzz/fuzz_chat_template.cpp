// libFuzzer target: the chat-template interpreter on arbitrary template sources. The input is the template;
// it renders a fixed conversation (system, user, assistant with non-ASCII text; contents marked as message
// content) with the variables HF passes. Template() and render() must either succeed or throw TemplateError
// (every error, syntax, runtime or a resource limit, is one), within the fuzzer's time and memory limits
// (the interpreter's limits bound both). On success: the output is valid UTF-8, the content ranges are
// sorted, disjoint, non-empty and inside the text, and a second rendering gives the same result.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <dots1/tokenizer/jinja.hpp>

#include "fuzz_support.hpp"

namespace {

dots1::jinja::Dict variables() {
  dots1::jinja::Dict v;
  const auto messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Grüße! 你好 🌍 <|im_end|> {{ x }}"},
    {"role": "assistant", "content": "<think>\nok\n</think>\n\n  Hi  "},
    {"role": "user", "content": ""}])");
  v.set("messages", dots1::jinja::from_json(messages, /*taint=*/true));
  v.set("add_generation_prompt", dots1::jinja::Value::boolean(true));
  v.set("bos_token", dots1::jinja::Value::string("<s>"));
  v.set("eos_token", dots1::jinja::Value::string("</s>"));
  v.set("tools", dots1::jinja::Value::none());
  v.set("documents", dots1::jinja::Value::none());
  return v;
}

bool valid_utf8(std::string_view s) {
  try {
    dots1::tok::validate_utf8(s);
    return true;
  } catch (const dots1::TokenizerError&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dots1::jinja::Dict vars = variables();
  dots1::jinja::RenderOptions clock;
  clock.now = 1721995200;
  const std::string source(reinterpret_cast<const char*>(data), size);
  try {
    const dots1::jinja::Template t(source);
    const dots1::jinja::Rendered r = t.render(vars, clock);
    FUZZ_CHECK(valid_utf8(r.text), "rendered text is not UTF-8");
    size_t last = 0;
    for (const auto& s : r.tainted) {
      FUZZ_CHECK(s.begin >= last && s.begin < s.end && s.end <= r.text.size(), "content ranges out of order or out of the text");
      last = s.end;
    }
    const dots1::jinja::Rendered again = t.render(vars, clock);
    FUZZ_CHECK(again.text == r.text && again.tainted == r.tainted, "two renderings differ");
  } catch (const dots1::TemplateError&) {
  }
  return 0;
}
