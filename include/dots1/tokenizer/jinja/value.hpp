// dots1/tokenizer/jinja/value.hpp — the values a chat template computes with, with Python's semantics.
//
// Jinja templates run on Python objects, and HF renders them with Python's rules: truthiness (0, "", [], {},
// None and undefined are false), == across int/float/bool, ordering only between comparable types, how str()
// prints None/True/1.0/1e+16/lists/dicts, json.dumps for tojson. Value reproduces those rules for the types a
// chat template can see: undefined, none, bool, int (64-bit; Python's are unbounded, so an overflow is an
// error here), float, str, list/tuple, dict (insertion-ordered, like Python's), callables and namespace().
//
// Strings are UTF-8 and carry the byte ranges that came from message contents (their "taint"): the
// renderer keeps track of which output bytes the user or the model wrote, so that special tokens are only
// parsed in the template's own text (see ChatFormat). Operations that cut a string (slices, strip, split)
// keep exact ranges; any other transformation of a tainted string taints its whole result.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <utf8proc.h>

#include "dots1/error.hpp"
#include "dots1/tokenizer/unicode.hpp"

namespace dots1::jinja {

/// The size of a rendering, and of any one string, list or printed value it builds: 64 MiB (a chat prompt
/// is a few hundred kB at most; the bound only stops runaway templates).
inline constexpr size_t kMaxOutputBytes = 64u << 20;
/// Work units of one rendering's deep operations (==, <, printing and tojson of containers, `in`, string
/// searches): one unit per element visited or per 16 bytes compared. Lists can share their items, so a
/// small value may stand for an enormous one; this bounds the time any operation on it can take.
inline constexpr uint64_t kMaxWorkUnits = 100'000'000;

/// Nesting of lists and dicts: 256 levels. Every recursive operation on values (printing, ==, tojson,
/// destruction) is bounded by it. A namespace() counts as kNamespaceDepth levels, whatever it holds, and may
/// only hold values less deep than that: so it cannot contain itself or another namespace, and a value that
/// holds a namespace is never deeper than it says, however the namespace changes later.
inline constexpr int kMaxValueDepth = 256;
inline constexpr int kNamespaceDepth = 128;

/// The work budget of the rendering running on this thread (null outside a rendering: no limit).
struct WorkBudget {
  uint64_t left = kMaxWorkUnits;
};
inline thread_local WorkBudget* tl_work_budget = nullptr;

inline void charge_work(uint64_t units) {
  if (WorkBudget* b = tl_work_budget) {
    if (units > b->left)
      throw TemplateError("the template's comparisons, searches and printing took more than " + std::to_string(kMaxWorkUnits) +
                          " work units (limit kMaxWorkUnits)");
    b->left -= units;
  }
}
inline void charge_bytes(size_t n) { charge_work(1 + n / 16); }

/// Throws when a string being built passes kMaxOutputBytes.
inline void check_built_size(size_t n) {
  if (n > kMaxOutputBytes)
    throw TemplateError("a printed value would be more than " + std::to_string(kMaxOutputBytes >> 20) + " MiB (kMaxOutputBytes)");
}

// ------------------------------------------------------------------------------------------------
// Strings with taint

/// A byte range [begin, end).
struct Span {
  size_t begin = 0, end = 0;
  bool operator==(const Span&) const = default;
};

/// Appends `s` shifted by `offset` to `out`, merging ranges that touch.
inline void append_spans(std::vector<Span>& out, const std::vector<Span>& s, size_t offset) {
  for (const Span& x : s) {
    Span y{x.begin + offset, x.end + offset};
    if (y.begin >= y.end) continue;
    if (!out.empty() && out.back().end >= y.begin)
      out.back().end = std::max(out.back().end, y.end);
    else
      out.push_back(y);
  }
}

/// The ranges of `s` that fall into [pos, pos + len), relative to pos.
inline std::vector<Span> clip_spans(const std::vector<Span>& s, size_t pos, size_t len) {
  std::vector<Span> out;
  const size_t stop = pos + len;
  for (const Span& x : s) {
    const size_t b = std::max(x.begin, pos), e = std::min(x.end, stop);
    if (b < e) out.push_back({b - pos, e - pos});
  }
  return out;
}

/// A string value: text plus the byte ranges of it that came from message contents.
struct Str {
  std::string text;
  std::vector<Span> tainted;
  bool markup = false;  // markupsafe.Markup (from |safe or |escape): `+` HTML-escapes a plain str joined to it
  bool is_tainted() const noexcept { return !tainted.empty(); }
};
using StrPtr = std::shared_ptr<const Str>;

// ------------------------------------------------------------------------------------------------
// Python text helpers (code points, whitespace, line breaks, number formatting)

/// Python's str.isspace() (also what re's \s matches in a str pattern).
inline bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/// Python's line boundaries (str.splitlines).
inline bool py_is_linebreak(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
         c == 0x2028 || c == 0x2029;
}

inline bool is_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

/// Number of code points (Python's len(str)).
inline size_t cp_count(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

/// Byte offset of every code point, plus s.size() at the end (for index and slice arithmetic).
inline std::vector<size_t> cp_offsets(std::string_view s) {
  std::vector<size_t> o;
  o.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) o.push_back(i);
  o.push_back(s.size());
  return o;
}

/// Decodes a UTF-8 string (valid by construction: every string comes from validated input) to code points.
inline std::u32string to_u32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) out.push_back(tok::utf8_next(s, i));
  return out;
}
inline std::string from_u32(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) tok::utf8_append(out, c);
  return out;
}

/// Python's str(int).
inline std::string int_to_str(int64_t v) { return std::to_string(v); }

/// Python's repr(float) (= str(float)): the shortest digits that round-trip, fixed notation for decimal
/// exponents in [-4, 16), otherwise d.ddde+XX; always a '.0' or an exponent, so 1.0 prints as "1.0".
inline std::string float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // "-1.2345e+02" with the shortest round-trip digits
  bool neg = false;
  size_t p = 0;
  if (sci[0] == '-') neg = true, p = 1;
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t i = p; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  int exp10 = std::stoi(sci.substr(e + 1));
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = neg ? "-" : "";
  if (exp10 >= -4 && exp10 < 16) {
    if (exp10 >= 0) {
      const size_t int_len = static_cast<size_t>(exp10) + 1;
      if (digits.size() <= int_len) {
        out += digits + std::string(int_len - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, int_len) + "." + digits.substr(int_len);
      }
    } else {
      out += "0." + std::string(static_cast<size_t>(-exp10 - 1), '0') + digits;
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += exp10 < 0 ? "e-" : "e+";
    const std::string ex = std::to_string(std::abs(exp10));
    out += (ex.size() < 2 ? "0" : "") + ex;
  }
  return out;
}

/// Python's repr(str): single quotes unless the text has ' and no ", backslash escapes for the quote,
/// backslash, \t \n \r and other non-printable characters.
inline std::string py_repr_string(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos, has_double = s.find('"') != std::string_view::npos;
  const char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = i;
    const char32_t c = tok::utf8_next(s, i);
    if (c == static_cast<char32_t>(q) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned>(c));
      out += b;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      // Python's str.isprintable(): not in categories Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs (except ' ').
      const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      const bool printable = !(cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CS ||
                               cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_ZL ||
                               cat == UTF8PROC_CATEGORY_ZP || cat == UTF8PROC_CATEGORY_ZS);
      if (printable) {
        out.append(s.substr(start, i - start));
      } else {
        char b[16];
        if (c <= 0xFF) std::snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned>(c));
        else if (c <= 0xFFFF) std::snprintf(b, sizeof b, "\\u%04x", static_cast<unsigned>(c));
        else std::snprintf(b, sizeof b, "\\U%08x", static_cast<unsigned>(c));
        out += b;
      }
    }
  }
  out += q;
  return out;
}

/// markupsafe.escape: & < > " ' as HTML entities.
inline std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

/// json.dumps of a string with ensure_ascii=False: only ", \ and control characters are escaped.
inline void json_escape_into(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// ------------------------------------------------------------------------------------------------
// Values

class Value;
class Dict;
class Interpreter;

/// A list or a tuple (tuples print with parentheses and are never equal to lists, as in Python), or a
/// one-pass iterator: what Jinja's map, select, reject, selectattr, rejectattr, unique, items, batch and
/// reverse return (Python generators: always true, no len(), not JSON serializable, and iterating them
/// consumes them).
struct List {
  std::vector<Value> items;
  bool tuple = false;
  int depth = 1;  // 1 + the deepest item's depth
  bool iterator = false;
  size_t consumed = 0;  // iterator: items before this were produced already
};

/// Arguments of a call: positional, then keyword in call order.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

/// Something a template can call: a macro, a builtin global, a bound method.
struct Function {
  std::string name;
  std::function<Value(Interpreter&, CallArgs&)> call;
};

/// An undefined value, with the message Jinja gives when it is used where a value is needed.
struct UndefinedInfo {
  std::string hint;     // "'foo' is undefined", "'dict object' has no attribute 'x'"
  bool unsafe = false;  // an attribute the sandbox forbids (list.append, dict.update, ...)
};

using ListPtr = std::shared_ptr<List>;
using DictPtr = std::shared_ptr<Dict>;
using FunctionPtr = std::shared_ptr<const Function>;

struct Namespace;
using NamespacePtr = std::shared_ptr<Namespace>;

class Value {
 public:
  enum class Type : uint8_t { undefined, none, boolean, integer, floating, string, list, dict, function, ns };

  Value() : v_(Undef{}) {}  // undefined
  static Value undefined(std::string hint, bool unsafe = false) {
    Value v;
    v.v_ = Undef{std::make_shared<const UndefinedInfo>(UndefinedInfo{std::move(hint), unsafe})};
    return v;
  }
  static Value none() { return Value(NoneT{}); }
  static Value boolean(bool b) { return Value(b); }
  static Value integer(int64_t i) { return Value(i); }
  static Value floating(double f) { return Value(f); }
  static Value string(std::string s) { return Value(std::make_shared<const Str>(Str{std::move(s), {}})); }
  static Value string(StrPtr s) { return Value(std::move(s)); }
  static Value tainted_string(std::string s) {
    const size_t n = s.size();
    Str str{std::move(s), {}};
    if (n) str.tainted.push_back({0, n});
    return Value(std::make_shared<const Str>(std::move(str)));
  }
  static Value list(std::vector<Value> items, bool tuple = false);
  static Value dict(DictPtr d) { return Value(std::move(d)); }
  static Value function(std::string name, std::function<Value(Interpreter&, CallArgs&)> f) {
    return Value(std::make_shared<const Function>(Function{std::move(name), std::move(f)}));
  }
  static Value ns(NamespacePtr n) { return Value(std::move(n)); }

  Type type() const noexcept { return static_cast<Type>(v_.index()); }
  bool is_undefined() const noexcept { return type() == Type::undefined; }
  bool is_none() const noexcept { return type() == Type::none; }
  bool is_bool() const noexcept { return type() == Type::boolean; }
  bool is_int() const noexcept { return type() == Type::integer; }  // not bool (Python's bool is an int, see is_integral)
  bool is_float() const noexcept { return type() == Type::floating; }
  bool is_string() const noexcept { return type() == Type::string; }
  bool is_list() const noexcept { return type() == Type::list; }
  bool is_dict() const noexcept { return type() == Type::dict; }
  bool is_function() const noexcept { return type() == Type::function; }
  bool is_namespace() const noexcept { return type() == Type::ns; }
  bool is_integral() const noexcept { return is_int() || is_bool(); }
  bool is_number() const noexcept { return is_int() || is_bool() || is_float(); }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return is_bool() ? static_cast<int64_t>(std::get<bool>(v_)) : std::get<int64_t>(v_); }
  double as_double() const { return is_float() ? std::get<double>(v_) : static_cast<double>(as_int()); }
  const StrPtr& str_ptr() const { return std::get<StrPtr>(v_); }
  const std::string& str() const { return std::get<StrPtr>(v_)->text; }
  const ListPtr& list_ptr() const { return std::get<ListPtr>(v_); }
  const std::vector<Value>& items() const { return std::get<ListPtr>(v_)->items; }
  bool is_tuple() const { return std::get<ListPtr>(v_)->tuple; }
  bool is_iterator() const { return is_list() && std::get<ListPtr>(v_)->iterator; }
  const DictPtr& dict_ptr() const { return std::get<DictPtr>(v_); }
  const Function& fn() const { return *std::get<FunctionPtr>(v_); }
  const NamespacePtr& ns_ptr() const { return std::get<NamespacePtr>(v_); }
  /// The message for using this undefined value ("'x' is undefined" when nothing better is known).
  std::string undefined_hint() const {
    const auto& u = std::get<Undef>(v_);
    return u.info ? u.info->hint : std::string("value is undefined");
  }
  bool undefined_is_unsafe() const {
    const auto& u = std::get<Undef>(v_);
    return u.info && u.info->unsafe;
  }
  /// Identity of containers and callables (Jinja's `sameas` on them, Python's `is`).
  const void* identity() const {
    switch (type()) {
      case Type::string: return str_ptr().get();
      case Type::list: return list_ptr().get();
      case Type::dict: return dict_ptr().get();
      case Type::function: return std::get<FunctionPtr>(v_).get();
      case Type::ns: return ns_ptr().get();
      default: return nullptr;
    }
  }

  /// Python's type name, for error messages ("'int' object is not iterable").
  std::string type_name() const {
    switch (type()) {
      case Type::undefined: return "Undefined";
      case Type::none: return "NoneType";
      case Type::boolean: return "bool";
      case Type::integer: return "int";
      case Type::floating: return "float";
      case Type::string: return "str";
      case Type::list: return is_iterator() ? "generator" : is_tuple() ? "tuple" : "list";
      case Type::dict: return "dict";
      case Type::function: return "function";
      case Type::ns: return "Namespace";
    }
    return "?";
  }

 private:
  struct Undef {
    std::shared_ptr<const UndefinedInfo> info;
  };
  struct NoneT {};
  // The order of the alternatives is the order of Type.
  using Variant = std::variant<Undef, NoneT, bool, int64_t, double, StrPtr, ListPtr, DictPtr, FunctionPtr, NamespacePtr>;
  template <class T>
  explicit Value(T x) : v_(std::move(x)) {}
  Variant v_;
};

/// A Python dict: keys are None, bool, int, float or str; insertion order is kept; 1, 1.0 and True are
/// the same key (the first spelling stays, the last value wins), as in Python.
class Dict {
 public:
  /// The lookup key of a string key ("s" + text; built by appending, which GCC 12's -Wrestrict accepts).
  static std::string str_key(std::string_view k) {
    std::string s;
    s.reserve(k.size() + 1);
    s += 's';
    s.append(k);
    return s;
  }

  /// The lookup key of `k`, or nullopt when k cannot be a key (lists, dicts: unhashable).
  static std::optional<std::string> key_of(const Value& k) {
    switch (k.type()) {
      case Value::Type::none: return std::string("n");
      case Value::Type::boolean:
      case Value::Type::integer: return "i" + std::to_string(k.as_int());
      case Value::Type::floating: {
        const double d = k.as_double();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) return "i" + std::to_string(static_cast<int64_t>(d));
        return "f" + float_repr(d);
      }
      case Value::Type::string: return str_key(k.str());
      default: return std::nullopt;
    }
  }

  const Value* find(const Value& key) const {
    const auto k = key_of(key);
    if (!k) return nullptr;
    auto it = index_.find(*k);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  const Value* find(std::string_view key) const {
    auto it = index_.find(str_key(key));
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  bool contains(const Value& key) const { return find(key) != nullptr; }

  /// Inserts or replaces; throws TemplateError for an unhashable key or too deep a value.
  void set(Value key, Value value) {
    const auto k = key_of(key);
    if (!k) throw TemplateError("unhashable type: '" + key.type_name() + "' (a dict key must be a string, number, bool or none)");
    note_depth(value);
    if (auto it = index_.find(*k); it != index_.end()) {
      items_[it->second].second = std::move(value);
      return;
    }
    index_.emplace(*k, items_.size());
    items_.emplace_back(std::move(key), std::move(value));
  }
  void set(std::string key, Value value) { set(Value::string(std::move(key)), std::move(value)); }

  /// The position of `key` in items() (for updating a value in place), or npos.
  size_t slot(std::string_view key) const {
    auto it = index_.find(str_key(key));
    return it == index_.end() ? static_cast<size_t>(-1) : it->second;
  }
  Value& value_at(size_t slot) { return items_[slot].second; }

  size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }
  const std::vector<std::pair<Value, Value>>& items() const noexcept { return items_; }
  /// 1 + the deepest value's depth (an upper bound once values were replaced).
  int depth() const noexcept { return depth_; }

 private:
  void note_depth(const Value& v);
  int depth_ = 1;
  std::vector<std::pair<Value, Value>> items_;
  std::unordered_map<std::string, size_t> index_;
};

/// namespace(): the one object a template may assign attributes to ({% set ns.x = ... %}).
struct Namespace {
  Dict attrs;
};

inline DictPtr make_dict() { return std::make_shared<Dict>(); }

/// The nesting depth of a value (0 for scalars; see kMaxValueDepth).
inline int depth_of(const Value& v) {
  switch (v.type()) {
    case Value::Type::list: return v.list_ptr()->depth;
    case Value::Type::dict: return v.dict_ptr()->depth();
    case Value::Type::ns: return kNamespaceDepth;
    default: return 0;
  }
}

inline void check_depth(int depth) {
  if (depth > kMaxValueDepth)
    throw TemplateError("lists and dicts nested more than " + std::to_string(kMaxValueDepth) + " levels deep (kMaxValueDepth)");
}

inline Value Value::list(std::vector<Value> items, bool tuple) {
  int d = 0;
  for (const auto& x : items) d = std::max(d, depth_of(x));
  check_depth(d + 1);
  return Value(std::make_shared<List>(List{std::move(items), tuple, d + 1}));
}

inline void Dict::note_depth(const Value& v) {
  const int d = std::max(depth_of(v) + 1, depth_);
  check_depth(d);
  depth_ = d;
}

// ------------------------------------------------------------------------------------------------
// Python semantics

/// Python's bool(x); undefined is false.
inline bool truthy(const Value& v) {
  switch (v.type()) {
    case Value::Type::undefined:
    case Value::Type::none: return false;
    case Value::Type::boolean: return v.as_bool();
    case Value::Type::integer: return v.as_int() != 0;
    case Value::Type::floating: return v.as_double() != 0.0;
    case Value::Type::string: return !v.str().empty();
    case Value::Type::list: return v.is_iterator() || !v.items().empty();
    case Value::Type::dict: return !v.dict_ptr()->empty();
    default: return true;
  }
}

/// Python's ==. Undefined equals only undefined (Jinja's Undefined.__eq__).
inline bool equals(const Value& a, const Value& b) {
  charge_work(1);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::undefined:
    case Value::Type::none: return true;
    case Value::Type::string:
      if (a.str().size() != b.str().size()) return false;
      charge_bytes(a.str().size());
      return a.str() == b.str();
    case Value::Type::list: {
      if (a.is_tuple() != b.is_tuple() || a.is_iterator() || b.is_iterator()) return a.list_ptr() == b.list_ptr();
      if (a.list_ptr() == b.list_ptr()) return true;  // Python compares container items by identity first
      const auto &x = a.items(), &y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i])) return false;
      return true;
    }
    case Value::Type::dict: {
      if (a.dict_ptr() == b.dict_ptr()) return true;
      const Dict &x = *a.dict_ptr(), &y = *b.dict_ptr();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.items()) {
        const Value* w = y.find(k);
        if (!w || !equals(v, *w)) return false;
      }
      return true;
    }
    case Value::Type::ns: {
      if (a.ns_ptr() == b.ns_ptr()) return true;
      const Dict &x = a.ns_ptr()->attrs, &y = b.ns_ptr()->attrs;  // Jinja's Namespace compares its attributes
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.items()) {
        const Value* w = y.find(k);
        if (!w || !equals(v, *w)) return false;
      }
      return true;
    }
    default: return a.identity() == b.identity();
  }
}

/// Python's a < b, <=, >, >= as -1/0/1 of a three-way comparison; throws TemplateError for types Python
/// cannot order ("'<' not supported between instances of 'int' and 'str'"). `op` names the operator.
inline int compare(const Value& a, const Value& b, std::string_view op) {
  auto fail = [&]() -> int {
    throw TemplateError("'" + std::string(op) + "' not supported between instances of '" + a.type_name() + "' and '" +
                        b.type_name() + "'");
  };
  charge_work(1);
  if (a.is_undefined()) throw TemplateError(a.undefined_hint());
  if (b.is_undefined()) throw TemplateError(b.undefined_hint());
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    const int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    charge_bytes(std::min(a.str().size(), b.str().size()));
    const int c = a.str().compare(b.str());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple() && !a.is_iterator() && !b.is_iterator()) {
    const auto &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i])) continue;
      return compare(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  return fail();
}

/// Does `v` hold any tainted string (deep, keys included)?
inline bool contains_taint(const Value& v) {
  charge_work(1);
  switch (v.type()) {
    case Value::Type::string: return v.str_ptr()->is_tainted();
    case Value::Type::list:
      for (const auto& x : v.items())
        if (contains_taint(x)) return true;
      return false;
    case Value::Type::dict:
      for (const auto& [k, x] : v.dict_ptr()->items())
        if (contains_taint(k) || contains_taint(x)) return true;
      return false;
    case Value::Type::ns:
      for (const auto& [k, x] : v.ns_ptr()->attrs.items())
        if (contains_taint(x)) return true;
      return false;
    default: return false;
  }
}

inline void repr_into(std::string& out, const Value& v);
inline std::string repr(const Value& v) {
  std::string out;
  repr_into(out, v);
  return out;
}

/// Python's str(x) as Jinja prints it ({{ x }}): undefined is "", None "None", True "True", floats as
/// repr, containers as their repr.
inline std::string to_display(const Value& v) {
  switch (v.type()) {
    case Value::Type::undefined: return "";
    case Value::Type::string: return v.str();
    default: return repr(v);
  }
}

/// Python's repr(x), appended to `out` (bounded by kMaxOutputBytes and the work budget).
inline void repr_into(std::string& out, const Value& v) {
  charge_work(1);
  check_built_size(out.size());
  switch (v.type()) {
    case Value::Type::undefined: out += "Undefined"; return;
    case Value::Type::none: out += "None"; return;
    case Value::Type::boolean: out += v.as_bool() ? "True" : "False"; return;
    case Value::Type::integer: out += int_to_str(v.as_int()); return;
    case Value::Type::floating: out += float_repr(v.as_double()); return;
    case Value::Type::string:
      charge_bytes(v.str().size());
      out += py_repr_string(v.str());
      return;
    case Value::Type::list: {
      if (v.is_iterator()) {
        out += "<generator object>";
        return;
      }
      out += v.is_tuple() ? "(" : "[";
      const auto& it = v.items();
      for (size_t i = 0; i < it.size(); ++i) {
        if (i) out += ", ";
        repr_into(out, it[i]);
      }
      if (v.is_tuple() && it.size() == 1) out += ",";
      out += v.is_tuple() ? ")" : "]";
      return;
    }
    case Value::Type::dict:
    case Value::Type::ns: {
      const bool ns = v.is_namespace();
      out += ns ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, x] : (ns ? v.ns_ptr()->attrs : *v.dict_ptr()).items()) {
        if (!first) out += ", ";
        first = false;
        repr_into(out, k);
        out += ": ";
        repr_into(out, x);
      }
      out += ns ? "}>" : "}";
      return;
    }
    case Value::Type::function: out += "<function " + v.fn().name + ">"; return;
  }
}

/// Options of HF's tojson filter (json.dumps with ensure_ascii=False).
struct JsonOptions {
  std::optional<std::string> indent;  // None: one line; a number of spaces or a string per level
  std::string item_separator = ", ", key_separator = ": ";
  bool sort_keys = false;
};

/// json.dumps(v) as HF's tojson override computes it. Undefined, callables and namespaces are not JSON
/// serializable (TemplateError, as in Python).
inline void to_json_into(std::string& out, const Value& v, const JsonOptions& o, int depth) {
  if (depth > 200) throw TemplateError("tojson: value nested too deeply");
  charge_work(1);
  check_built_size(out.size());
  auto newline = [&](int d) {
    out += '\n';
    for (int i = 0; i < d; ++i) out += *o.indent;
  };
  switch (v.type()) {
    case Value::Type::none: out += "null"; return;
    case Value::Type::boolean: out += v.as_bool() ? "true" : "false"; return;
    case Value::Type::integer: out += int_to_str(v.as_int()); return;
    case Value::Type::floating: {
      const double d = v.as_double();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
      else out += float_repr(d);
      return;
    }
    case Value::Type::string:
      charge_bytes(v.str().size());
      json_escape_into(out, v.str());
      return;
    case Value::Type::list: {
      if (v.is_iterator()) throw TemplateError("Object of type generator is not JSON serializable");
      const auto& it = v.items();
      if (it.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < it.size(); ++i) {
        if (i) out += o.item_separator;
        if (o.indent) newline(depth + 1);
        to_json_into(out, it[i], o, depth + 1);
      }
      if (o.indent) newline(depth);
      out += ']';
      return;
    }
    case Value::Type::dict: {
      const Dict& d = *v.dict_ptr();
      if (d.empty()) {
        out += "{}";
        return;
      }
      // JSON keys are strings: numbers, bools and None are converted as json.dumps does.
      std::vector<std::pair<std::string, const Value*>> entries;
      for (const auto& [k, x] : d.items()) {
        std::string key;
        switch (k.type()) {
          case Value::Type::string: key = k.str(); break;
          case Value::Type::none: key = "null"; break;
          case Value::Type::boolean: key = k.as_bool() ? "true" : "false"; break;
          case Value::Type::integer: key = int_to_str(k.as_int()); break;
          case Value::Type::floating: key = float_repr(k.as_double()); break;
          default: throw TemplateError("tojson: keys must be str, int, float, bool or None, not " + k.type_name());
        }
        entries.emplace_back(std::move(key), &x);
      }
      if (o.sort_keys)
        std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += o.item_separator;
        if (o.indent) newline(depth + 1);
        json_escape_into(out, entries[i].first);
        out += o.key_separator;
        to_json_into(out, *entries[i].second, o, depth + 1);
      }
      if (o.indent) newline(depth);
      out += '}';
      return;
    }
    default:
      throw TemplateError("Object of type " + std::string(v.is_undefined() ? "Undefined" : v.type_name()) +
                          " is not JSON serializable");
  }
}

}  // namespace dots1::jinja
