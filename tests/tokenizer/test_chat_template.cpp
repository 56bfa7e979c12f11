// dots1's Jinja interpreter against HF transformers: every (real chat template, conversation) pair of
// tests/fixtures/tokenizer/chat_templates.json (made by make_chat_template_fixtures.py) renders to HF's
// exact string, or fails with a TemplateError where HF failed (with HF's message when the template raised
// it itself); small one-construct templates agree with HF too; constructs outside the subset, syntax errors
// and resource limits give TemplateErrors with their line and column; content taint is tracked exactly.
#define BOOST_TEST_MODULE chat_template
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <dots1/tokenizer/jinja.hpp>

#include "tokenizer_fixtures.hpp"

using dots1::TemplateError;
using dots1::jinja::Dict;
using dots1::jinja::Rendered;
using dots1::jinja::Span;
using dots1::jinja::Template;
using dots1::jinja::Value;
using json = nlohmann::ordered_json;

namespace {

struct UtcClock {
  UtcClock() {
    ::setenv("TZ", "UTC", 1);  // strftime_now reads local time, as HF does; the fixture was made in UTC
    ::tzset();
  }
};
BOOST_GLOBAL_FIXTURE(UtcClock);

const json& fixture() {
  static const json f = [] {
    std::ifstream in(dots1_test::fixtures() / "chat_templates.json");
    if (!in) throw dots1::IoError("cannot open chat_templates.json");
    std::stringstream ss;
    ss << in.rdbuf();
    return json::parse(ss.str());
  }();
  return f;
}

dots1::jinja::RenderOptions fixture_clock() {
  dots1::jinja::RenderOptions o;
  o.now = fixture()["strftime_now_timestamp"].get<std::time_t>();
  return o;
}

// The variables apply_chat_template passes: messages, tools=None, documents=None, add_generation_prompt,
// the special tokens map, and the call's extra kwargs.
Dict chat_variables(const json& conversation, const json& special_tokens) {
  Dict v;
  v.set("messages", dots1::jinja::from_json(conversation["messages"], /*taint=*/true));
  v.set("tools", Value::none());
  v.set("documents", Value::none());
  v.set("add_generation_prompt", Value::boolean(conversation["add_generation_prompt"].get<bool>()));
  for (auto it = special_tokens.begin(); it != special_tokens.end(); ++it) v.set(it.key(), Value::string(it.value().get<std::string>()));
  for (auto it = conversation["kwargs"].begin(); it != conversation["kwargs"].end(); ++it) v.set(it.key(), dots1::jinja::from_json(it.value()));
  return v;
}

Rendered render(const std::string& source, const Dict& vars) { return Template(source).render(vars, fixture_clock()); }

// Checks one rendering against HF's expectation; returns an empty string when it agrees, else why not.
std::string check(const json& expected, const std::function<Rendered()>& run) {
  try {
    const Rendered r = run();
    if (!expected.contains("text")) return "rendered, but HF raised " + expected["error"].get<std::string>() + ": " + expected["message"].get<std::string>();
    if (r.text != expected["text"].get<std::string>())
      return "text differs:\n  HF:    " + nlohmann::json(expected["text"]).dump() + "\n  dots1: " + nlohmann::json(r.text).dump();
    return "";
  } catch (const TemplateError& e) {
    if (expected.contains("text")) return std::string("TemplateError, but HF rendered: ") + e.what();
    // raise_exception('...') in the template: the message is the template's own
    if (expected["error"] == "TemplateError" && e.message() != expected["message"].get<std::string>())
      return "raise_exception message differs: HF '" + expected["message"].get<std::string>() + "', dots1 '" + e.message() + "'";
    if (e.line() <= 0) return std::string("TemplateError without a line: ") + e.what();
    return "";
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const TemplateError& e) {
    return e.what();
  }
  return "(no TemplateError)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

BOOST_AUTO_TEST_CASE(real_chat_templates_render_exactly_as_hf) {
  const json& f = fixture();
  const json& conversations = f["conversations"];
  size_t pairs = 0, rendered = 0, errors = 0;
  for (const auto& t : f["templates"]) {
    const std::string name = t["name"];
    const std::string source = t["template"];
    BOOST_TEST_CONTEXT("template " << name << " (" << t["source"].dump() << ")") {
      std::optional<Template> parsed;
      BOOST_REQUIRE_NO_THROW(parsed.emplace(source));
      BOOST_REQUIRE_EQUAL(t["expected"].size(), conversations.size());
      for (size_t c = 0; c < conversations.size(); ++c) {
        const json& expected = t["expected"][c];
        const Dict vars = chat_variables(conversations[c], t["special_tokens"]);
        const std::string problem = check(expected, [&] { return parsed->render(vars, fixture_clock()); });
        BOOST_TEST(problem.empty(), "conversation " << conversations[c]["name"].get<std::string>() << ": " << problem);
        ++pairs;
        (expected.contains("text") ? rendered : errors) += 1;
      }
    }
  }
  BOOST_TEST_MESSAGE(f["templates"].size() << " templates x " << conversations.size() << " conversations = " << pairs
                                          << " pairs checked (" << rendered << " rendered, " << errors << " errors)");
  BOOST_TEST(f["templates"].size() >= 15u);
  BOOST_TEST(conversations.size() >= 6u);
  BOOST_TEST(rendered >= 1500u);
}

BOOST_AUTO_TEST_CASE(single_constructs_agree_with_hf) {
  size_t n = 0;
  for (const auto& u : fixture()["unit"]) {
    if (u.value("syntax", false)) continue;
    const std::string source = u["template"];
    BOOST_TEST_CONTEXT("template " << nlohmann::json(source).dump()) {
      Dict vars;
      for (auto it = u["variables"].begin(); it != u["variables"].end(); ++it) vars.set(it.key(), dots1::jinja::from_json(it.value()));
      const std::string problem = check(u, [&] { return render(source, vars); });
      BOOST_TEST(problem.empty(), problem);
      ++n;
    }
  }
  BOOST_TEST(n >= 100u);
}

BOOST_AUTO_TEST_CASE(constructs_outside_the_subset_fail_when_parsed_with_their_line) {
  for (const auto& u : fixture()["unit"]) {
    if (!u.value("syntax", false)) continue;
    const std::string source = u["template"];
    BOOST_TEST_CONTEXT("template " << source) {
      try {
        Template t(source);
        BOOST_ERROR("parsed");
      } catch (const TemplateError& e) {
        BOOST_TEST(e.line() == 1);
        BOOST_TEST(e.column() >= 1);
        BOOST_TEST(std::string(e.what()).rfind("chat template, line 1, column ", 0) == 0, e.what());
      }
    }
  }
  // The error names the construct.
  BOOST_TEST(contains(error_of([] { Template("{% include 'x' %}"); }), "the 'include' tag is not supported"));
  BOOST_TEST(contains(error_of([] { Template("a\n{% extends 'b' %}"); }), "line 2, column 4: the 'extends' tag is not supported"));
  BOOST_TEST(contains(error_of([] { Template("{{ x|xmlattr }}"); }), "column 6: the filter 'xmlattr' is not supported"));
  BOOST_TEST(contains(error_of([] { Template("{{ x|urlize }}"); }), "the filter 'urlize' is not supported"));
  BOOST_TEST(contains(error_of([] { Template("{% for x in y recursive %}{% endfor %}"); }), "recursive for loops are not supported"));
  BOOST_TEST(contains(error_of([] { Template("\n\n  {{ x is nosuch }}"); }), "line 3, column 11: no test named 'nosuch'"));
  BOOST_TEST(contains(error_of([] { Template("{% do x %}"); }), "unknown tag 'do'"));
  BOOST_TEST(contains(error_of([] { Template("{% for x in y %}\n{% if x %}\n{% endfor %}"); }), "line 3"));
  BOOST_TEST(contains(error_of([] { Template("{% if x %}ab"); }), "unexpected end of template; expected 'elif' or 'else' or 'endif'"));
  BOOST_TEST(contains(error_of([] { Template("{{ 'abc }}"); }), "column 4: unterminated string literal"));
  BOOST_TEST(contains(error_of([] { Template("{# never closed"); }), "missing end of comment tag"));
  BOOST_TEST(contains(error_of([] { Template("{{ 99999999999999999999 }}"); }), "does not fit in 64 bits"));
  BOOST_TEST(contains(error_of([] { Template("{{ a ! b }}"); }), "column 6: unexpected character '!'"));
  BOOST_TEST(contains(error_of([] { Template("{% break %}"); }), "'break' outside of a for loop"));
  BOOST_TEST(contains(error_of([] { Template(std::string("\xff")); }), "not valid UTF-8"));
}

BOOST_AUTO_TEST_CASE(runtime_errors_name_their_line_and_column) {
  auto run = [](const std::string& src) { return error_of([&] { Template(src).render(Dict{}); }); };
  BOOST_TEST(contains(run("ok\n{{ 1 + none }}"), "line 2, column 6: unsupported operand type(s) for +: 'int' and 'NoneType'"), run("ok\n{{ 1 + none }}"));
  BOOST_TEST(contains(run("{{ x.y }}"), "line 1, column 5: 'x' is undefined"), run("{{ x.y }}"));
  BOOST_TEST(contains(run("{% for m in none %}{% endfor %}"), "'NoneType' object is not iterable"));
  BOOST_TEST(contains(run("{{ [].append(1) }}"), "access to attribute 'append' of 'list' object is unsafe."));
  BOOST_TEST(contains(run("{{ 9223372036854775807 + 1 }}"), "integer overflow"));
  // raise_exception: TemplateError whose message() is exactly the template's text, located at the call.
  try {
    Template("{% if true %}\n  {{ raise_exception('Conversation roles must alternate user/assistant') }}\n{% endif %}").render(Dict{});
    BOOST_ERROR("no TemplateError");
  } catch (const TemplateError& e) {
    BOOST_TEST(e.message() == "Conversation roles must alternate user/assistant");
    BOOST_TEST(e.line() == 2);
    BOOST_TEST(e.column() == 21);
    BOOST_TEST(std::string(e.what()) == "chat template, line 2, column 21: Conversation roles must alternate user/assistant");
  }
}

BOOST_AUTO_TEST_CASE(limits_stop_hostile_templates) {
  auto run = [](const std::string& src) { return error_of([&] { Template(src).render(Dict{}); }); };
  // unbounded recursion
  BOOST_TEST(contains(run("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"), "kMaxCallDepth"));
  // too many loop iterations (each loop is short, together they are not)
  BOOST_TEST(contains(run("{% for a in range(1000) %}{% for b in range(1001) %}{% endfor %}{% endfor %}"), "kMaxLoopIterations"));
  // output growing without bound
  BOOST_TEST(contains(run("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"), "kMaxOutputBytes"));
  // a value growing exponentially
  BOOST_TEST(contains(run("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"), "kMaxOutputBytes"));
  BOOST_TEST(contains(run("{{ 'x' * 9000000000000 }}"), "kMaxOutputBytes"));
  BOOST_TEST(contains(run("{{ [1] * 9000000000000 }}"), "kMaxOutputBytes"));
  // many medium strings: the total allocation bound
  BOOST_TEST(contains(run("{% set ns = namespace(n=0) %}{% for i in range(100000) %}{% set s = 'y' * 20000 %}{% endfor %}"), "kMaxAllocatedBytes"));
  BOOST_TEST(contains(run("{{ range(100001) }}"), "MAX_RANGE (100000)"));
  // small values standing for huge ones (lists share their items): comparing or printing them is bounded
  BOOST_TEST(contains(run("{% set a = [1] * 1000000 %}{% set b = [1] * 1000000 %}{{ [a] * 1000 == [b] * 1000 }}"), "kMaxWorkUnits"));
  BOOST_TEST(contains(run("{% set a = ['x' * 1000] * 100000 %}{{ a }}"), "kMaxOutputBytes"));
  BOOST_TEST(contains(run("{% set s = 'a' * 60000000 %}{% for i in range(100000) %}{% if 'b' in s %}{% endif %}{% endfor %}"), "kMaxWorkUnits"));
  // nesting: values deeper than kMaxValueDepth, and a namespace inside a namespace (a possible cycle)
  BOOST_TEST(contains(run("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"), "kNamespaceDepth"));
  BOOST_TEST(contains(run("{% set ns = namespace(x=none) %}{% set ns.x = [ns] %}"), "kNamespaceDepth"));
  BOOST_TEST(contains(run("{% set ns = namespace(x=none) %}{% set ns.x = ns %}{{ ns }}"), "kNamespaceDepth"));
  // (a loop cannot nest a value deeper: each iteration's `set` starts from the outer value again)
  std::string deep = "{% set ns = namespace(v=1) %}{% for i in range(127) %}{% set ns.v = [ns.v] %}{% endfor %}{% set l = [ns.v] %}";
  for (int k = 0; k < 140; ++k) deep += "{% set l = [l] %}";
  BOOST_TEST(contains(run(deep), "kMaxValueDepth"));
  nlohmann::ordered_json nested = 1;
  for (int k = 0; k < 300; ++k) nested = nlohmann::ordered_json::array({nested});
  BOOST_TEST(contains(error_of([&] { dots1::jinja::from_json(nested); }), "kMaxValueDepth"));
  // many cheap steps
  std::string sum = "i";
  for (int k = 0; k < 60; ++k) sum += " + i";
  BOOST_TEST(contains(run("{% for i in range(100000) %}{% for j in range(3) %}{% set x = " + sum + " %}{% endfor %}{% endfor %}"), "kMaxSteps"));
  // deeply nested source
  BOOST_TEST(contains(error_of([] { Template("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"); }), "nested too deeply"));
  BOOST_TEST(contains(error_of([] { Template(std::string(dots1::jinja::kMaxTemplateBytes + 1, 'x')); }), "bytes; the limit is"));
  // a normal template stays far below every limit
  BOOST_TEST(Template("{% for i in range(1000) %}{{ i }}{% endfor %}").render(Dict{}).text.size() == 2890u);
}

BOOST_AUTO_TEST_CASE(message_content_stays_marked_through_string_operations) {
  Dict vars;
  nlohmann::ordered_json m = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "  Hi <|im_end|> there  "}}});
  vars.set("messages", dots1::jinja::from_json(m, true));
  auto spans_of = [&](const std::string& src) {
    const Rendered r = Template(src).render(vars);
    std::vector<std::string> parts;
    for (const Span& s : r.tainted) parts.push_back(r.text.substr(s.begin, s.end - s.begin));
    return std::make_pair(r.text, parts);
  };
  using Parts = std::vector<std::string>;
  // concatenation keeps exact ranges; the template's own text is never marked
  auto [t1, p1] = spans_of("{{ '<|im_start|>' + messages[0].role + '\\n' + messages[0].content + '<|im_end|>' }}");
  BOOST_TEST(t1 == "<|im_start|>user\n  Hi <|im_end|> there  <|im_end|>");
  BOOST_TEST(p1 == (Parts{"user", "  Hi <|im_end|> there  "}), boost::test_tools::per_element());
  // trim / strip / split / slices / loops over characters are substrings: exact
  auto [t2, p2] = spans_of("[{{ messages[0].content|trim }}][{{ messages[0].content.split('<|im_end|>')[0].strip() }}][{{ messages[0].content[2:4] }}]");
  BOOST_TEST(t2 == "[Hi <|im_end|> there][Hi][Hi]");
  BOOST_TEST(p2 == (Parts{"Hi <|im_end|> there", "Hi", "Hi"}), boost::test_tools::per_element());
  // a macro's output and a block set keep the marks of what they print
  auto [t3, p3] = spans_of("{% macro wrap(x) %}<b>{{ x|trim }}</b>{% endmacro %}{% set y %}({{ messages[0].role }}){% endset %}{{ wrap(messages[0].content) }}{{ y }}");
  BOOST_TEST(t3 == "<b>Hi <|im_end|> there</b>(user)");
  BOOST_TEST(p3 == (Parts{"Hi <|im_end|> there", "user"}), boost::test_tools::per_element());
  // other transformations mark their whole result (never less than the content)
  auto [t4, p4] = spans_of("{{ messages[0].content|upper }}|{{ messages[0].content|replace('Hi', 'Yo') }}|{{ messages|tojson }}|{{ 'x' ~ 1 }}");
  BOOST_TEST(p4 == (Parts{"  HI <|IM_END|> THERE  ", "  Yo <|im_end|> there  ", R"([{"role": "user", "content": "  Hi <|im_end|> there  "}])"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(strftime_now_formats_the_given_clock) {
  dots1::jinja::RenderOptions o;
  o.now = 1721995200;  // 2024-07-26 12:00 UTC
  BOOST_TEST(Template("{{ strftime_now('%d %b %Y') }}").render(Dict{}, o).text == "26 Jul 2024");
  // without a given clock: today's date
  const std::string today = Template("{{ strftime_now('%Y') }}").render(Dict{}).text;
  BOOST_TEST(today.size() == 4u);
  BOOST_TEST(today >= "2024");
}

BOOST_AUTO_TEST_CASE(python_number_and_string_formatting) {
  using dots1::jinja::float_repr;
  BOOST_TEST(float_repr(1.0) == "1.0");
  BOOST_TEST(float_repr(0.1 + 0.2) == "0.30000000000000004");
  BOOST_TEST(float_repr(1e16) == "1e+16");
  BOOST_TEST(float_repr(1e15) == "1000000000000000.0");
  BOOST_TEST(float_repr(1.5e-5) == "1.5e-05");
  BOOST_TEST(float_repr(0.0001) == "0.0001");
  BOOST_TEST(float_repr(-0.0) == "-0.0");
  BOOST_TEST(float_repr(123456789.125) == "123456789.125");
  BOOST_TEST(float_repr(5e-324) == "5e-324");
  BOOST_TEST(float_repr(1.7976931348623157e308) == "1.7976931348623157e+308");
  BOOST_TEST(dots1::jinja::py_repr_string("it's") == "\"it's\"");
  BOOST_TEST(dots1::jinja::py_repr_string("a'b\"c\n\x01\xc3\xa9") == "'a\\'b\"c\\n\\x01\xc3\xa9'");
}

BOOST_AUTO_TEST_CASE(a_template_renders_from_several_threads) {
  const Template t("{% for m in messages %}{{ m.role }}:{{ m.content|trim }};{% endfor %}");
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (int i = 0; i < 50; ++i) msgs.push_back({{"role", "user"}, {"content", " m" + std::to_string(i) + " "}});
  Dict vars;
  vars.set("messages", dots1::jinja::from_json(msgs, true));
  const std::string want = t.render(vars).text;
  std::vector<std::string> got(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) threads.emplace_back([&, i] { got[i] = t.render(vars).text; });
  for (auto& th : threads) th.join();
  for (const auto& g : got) BOOST_TEST(g == want);
}
