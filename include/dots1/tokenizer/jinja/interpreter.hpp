// dots1/tokenizer/jinja/interpreter.hpp — renders a parsed template the way HF's Jinja environment does.
//
// Scoping follows Jinja: {% set %} writes to the current scope; every iteration of a for loop runs in a
// fresh scope over the enclosing one (so a set inside a loop is gone in the next iteration and after the
// loop: use namespace() to carry values out); if blocks open no scope; macros see the scope they were
// defined in (at call time, not their caller's), with their parameters, `varargs`, `kwargs` and `caller`.
// Attribute and item access follow the sandbox: obj.attr tries the attribute (dict.items, str.strip, ...)
// then the item, obj[key] the item then the attribute; a missing one is undefined, and using an undefined
// value where a value is needed (arithmetic, iteration of its attributes, calling it) is an error, as with
// Jinja's default Undefined. Mutating methods (list.append, dict.update, ...) are refused, as HF's
// ImmutableSandboxedEnvironment refuses them.
//
// Limits (named constants below) bound what any template can cost: output size, total bytes of values
// created, loop iterations, macro recursion and evaluation depth.
#pragma once

#include <cmath>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "dots1/error.hpp"
#include "dots1/tokenizer/jinja/parser.hpp"
#include "dots1/tokenizer/jinja/value.hpp"

namespace dots1::jinja {

// kMaxOutputBytes (64 MiB: a rendering, any one string or list) and kMaxWorkUnits (deep operations) are in
// value.hpp.
/// All strings and lists one rendering creates, together: 256 MiB (bounds its memory and, with kMaxSteps
/// and kMaxWorkUnits, its time; a long real conversation needs a few MiB).
inline constexpr size_t kMaxAllocatedBytes = 256u << 20;
/// For-loop iterations of one rendering, all loops together.
inline constexpr int64_t kMaxLoopIterations = 1'000'000;
/// Macros calling macros (recursion included).
inline constexpr int kMaxCallDepth = 64;
/// Nesting of evaluation (expressions inside statements inside macros); bounds the C++ stack.
inline constexpr int kMaxEvalDepth = 2000;
/// Statements and expressions evaluated in one rendering (a long real conversation needs a few million).
inline constexpr int64_t kMaxSteps = 20'000'000;
/// The longest range(): HF's sandbox allows 100000 items (MAX_RANGE).
inline constexpr int64_t kMaxRange = 100'000;

/// What a rendering may read besides its variables.
struct RenderOptions {
  /// Current time for strftime_now() (seconds since the epoch, formatted in local time); unset: the clock.
  std::optional<std::time_t> now;
};

/// A rendered text and the byte ranges of it that came from tainted (message) strings.
struct Rendered {
  std::string text;
  std::vector<Span> tainted;
};

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
  const Value* find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using ScopePtr = std::shared_ptr<Scope>;

/// Output being built: text plus tainted ranges.
struct Out {
  std::string text;
  std::vector<Span> tainted;
};

class Interpreter {
 public:
  Interpreter(const Program& program, RenderOptions options) : program_(program), options_(std::move(options)) {}

  /// Renders with `variables` (messages, add_generation_prompt, bos_token, ...) over the builtin globals.
  Rendered render(const Dict& variables) {
    auto globals = std::make_shared<Scope>();
    install_globals(*globals);
    auto context = std::make_shared<Scope>();
    context->parent = globals;
    for (const auto& [k, v] : variables.items())
      if (k.is_string()) context->vars[k.str()] = v;
    auto root = std::make_shared<Scope>();
    root->parent = context;
    WorkBudget budget;
    struct BudgetScope {
      WorkBudget* saved;
      explicit BudgetScope(WorkBudget* b) : saved(tl_work_budget) { tl_work_budget = b; }
      ~BudgetScope() { tl_work_budget = saved; }
    } budget_scope(&budget);
    struct Unpin {
      std::vector<ScopePtr>& p;
      ~Unpin() { p.clear(); }
    } unpin{pinned_};
    Out out;
    exec_body(program_.body, root, out);
    return Rendered{std::move(out.text), std::move(out.tainted)};
  }

  // ---- used by the builtins
  [[noreturn]] static void fail(const std::string& msg) { throw TemplateError(msg); }

  /// Counts `bytes` against kMaxAllocatedBytes.
  void account(size_t bytes) {
    allocated_ += bytes;
    if (allocated_ > kMaxAllocatedBytes)
      fail("the template built more than " + std::to_string(kMaxAllocatedBytes >> 20) +
           " MiB of values in one rendering (limit kMaxAllocatedBytes)");
  }
  static void check_size(size_t bytes, const char* what) {
    if (bytes > kMaxOutputBytes)
      fail(std::string(what) + " would be " + std::to_string(bytes) + " bytes; the limit is " +
           std::to_string(kMaxOutputBytes >> 20) + " MiB (kMaxOutputBytes)");
  }
  Value make_str(std::string text, std::vector<Span> tainted = {}) {
    check_size(text.size(), "a string");
    account(text.size() + sizeof(Str));
    return Value::string(std::make_shared<const Str>(Str{std::move(text), std::move(tainted)}));
  }
  /// markupsafe.Markup of a string value (the same text, marked safe).
  Value make_markup(const Value& s) {
    if (s.str_ptr()->markup) return s;
    Str m = *s.str_ptr();
    m.markup = true;
    account(m.text.size() + sizeof(Str));
    return Value::string(std::make_shared<const Str>(std::move(m)));
  }
  /// markupsafe.escape: a Markup as it is, anything else HTML-escaped into a Markup.
  Value escape(const Value& v) {
    const Value s = to_str_value(v);
    if (s.str_ptr()->markup) return s;
    return make_markup(derived_str(html_escape(s.str()), s.str_ptr()->is_tainted()));
  }
  /// A string computed from inputs: wholly tainted when any input was.
  Value derived_str(std::string text, bool tainted) {
    std::vector<Span> t;
    if (tainted && !text.empty()) t.push_back({0, text.size()});
    return make_str(std::move(text), std::move(t));
  }
  Value make_list(std::vector<Value> items, bool tuple = false) {
    check_size(items.size() * sizeof(Value), "a list");
    account(items.size() * sizeof(Value) + sizeof(List));
    return Value::list(std::move(items), tuple);
  }
  /// A one-pass iterator over `items` (what Jinja's generator filters return).
  Value make_iterator(std::vector<Value> items) {
    Value v = make_list(std::move(items));
    v.list_ptr()->iterator = true;
    return v;
  }
  /// s[pos, pos + len) in bytes, with exact taint.
  Value substr(const Value& s, size_t pos, size_t len) {
    const Str& x = *s.str_ptr();
    if (pos == 0 && len >= x.text.size()) return s;
    return make_str(x.text.substr(pos, len), clip_spans(x.tainted, pos, len));
  }
  /// a + b with exact taint.
  Value concat(const Value& a, const Value& b) {
    const Str &x = *a.str_ptr(), &y = *b.str_ptr();
    if (y.text.empty()) return a;
    if (x.text.empty()) return b;
    check_size(x.text.size() + y.text.size(), "a string");
    std::vector<Span> t = x.tainted;
    append_spans(t, y.tainted, x.text.size());
    return make_str(x.text + y.text, std::move(t));
  }
  /// str(v) as a string value (strings as they are; other values tainted when they hold tainted strings).
  Value to_str_value(const Value& v) {
    if (v.is_string()) return v;
    return derived_str(to_display(v), contains_taint(v));
  }

  /// The items a for loop or list() sees: list items, dict keys, string characters; undefined is empty.
  std::vector<Value> iterate(const Value& v) {
    switch (v.type()) {
      case Value::Type::list:
        account(v.items().size() * sizeof(Value));
        if (v.is_iterator()) {  // produces what is left, once
          List& l = *v.list_ptr();
          std::vector<Value> rest(l.items.begin() + static_cast<std::ptrdiff_t>(l.consumed), l.items.end());
          l.consumed = l.items.size();
          return rest;
        }
        return v.items();
      case Value::Type::dict: {
        account(v.dict_ptr()->size() * sizeof(Value));
        std::vector<Value> keys;
        for (const auto& [k, x] : v.dict_ptr()->items()) keys.push_back(k);
        return keys;
      }
      case Value::Type::string: {
        std::vector<Value> chars;
        const std::string& s = v.str();
        size_t i = 0;
        while (i < s.size()) {
          const size_t start = i;
          i += static_cast<size_t>(tok::utf8_len(static_cast<unsigned char>(s[i])));
          chars.push_back(substr(v, start, i - start));
        }
        account(chars.size() * sizeof(Value));
        return chars;
      }
      case Value::Type::undefined:
        if (v.undefined_is_unsafe()) fail(v.undefined_hint());
        return {};
      default: fail("'" + v.type_name() + "' object is not iterable");
    }
  }

  /// Calls a callable value.
  Value call(const Value& callee, CallArgs& args) {
    if (callee.is_function()) return callee.fn().call(*this, args);
    if (callee.is_undefined()) fail(callee.undefined_hint());
    fail("'" + callee.type_name() + "' object is not callable");
  }

  /// obj.name with the sandbox's rules (attribute first, then item).
  Value getattr(const Value& obj, const std::string& name);
  /// obj[key] with the sandbox's rules (item first, then attribute for string keys).
  Value getitem(const Value& obj, const Value& key);
  /// Only the attribute (the `attr` filter): dict keys are not attributes.
  Value attribute_only(const Value& obj, const std::string& name);

  Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
  bool apply_test(const std::string& name, const Value& input, CallArgs& args);

 private:
  enum class Flow { normal, break_, continue_ };

  struct DepthGuard {
    int& d;
    DepthGuard(int& depth, int limit, const char* what) : d(depth) {
      if (++d > limit) {
        --d;
        fail(std::string(what));
      }
    }
    ~DepthGuard() { --d; }
  };

  static TemplateError locate(const TemplateError& e, const Node& n) {
    if (e.line() > 0) return e;
    return TemplateError(e.message(), n.line, n.column);
  }

  // ---- output
  void emit(Out& out, const Value& v) {
    if (v.is_string()) {
      const Str& s = *v.str_ptr();
      emit_text(out, s.text, &s.tainted);
    } else if (v.is_undefined()) {
      // prints as "" (also an unsafe attribute, as in the sandbox; calling it is the error)
    } else {
      const std::string text = to_display(v);
      std::vector<Span> t;
      if (contains_taint(v) && !text.empty()) t.push_back({0, text.size()});
      emit_text(out, text, &t);
    }
  }
  void emit_text(Out& out, const std::string& text, const std::vector<Span>* tainted) {
    if (text.empty()) return;
    check_size(out.text.size() + text.size(), "the rendered text");
    account(text.size());
    if (tainted) append_spans(out.tainted, *tainted, out.text.size());
    out.text += text;
  }

  // ---- statements
  Flow exec_body(const Body& body, const ScopePtr& scope, Out& out) {
    for (const auto& s : body) {
      const Flow f = exec(*s, scope, out);
      if (f != Flow::normal) return f;
    }
    return Flow::normal;
  }

  void count_step() {
    if (++steps_ > kMaxSteps)
      fail("the template evaluated more than " + std::to_string(kMaxSteps) + " statements and expressions (limit kMaxSteps)");
  }

  Flow exec(const Stmt& s, const ScopePtr& scope, Out& out) {
    count_step();
    DepthGuard g(eval_depth_, kMaxEvalDepth, "the template nests too deeply while rendering (limit kMaxEvalDepth)");
    try {
      return exec_inner(s, scope, out);
    } catch (const TemplateError& e) {
      throw locate(e, s);
    }
  }

  Flow exec_inner(const Stmt& s, const ScopePtr& scope, Out& out) {
    switch (s.kind) {
      case Stmt::Kind::data: emit_text(out, s.text, nullptr); return Flow::normal;
      case Stmt::Kind::output: emit(out, eval(*s.expr, scope)); return Flow::normal;
      case Stmt::Kind::body: return exec_body(s.body, scope, out);
      case Stmt::Kind::if_:
        for (const auto& [test, body] : s.branches)
          if (truthy(eval(*test, scope))) return exec_body(body, scope, out);
        return exec_body(s.else_body, scope, out);
      case Stmt::Kind::for_: return exec_for(s, scope, out);
      case Stmt::Kind::break_: return Flow::break_;
      case Stmt::Kind::continue_: return Flow::continue_;
      case Stmt::Kind::set: {
        Value v = eval(*s.expr, scope);
        assign(s.target, std::move(v), *scope);
        return Flow::normal;
      }
      case Stmt::Kind::set_block: {
        Out body;
        exec_body(s.body, scope, body);
        Value v = make_str(std::move(body.text), std::move(body.tainted));
        if (s.filter) v = eval_filter_chain(*s.filter, v, scope);
        assign(s.target, std::move(v), *scope);
        return Flow::normal;
      }
      case Stmt::Kind::filter_block: {
        Out body;
        exec_body(s.body, scope, body);
        emit(out, eval_filter_chain(*s.filter, make_str(std::move(body.text), std::move(body.tainted)), scope));
        return Flow::normal;
      }
      case Stmt::Kind::macro: {
        scope->vars[s.name] = make_macro(s, scope, s.name);
        return Flow::normal;
      }
      case Stmt::Kind::call_block: {
        const Expr& call_expr = *s.expr;
        Value callee = eval(*call_expr.children[0], scope);
        CallArgs args = eval_args(call_expr, scope);
        args.keyword.emplace_back("caller", make_macro(s, scope, "caller"));
        emit(out, call(callee, args));
        return Flow::normal;
      }
      case Stmt::Kind::with: {
        auto inner = std::make_shared<Scope>();
        inner->parent = scope;
        for (const auto& [target, value] : s.assignments) assign(target, eval(*value, scope), *inner);
        return exec_body(s.body, inner, out);
      }
    }
    return Flow::normal;
  }

  void assign(const Target& t, Value v, Scope& scope) {
    if (!t.attr.empty()) {
      const Value* ns = scope.find(t.name);
      if (!ns || !ns->is_namespace()) fail("cannot assign attribute on non-namespace object ('" + t.name + "')");
      if (!t.attr.empty() && t.attr[0] == '_') fail("cannot store underscore-prefixed attributes on a namespace ('" + t.attr + "')");
      check_namespace_value(v);
      ns->ns_ptr()->attrs.set(t.attr, std::move(v));
      return;
    }
    if (!t.is_tuple) {
      scope.vars[t.name] = std::move(v);
      return;
    }
    std::vector<Value> items = iterate(v);
    if (items.size() != t.items.size()) {
      if (items.size() > t.items.size()) fail("too many values to unpack (expected " + std::to_string(t.items.size()) + ")");
      fail("not enough values to unpack (expected " + std::to_string(t.items.size()) + ", got " + std::to_string(items.size()) + ")");
    }
    for (size_t i = 0; i < items.size(); ++i) assign(t.items[i], std::move(items[i]), scope);
  }

  Flow exec_for(const Stmt& s, const ScopePtr& scope, Out& out) {
    const Value iterable = eval(*s.expr, scope);
    std::vector<Value> items = iterate(iterable);
    if (s.loop_filter) {  // `for x in xs if cond`: filtered before the loop (loop.length counts the kept ones)
      std::vector<Value> kept;
      for (auto& item : items) {
        count_iteration();
        auto probe = std::make_shared<Scope>();
        probe->parent = scope;
        assign(s.target, item, *probe);
        if (truthy(eval(*s.loop_filter, probe))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      auto inner = std::make_shared<Scope>();
      inner->parent = scope;
      exec_body(s.else_body, inner, out);
      return Flow::normal;
    }
    // One `loop` object for the whole loop, updated in place each iteration (as Jinja's LoopContext).
    auto state = std::make_shared<LoopState>();
    const Value loop = loop_object(state);
    Dict& d = *loop.dict_ptr();
    const int64_t n = static_cast<int64_t>(items.size());
    d.set("length", Value::integer(n));
    const Value no_prev = Value::undefined("there is no previous item"), no_next = Value::undefined("there is no next item");
    enum { index, index0, revindex, revindex0, first, last, previtem, nextitem, fields };
    static const char* const names[fields] = {"index", "index0", "revindex", "revindex0", "first", "last", "previtem", "nextitem"};
    Value* field[fields];
    for (int k = 0; k < fields; ++k) d.set(names[k], Value());
    for (int k = 0; k < fields; ++k) field[k] = &d.value_at(d.slot(names[k]));
    for (int64_t i = 0; i < n; ++i) {
      count_iteration();
      state->index = i;
      *field[index] = Value::integer(i + 1);
      *field[index0] = Value::integer(i);
      *field[revindex] = Value::integer(n - i);
      *field[revindex0] = Value::integer(n - i - 1);
      *field[first] = Value::boolean(i == 0);
      *field[last] = Value::boolean(i == n - 1);
      *field[previtem] = i > 0 ? items[static_cast<size_t>(i - 1)] : no_prev;
      *field[nextitem] = i + 1 < n ? items[static_cast<size_t>(i + 1)] : no_next;
      auto inner = std::make_shared<Scope>();
      inner->parent = scope;
      assign(s.target, items[static_cast<size_t>(i)], *inner);
      inner->vars.emplace("loop", loop);
      const Flow f = exec_body(s.body, inner, out);
      if (f == Flow::break_) break;
    }
    return Flow::normal;
  }

  /// What a namespace may hold (see kNamespaceDepth).
  static void check_namespace_value(const Value& v) {
    if (depth_of(v) >= kNamespaceDepth)
      fail("a namespace cannot hold a namespace or a value nested " + std::to_string(kNamespaceDepth) + " levels deep (kNamespaceDepth)");
  }

  void count_iteration() {
    if (++iterations_ > kMaxLoopIterations)
      fail("the template ran more than " + std::to_string(kMaxLoopIterations) + " loop iterations (limit kMaxLoopIterations)");
  }

  struct LoopState {
    int64_t index = 0;
    std::optional<Value> last_changed;
  };

  Value loop_object(const std::shared_ptr<LoopState>& state) {
    auto d = make_dict();
    d->set("depth", Value::integer(1));
    d->set("depth0", Value::integer(0));
    d->set("cycle", Value::function("loop.cycle", [state](Interpreter&, CallArgs& a) {
             if (a.positional.empty()) fail("no items for cycling given");
             return a.positional[static_cast<size_t>(state->index) % a.positional.size()];
           }));
    d->set("changed", Value::function("loop.changed", [state](Interpreter& in, CallArgs& a) {
             Value v = in.make_list(a.positional);
             if (state->last_changed && equals(*state->last_changed, v)) return Value::boolean(false);
             state->last_changed = v;
             return Value::boolean(true);
           }));
    account(sizeof(Dict) + 13 * 2 * sizeof(Value));
    return Value::dict(d);
  }

  // A macro (or a call block's caller): a function over the body that runs in a scope over the scope it
  // was defined in. The defining scope is pinned for the rendering (the function holds it weakly, so no
  // reference cycle outlives the rendering).
  Value make_macro(const Stmt& s, const ScopePtr& defining, const std::string& name) {
    account(sizeof(Scope) + sizeof(Function) + 64);  // the pinned scope lives for the rendering
    pinned_.push_back(defining);
    std::weak_ptr<Scope> where = defining;
    const Stmt* stmt = &s;
    return Value::function(name, [stmt, where, name](Interpreter& in, CallArgs& args) {
      return in.invoke_macro(*stmt, where.lock(), name, args);
    });
  }

  Value invoke_macro(const Stmt& s, const ScopePtr& defining, const std::string& name, CallArgs& args) {
    if (!defining) fail("macro '" + name + "' called after its scope ended");
    DepthGuard g(call_depth_, kMaxCallDepth, "macros call each other too deeply (limit kMaxCallDepth)");
    auto scope = std::make_shared<Scope>();
    scope->parent = defining;
    const bool is_caller = s.kind == Stmt::Kind::call_block;
    const size_t np = s.params.size();
    std::vector<bool> bound(np, false);
    std::vector<Value> extra;
    for (size_t i = 0; i < args.positional.size(); ++i) {
      if (i < np) {
        scope->vars[s.params[i].first] = args.positional[i];
        bound[i] = true;
      } else {
        extra.push_back(args.positional[i]);
      }
    }
    if (!extra.empty() && !s.uses_varargs)
      fail("macro '" + name + "' takes not more than " + std::to_string(np) + " argument(s)");
    auto kwargs = make_dict();
    std::optional<Value> caller;
    for (auto& [k, v] : args.keyword) {
      if (k == "caller" && !is_caller) {
        if (!s.uses_caller) fail("macro '" + name + "' was invoked with two values for the special caller argument");
        caller = v;
        continue;
      }
      bool found = false;
      for (size_t i = 0; i < np; ++i) {
        if (s.params[i].first == k) {
          if (bound[i]) fail("macro '" + name + "' got multiple values for argument '" + k + "'");
          scope->vars[k] = v;
          bound[i] = true;
          found = true;
        }
      }
      if (!found) {
        if (!s.uses_kwargs) fail("macro '" + name + "' takes no keyword argument '" + k + "'");
        kwargs->set(k, v);
      }
    }
    for (size_t i = 0; i < np; ++i) {
      if (bound[i]) continue;
      if (s.params[i].second) scope->vars[s.params[i].first] = eval(*s.params[i].second, scope);
      else scope->vars[s.params[i].first] = Value::undefined("parameter '" + s.params[i].first + "' was not provided");
    }
    if (s.uses_varargs) scope->vars["varargs"] = make_list(std::move(extra), true);
    if (s.uses_kwargs) scope->vars["kwargs"] = Value::dict(kwargs);
    if (caller) scope->vars["caller"] = *caller;
    Out out;
    exec_body(s.body, scope, out);
    return make_str(std::move(out.text), std::move(out.tainted));
  }

  // ---- expressions
 public:
  Value eval(const Expr& e, const ScopePtr& scope) {
    count_step();
    DepthGuard g(eval_depth_, kMaxEvalDepth, "the template nests too deeply while rendering (limit kMaxEvalDepth)");
    try {
      return eval_inner(e, scope);
    } catch (const TemplateError& err) {
      throw locate(err, e);
    }
  }

 private:
  CallArgs eval_args(const Expr& e, const ScopePtr& scope, size_t first_positional = 1) {
    CallArgs a;
    for (size_t i = first_positional; i < e.children.size(); ++i) a.positional.push_back(eval(*e.children[i], scope));
    if (e.dyn_args) {
      Value extra = eval(*e.dyn_args, scope);
      for (auto& x : iterate(extra)) a.positional.push_back(std::move(x));
    }
    for (const auto& k : e.keywords) a.keyword.emplace_back(k.name, eval(*k.value, scope));
    if (e.dyn_kwargs) {
      Value d = eval(*e.dyn_kwargs, scope);
      if (!d.is_dict()) fail("argument after ** must be a mapping, not " + d.type_name());
      for (const auto& [k, v] : d.dict_ptr()->items()) {
        if (!k.is_string()) fail("keywords must be strings");
        a.keyword.emplace_back(k.str(), v);
      }
    }
    return a;
  }

  Value eval_filter_chain(const Expr& f, const Value& input, const ScopePtr& scope) {
    // A block filter's chain: the innermost filter (first child null) takes `input`.
    Value in = f.children[0] ? eval_filter_chain(*f.children[0], input, scope) : input;
    CallArgs args = eval_args(f, scope);
    return apply_filter(f.name, in, args);
  }

  Value eval_inner(const Expr& e, const ScopePtr& scope) {
    switch (e.kind) {
      case Expr::Kind::constant: return e.constant;
      case Expr::Kind::name: {
        if (const Value* v = scope->find(e.name)) return *v;
        return Value::undefined("'" + e.name + "' is undefined");
      }
      case Expr::Kind::list:
      case Expr::Kind::tuple: {
        std::vector<Value> items;
        items.reserve(e.children.size());
        for (const auto& c : e.children) items.push_back(eval(*c, scope));
        return make_list(std::move(items), e.kind == Expr::Kind::tuple);
      }
      case Expr::Kind::dict: {
        auto d = make_dict();
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          Value k = eval(*e.children[i], scope);
          d->set(std::move(k), eval(*e.children[i + 1], scope));
        }
        account(sizeof(Dict) + d->size() * 2 * sizeof(Value));
        return Value::dict(d);
      }
      case Expr::Kind::getattr: return getattr(eval(*e.children[0], scope), e.name);
      case Expr::Kind::getitem: {
        Value obj = eval(*e.children[0], scope);
        const Expr& key = *e.children[1];
        if (key.kind == Expr::Kind::slice) {
          Value parts[3];
          for (int i = 0; i < 3; ++i) parts[i] = key.children[static_cast<size_t>(i)] ? eval(*key.children[static_cast<size_t>(i)], scope) : Value::none();
          return slice(obj, parts[0], parts[1], parts[2]);
        }
        return getitem(obj, eval(key, scope));
      }
      case Expr::Kind::slice: fail("a slice is only valid inside []");
      case Expr::Kind::call: {
        Value callee = eval(*e.children[0], scope);
        CallArgs args = eval_args(e, scope);
        return call(callee, args);
      }
      case Expr::Kind::filter: {
        Value in = e.children[0] ? eval(*e.children[0], scope) : Value::undefined("no input");
        CallArgs args = eval_args(e, scope);
        return apply_filter(e.name, in, args);
      }
      case Expr::Kind::test: {
        Value in = eval(*e.children[0], scope);
        CallArgs args = eval_args(e, scope);
        return Value::boolean(apply_test(e.name, in, args));
      }
      case Expr::Kind::neg:
      case Expr::Kind::pos: {
        Value v = eval(*e.children[0], scope);
        if (v.is_undefined()) fail(v.undefined_hint());
        if (!v.is_number())
          fail(std::string("bad operand type for unary ") + (e.kind == Expr::Kind::neg ? "-" : "+") + ": '" + v.type_name() + "'");
        if (e.kind == Expr::Kind::pos) return v.is_bool() ? Value::integer(v.as_int()) : v;
        if (v.is_float()) return Value::floating(-v.as_double());
        if (v.as_int() == INT64_MIN) fail("integer overflow (dots1 templates use 64-bit integers)");
        return Value::integer(-v.as_int());
      }
      case Expr::Kind::not_: return Value::boolean(!truthy(eval(*e.children[0], scope)));
      case Expr::Kind::and_: {
        Value l = eval(*e.children[0], scope);
        return truthy(l) ? eval(*e.children[1], scope) : l;
      }
      case Expr::Kind::or_: {
        Value l = eval(*e.children[0], scope);
        return truthy(l) ? l : eval(*e.children[1], scope);
      }
      case Expr::Kind::binary: return binary(e.name, eval(*e.children[0], scope), eval(*e.children[1], scope));
      case Expr::Kind::concat: {
        Value acc = make_str("");
        for (const auto& c : e.children) acc = concat(acc, to_str_value(eval(*c, scope)));
        return acc;
      }
      case Expr::Kind::compare: {
        Value left = eval(*e.children[0], scope);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.children[i + 1], scope);
          if (!compare_op(e.ops[i], left, right)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::condexpr: {
        if (truthy(eval(*e.children[0], scope))) return eval(*e.children[1], scope);
        if (e.children[2]) return eval(*e.children[2], scope);
        return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                " evaluated to false and no else section was defined.");
      }
    }
    return Value();
  }

 public:
  bool compare_op(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return equals(a, b);
    if (op == "!=") return !equals(a, b);
    if (op == "in") return contains(b, a);
    if (op == "notin") return !contains(b, a);
    const int c = compare(a, b, op);
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    return c >= 0;
  }

  /// Python's `item in container`.
  bool contains(const Value& container, const Value& item) {
    switch (container.type()) {
      case Value::Type::string:
        if (!item.is_string())
          fail("'in <string>' requires string as left operand, not " + (item.is_undefined() ? std::string("Undefined") : item.type_name()));
        charge_bytes(container.str().size());
        return container.str().find(item.str()) != std::string::npos;
      case Value::Type::list:
        if (container.is_iterator()) {
          List& l = *container.list_ptr();
          while (l.consumed < l.items.size())
            if (equals(l.items[l.consumed++], item)) return true;
          return false;
        }
        for (const auto& x : container.items())
          if (equals(x, item)) return true;
        return false;
      case Value::Type::dict:
        if (!Dict::key_of(item) && !item.is_undefined()) fail("unhashable type: '" + item.type_name() + "'");
        return container.dict_ptr()->contains(item);
      case Value::Type::undefined:
        if (container.undefined_is_unsafe()) fail(container.undefined_hint());
        return false;
      default: fail("argument of type '" + container.type_name() + "' is not iterable");
    }
  }

  static int64_t checked(bool overflow, int64_t v) {
    if (overflow) fail("integer overflow (dots1 templates use 64-bit integers; Python's are unbounded)");
    return v;
  }

  /// Python's floor division and modulo.
  static int64_t floordiv(int64_t a, int64_t b) {
    if (b == 0) fail("integer division or modulo by zero");
    if (a == INT64_MIN && b == -1) fail("integer overflow (dots1 templates use 64-bit integers; Python's are unbounded)");
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  }
  static int64_t pymod(int64_t a, int64_t b) {
    if (b == 0) fail("integer division or modulo by zero");
    if (b == -1) return 0;
    int64_t r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
  }
  static double pyfmod(double a, double b) {
    if (b == 0) fail("float modulo by zero");
    double r = std::fmod(a, b);
    if (r != 0) {
      if ((b < 0) != (r < 0)) r += b;
    } else {
      r = std::copysign(0.0, b);
    }
    return r;
  }
  static double pyfloordiv(double a, double b) {
    if (b == 0) fail("float floor division by zero");
    const double m = std::fmod(a, b);
    double div = (a - m) / b;
    if (m != 0 && ((b < 0) != (m < 0))) div -= 1.0;
    if (div != 0) {
      double fl = std::floor(div);
      if (div - fl > 0.5) fl += 1.0;
      return fl;
    }
    return std::copysign(0.0, a / b);
  }

  Value repeat(const Value& seq, int64_t n) {
    if (n <= 0) return seq.is_string() ? make_str("") : make_list({}, seq.is_tuple());
    if (seq.is_string()) {
      const Str& s = *seq.str_ptr();
      if (s.text.empty()) return seq;
      if (static_cast<uint64_t>(n) > kMaxOutputBytes / s.text.size()) check_size(kMaxOutputBytes + 1, "a repeated string");
      const size_t total = s.text.size() * static_cast<size_t>(n);
      std::string out;
      out.reserve(total);
      out = s.text;
      while (out.size() < total) out.append(out, 0, std::min(out.size(), total - out.size()));  // doubling
      std::vector<Span> t;
      if (s.is_tainted())
        for (int64_t i = 0; i < n; ++i) append_spans(t, s.tainted, static_cast<size_t>(i) * s.text.size());
      return make_str(std::move(out), std::move(t));
    }
    const auto& items = seq.items();
    if (items.empty()) return seq;
    if (static_cast<uint64_t>(n) > kMaxOutputBytes / sizeof(Value) / items.size()) check_size(kMaxOutputBytes + 1, "a repeated list");
    std::vector<Value> out;
    out.reserve(items.size() * static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
    return make_list(std::move(out), seq.is_tuple());
  }

  Value binary(const std::string& op, const Value& a, const Value& b) {
    if (a.is_undefined()) fail(a.undefined_hint());
    if (b.is_undefined()) fail(b.undefined_hint());
    auto unsupported = [&]() -> Value {
      if (op == "+" && a.is_string()) fail("can only concatenate str (not \"" + b.type_name() + "\") to str");
      if (op == "+" && a.is_list() && !a.is_tuple()) fail("can only concatenate list (not \"" + b.type_name() + "\") to list");
      if (op == "%" && a.is_string()) fail("string formatting with % is not supported by dots1 (use the format filter)");
      fail("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
    };
    if (a.is_number() && b.is_number()) {
      const bool fl = a.is_float() || b.is_float();
      if (op == "/") {
        const double y = b.as_double();
        if (y == 0) fail("division by zero");
        return Value::floating(a.as_double() / y);
      }
      if (fl) {
        const double x = a.as_double(), y = b.as_double();
        if (op == "+") return Value::floating(x + y);
        if (op == "-") return Value::floating(x - y);
        if (op == "*") return Value::floating(x * y);
        if (op == "//") return Value::floating(pyfloordiv(x, y));
        if (op == "%") return Value::floating(pyfmod(x, y));
        if (op == "**") {
          if (x == 0 && y < 0) fail("0.0 cannot be raised to a negative power");
          return Value::floating(std::pow(x, y));
        }
        return unsupported();
      }
      const int64_t x = a.as_int(), y = b.as_int();
      int64_t r = 0;
      if (op == "+") {
        const bool o = __builtin_add_overflow(x, y, &r);
        return Value::integer(checked(o, r));
      }
      if (op == "-") {
        const bool o = __builtin_sub_overflow(x, y, &r);
        return Value::integer(checked(o, r));
      }
      if (op == "*") {
        const bool o = __builtin_mul_overflow(x, y, &r);
        return Value::integer(checked(o, r));
      }
      if (op == "//") return Value::integer(floordiv(x, y));
      if (op == "%") return Value::integer(pymod(x, y));
      if (op == "**") {
        if (y < 0) {
          if (x == 0) fail("0.0 cannot be raised to a negative power");
          return Value::floating(std::pow(static_cast<double>(x), static_cast<double>(y)));
        }
        int64_t result = 1, base = x, e = y;
        while (e > 0) {
          if (e & 1) {
            const bool o = __builtin_mul_overflow(result, base, &result);
            checked(o, result);
          }
          e >>= 1;
          if (e) {
            const bool o = __builtin_mul_overflow(base, base, &base);
            checked(o, base);
          }
        }
        return Value::integer(result);
      }
      return unsupported();
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) {
        // Markup + str escapes the str (markupsafe), and the result is Markup
        if (a.str_ptr()->markup || b.str_ptr()->markup) return make_markup(concat(escape(a), escape(b)));
        return concat(a, b);
      }
      if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple() && !a.is_iterator() && !b.is_iterator()) {
        std::vector<Value> items = a.items();
        items.insert(items.end(), b.items().begin(), b.items().end());
        return make_list(std::move(items), a.is_tuple());
      }
      return unsupported();
    }
    if (op == "*") {
      const Value* seq = (a.is_string() || (a.is_list() && !a.is_iterator())) && b.is_integral() ? &a
                         : (b.is_string() || (b.is_list() && !b.is_iterator())) && a.is_integral() ? &b
                                                                                               : nullptr;
      if (seq) {
        Value r = repeat(*seq, (seq == &a ? b : a).as_int());
        return seq->is_string() && seq->str_ptr()->markup ? make_markup(r) : r;
      }
    }
    return unsupported();
  }

  /// Python slicing (code points for strings).
  Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
    auto idx = [&](const Value& v, const char* what) -> std::optional<int64_t> {
      if (v.is_none() || v.is_undefined()) return std::nullopt;
      if (!v.is_integral()) fail(std::string("slice ") + what + " must be an integer or None, not " + v.type_name());
      return v.as_int();
    };
    if (obj.is_undefined()) fail(obj.undefined_hint());
    if (obj.is_iterator()) return Value::undefined("'generator' object is not subscriptable");
    if (!obj.is_string() && !obj.is_list()) {
      if (obj.is_none()) return Value::undefined("'None' has no slice");
      fail("'" + obj.type_name() + "' object is not subscriptable");
    }
    const auto s0 = idx(start, "start"), s1 = idx(stop, "stop"), s2 = idx(step, "step");
    const int64_t st = s2.value_or(1);
    if (st == 0) fail("slice step cannot be zero");
    std::vector<size_t> offsets;
    int64_t n;
    if (obj.is_string()) {
      if (is_ascii(obj.str())) {
        n = static_cast<int64_t>(obj.str().size());
      } else {
        offsets = cp_offsets(obj.str());
        n = static_cast<int64_t>(offsets.size()) - 1;
      }
    } else {
      n = static_cast<int64_t>(obj.items().size());
    }
    // PySlice_AdjustIndices
    auto adjust = [&](std::optional<int64_t> v, int64_t dflt_pos, int64_t dflt_neg) {
      if (!v) return st > 0 ? dflt_pos : dflt_neg;
      int64_t x = *v;
      if (x < 0) {
        x += n;
        if (x < 0) x = st < 0 ? -1 : 0;
      } else if (x >= n) {
        x = st < 0 ? n - 1 : n;
      }
      return x;
    };
    const int64_t b = adjust(s0, 0, n - 1), e = adjust(s1, n, -1);
    std::vector<int64_t> picks;
    if (st > 0)
      for (int64_t i = b; i < e; i += st) picks.push_back(i);
    else
      for (int64_t i = b; i > e; i += st) picks.push_back(i);
    if (obj.is_list()) {
      std::vector<Value> out;
      out.reserve(picks.size());
      for (int64_t i : picks) out.push_back(obj.items()[static_cast<size_t>(i)]);
      return make_list(std::move(out), obj.is_tuple());
    }
    auto byte_of = [&](int64_t i) { return offsets.empty() ? static_cast<size_t>(i) : offsets[static_cast<size_t>(i)]; };
    if (st == 1) {
      if (picks.empty()) return make_str("");
      const size_t from = byte_of(picks.front()), to = byte_of(picks.back() + 1);
      return substr(obj, from, to - from);
    }
    std::string out;
    std::vector<Span> t;
    const Str& src = *obj.str_ptr();
    for (int64_t i : picks) {
      const size_t from = byte_of(i), to = byte_of(i + 1);
      append_spans(t, clip_spans(src.tainted, from, to - from), out.size());
      out.append(src.text, from, to - from);
    }
    return make_str(std::move(out), std::move(t));
  }

 private:
  void install_globals(Scope& g);

  const Program& program_;
  RenderOptions options_;
  size_t allocated_ = 0;
  int64_t iterations_ = 0;
  int64_t steps_ = 0;
  int call_depth_ = 0;
  int eval_depth_ = 0;
  std::vector<ScopePtr> pinned_;

 public:
  const RenderOptions& options() const { return options_; }
};

}  // namespace dots1::jinja

#include "dots1/tokenizer/jinja/builtins.hpp"
