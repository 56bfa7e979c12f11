// dots1/tokenizer/jinja.hpp — dots1's own Jinja interpreter for chat templates (no dependency: Debian has
// no C++ Jinja package).
//
//   dots1::jinja::Template t(checkpoint_chat_template);       // parses; TemplateError on bad syntax
//   dots1::jinja::Dict vars;
//   vars.set("messages", dots1::jinja::from_json(messages_json, /*taint=*/true));
//   vars.set("add_generation_prompt", dots1::jinja::Value::boolean(true));
//   dots1::jinja::Rendered r = t.render(vars);               // r.text; r.tainted: bytes from the messages
//
// It renders what HF's apply_chat_template renders (the same Jinja environment: trim_blocks, lstrip_blocks,
// loopcontrols, HF's tojson / raise_exception / strftime_now), for the subset of Jinja chat templates use:
// see lexer/parser (parser.hpp), evaluation and limits (interpreter.hpp), filters, tests and methods
// (builtins.hpp). Anything outside the subset is a TemplateError naming the construct and its line.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/tokenizer/jinja/interpreter.hpp"
#include "dots1/tokenizer/jinja/parser.hpp"
#include "dots1/tokenizer/jinja/value.hpp"

namespace dots1::jinja {

/// A parsed template; render() may be called any number of times, from several threads at once.
class Template {
 public:
  explicit Template(std::string source) : program_(std::make_shared<const Program>(parse_template(std::move(source)))) {}

  Rendered render(const Dict& variables, const RenderOptions& options = {}) const {
    Interpreter in(*program_, options);
    return in.render(variables);
  }

 private:
  std::shared_ptr<const Program> program_;
};

/// A JSON value as a template value (objects keep their key order with nlohmann::ordered_json). With
/// `taint`, every string is marked as message content (see ChatFormat).
template <class Json>
Value from_json(const Json& j, bool taint = false) {
  switch (j.type()) {
    case Json::value_t::null: return Value::none();
    case Json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case Json::value_t::number_integer: return Value::integer(j.template get<int64_t>());
    case Json::value_t::number_unsigned: {
      const auto u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) throw TemplateError("integer " + std::to_string(u) + " does not fit in 64 bits");
      return Value::integer(static_cast<int64_t>(u));
    }
    case Json::value_t::number_float: return Value::floating(j.template get<double>());
    case Json::value_t::string: {
      std::string s = j.template get<std::string>();
      tok::validate_utf8(s, "template variable");
      return taint ? Value::tainted_string(std::move(s)) : Value::string(std::move(s));
    }
    case Json::value_t::array: {
      std::vector<Value> items;
      for (const auto& x : j) items.push_back(from_json(x, taint));
      return Value::list(std::move(items));
    }
    case Json::value_t::object: {
      auto d = make_dict();
      for (auto it = j.begin(); it != j.end(); ++it) d->set(it.key(), from_json(it.value(), taint));
      return Value::dict(d);
    }
    default: throw TemplateError("unsupported JSON value in template variables");
  }
}

}  // namespace dots1::jinja
