// dots1/tokenizer/jinja/builtins.hpp — what a chat template can call: Jinja's filters and tests, the
// Python str/dict/list methods the sandbox allows, and the globals HF installs (range, dict, namespace,
// raise_exception, strftime_now). Each follows jinja2/filters.py, jinja2/tests.py or CPython for the
// argument names, defaults and results; see the README for the list and the documented differences
// (64-bit integers; Unicode simple case mapping, except ß).
//
// Included at the end of interpreter.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <string>
#include <vector>

#include "dots1/tokenizer/jinja/interpreter.hpp"

namespace dots1::jinja {

namespace detail {

/// Binds positional and keyword arguments to a Python signature (names in order).
inline std::vector<std::optional<Value>> bind(const std::string& fname, const CallArgs& a, std::initializer_list<const char*> names) {
  std::vector<std::optional<Value>> out(names.size());
  if (a.positional.size() > names.size())
    Interpreter::fail(fname + "() takes at most " + std::to_string(names.size()) + " argument(s) (" + std::to_string(a.positional.size()) + " given)");
  for (size_t i = 0; i < a.positional.size(); ++i) out[i] = a.positional[i];
  for (const auto& [k, v] : a.keyword) {
    size_t i = 0;
    for (const char* n : names) {
      if (k == n) break;
      ++i;
    }
    if (i == names.size()) Interpreter::fail(fname + "() got an unexpected keyword argument '" + k + "'");
    if (out[i]) Interpreter::fail(fname + "() got multiple values for argument '" + k + "'");
    out[i] = v;
  }
  return out;
}

inline bool given(const std::optional<Value>& v) { return v && !v->is_none(); }

inline int64_t int_arg(const std::optional<Value>& v, int64_t dflt, const std::string& what) {
  if (!v || v->is_none()) return dflt;
  if (!v->is_integral()) Interpreter::fail(what + " must be an integer, not " + v->type_name());
  return v->as_int();
}

inline const std::string& str_arg(const std::optional<Value>& v, const std::string& what) {
  if (!v || !v->is_string()) Interpreter::fail(what + " must be a string" + (v ? ", not " + v->type_name() : std::string()));
  return v->str();
}

// ---- case mapping (Unicode simple mappings via utf8proc; ß upper-cases to SS as in Python)
inline void append_upper(std::string& out, char32_t c) {
  if (c == 0xDF) {
    out += "SS";
    return;
  }
  tok::utf8_append(out, static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))));
}
inline void append_lower(std::string& out, char32_t c) {
  tok::utf8_append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
}
inline void append_title(std::string& out, char32_t c) {
  if (c == 0xDF) {
    out += "Ss";
    return;
  }
  tok::utf8_append(out, static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(c))));
}
inline bool is_cased(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}
inline bool is_upper_cp(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_LU || utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_LT; }
inline bool is_lower_cp(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_LL; }
inline bool is_alpha_cp(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT || cat == UTF8PROC_CATEGORY_LM ||
         cat == UTF8PROC_CATEGORY_LO;
}
inline bool is_decimal_cp(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_ND; }
inline bool is_numeric_cp(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}
inline bool is_word_cp(char32_t c) { return c == '_' || is_alpha_cp(c) || is_numeric_cp(c); }

inline std::string py_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) append_upper(out, tok::utf8_next(s, i));
  return out;
}
inline std::string py_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) append_lower(out, tok::utf8_next(s, i));
  return out;
}
inline std::string py_swapcase(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const char32_t c = tok::utf8_next(s, i);
    if (is_upper_cp(c)) append_lower(out, c);
    else if (is_lower_cp(c)) append_upper(out, c);
    else tok::utf8_append(out, c);
  }
  return out;
}
/// str.capitalize(): the first character title-cased, the rest lower-cased.
inline std::string py_capitalize(std::string_view s) {
  std::string out;
  size_t i = 0;
  bool first = true;
  while (i < s.size()) {
    const char32_t c = tok::utf8_next(s, i);
    if (first) append_title(out, c);
    else append_lower(out, c);
    first = false;
  }
  return out;
}
/// str.title(): a cased character after an uncased one is title-cased, after a cased one lower-cased.
inline std::string py_title(std::string_view s) {
  std::string out;
  size_t i = 0;
  bool prev_cased = false;
  while (i < s.size()) {
    const char32_t c = tok::utf8_next(s, i);
    if (prev_cased) append_lower(out, c);
    else append_title(out, c);
    prev_cased = is_cased(c);
  }
  return out;
}
/// Jinja's title filter: words split at runs of whitespace and -({[< ; each word's first character
/// upper-cased, the rest lower-cased.
inline std::string jinja_title(std::string_view s) {
  std::string out;
  size_t i = 0;
  bool word_start = true;
  while (i < s.size()) {
    const char32_t c = tok::utf8_next(s, i);
    const bool sep = py_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) {
      tok::utf8_append(out, c);
      word_start = true;
    } else {
      if (word_start) append_upper(out, c);
      else append_lower(out, c);
      word_start = false;
    }
  }
  return out;
}

/// Python's str.isX() over all characters (false for the empty string).
template <class Pred>
inline bool all_of_cps(std::string_view s, Pred p) {
  if (s.empty()) return false;
  size_t i = 0;
  while (i < s.size())
    if (!p(tok::utf8_next(s, i))) return false;
  return true;
}
inline bool py_islower(std::string_view s) {
  bool cased = false;
  size_t i = 0;
  while (i < s.size()) {
    const char32_t c = tok::utf8_next(s, i);
    if (is_upper_cp(c)) return false;
    if (is_lower_cp(c)) cased = true;
  }
  return cased;
}
inline bool py_isupper(std::string_view s) {
  bool cased = false;
  size_t i = 0;
  while (i < s.size()) {
    const char32_t c = tok::utf8_next(s, i);
    if (is_lower_cp(c)) return false;
    if (is_upper_cp(c)) cased = true;
  }
  return cased;
}

/// Byte offset of code point index `cp` (Python index semantics already applied).
inline size_t byte_at(std::string_view s, int64_t cp) {
  size_t i = 0;
  for (int64_t k = 0; k < cp && i < s.size(); ++k) i += static_cast<size_t>(tok::utf8_len(static_cast<unsigned char>(s[i])));
  return i;
}

/// Python's optional start/end arguments of find/count/startswith: the byte range they select.
inline std::pair<size_t, size_t> sub_range(std::string_view s, const std::optional<Value>& start, const std::optional<Value>& end) {
  const int64_t n = static_cast<int64_t>(cp_count(s));
  auto adj = [&](const std::optional<Value>& v, int64_t dflt) {
    if (!v || v->is_none()) return dflt;
    if (!v->is_integral()) Interpreter::fail("slice indices must be integers or None");
    int64_t x = v->as_int();
    if (x < 0) x = std::max<int64_t>(0, x + n);
    return std::min(x, n);
  };
  const int64_t b = adj(start, 0), e = adj(end, n);
  if (b > e) return {1, 0};  // empty, and nothing matches
  return {byte_at(s, b), byte_at(s, e)};
}

/// The characters str.strip(chars) removes.
struct StripSet {
  bool whitespace = true;
  std::u32string chars;
  bool has(char32_t c) const { return whitespace ? py_isspace(c) : chars.find(c) != std::u32string::npos; }
};

inline StripSet strip_set(const std::optional<Value>& chars, const char* fname) {
  StripSet s;
  if (chars && !chars->is_none()) {
    if (chars->is_undefined()) {  // Jinja passes Undefined through: str.strip(Undefined) is a TypeError
      Interpreter::fail(std::string(fname) + " arg must be None or str");
    }
    if (!chars->is_string()) Interpreter::fail(std::string(fname) + " arg must be None or str");
    s.whitespace = false;
    s.chars = to_u32(chars->str());
  }
  return s;
}

}  // namespace detail

// ------------------------------------------------------------------------------------------------
// Attribute and item access

namespace detail {
inline const std::unordered_set<std::string>& str_methods() {
  static const std::unordered_set<std::string> m = {
      "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "upper", "lower", "title",
      "capitalize", "swapcase", "casefold", "replace", "find", "rfind", "index", "rindex", "count", "join", "format",
      "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower", "isnumeric", "isdecimal", "istitle", "zfill",
      "center", "ljust", "rjust", "removeprefix", "removesuffix", "partition", "rpartition"};
  return m;
}
inline const std::unordered_set<std::string>& dict_methods() {
  static const std::unordered_set<std::string> m = {"items", "keys", "values", "get", "copy"};
  return m;
}
inline const std::unordered_set<std::string>& dict_mutators() {
  static const std::unordered_set<std::string> m = {"clear", "pop", "popitem", "setdefault", "update"};
  return m;
}
inline const std::unordered_set<std::string>& list_methods() {
  static const std::unordered_set<std::string> m = {"index", "count", "copy"};
  return m;
}
inline const std::unordered_set<std::string>& list_mutators() {
  static const std::unordered_set<std::string> m = {"append", "clear", "pop", "reverse", "insert", "sort", "extend", "remove"};
  return m;
}
inline std::string object_type_repr(const Value& v) {
  if (v.is_none()) return "None";
  return v.type_name() + " object";
}
inline Value unsafe(const Value& obj, const std::string& name) {
  return Value::undefined("access to attribute '" + name + "' of '" + obj.type_name() + "' object is unsafe.", true);
}
Value str_method(Interpreter& in, const Value& self, const std::string& name, CallArgs& a);
Value dict_method(Interpreter& in, const Value& self, const std::string& name, CallArgs& a);
Value list_method(Interpreter& in, const Value& self, const std::string& name, CallArgs& a);
}  // namespace detail

inline Value Interpreter::attribute_only(const Value& obj, const std::string& name) {
  using namespace detail;
  if (obj.is_undefined()) fail(obj.undefined_hint());
  if (!name.empty() && name[0] == '_') return unsafe(obj, name);
  auto bound = [&](auto method) {
    Value self = obj;
    return Value::function(obj.type_name() + "." + name, [self, name, method](Interpreter& in, CallArgs& a) { return method(in, self, name, a); });
  };
  switch (obj.type()) {
    case Value::Type::string:
      if (str_methods().count(name)) return bound(str_method);
      break;
    case Value::Type::dict:
      if (dict_methods().count(name)) return bound(dict_method);
      if (dict_mutators().count(name)) return unsafe(obj, name);
      break;
    case Value::Type::list:
      if (obj.is_iterator()) break;  // a generator has no list methods
      if (list_methods().count(name)) return bound(list_method);
      if (list_mutators().count(name)) return unsafe(obj, name);
      break;
    case Value::Type::ns:
      if (const Value* v = obj.ns_ptr()->attrs.find(name)) return *v;
      break;
    default: break;
  }
  return Value::undefined("'" + object_type_repr(obj) + "' has no attribute '" + name + "'");
}

inline Value Interpreter::getattr(const Value& obj, const std::string& name) {
  if (obj.is_dict() && (name.empty() || name[0] != '_') && !detail::dict_methods().count(name) && !detail::dict_mutators().count(name)) {
    if (const Value* v = obj.dict_ptr()->find(name)) return *v;
  }
  return attribute_only(obj, name);
}

inline Value Interpreter::getitem(const Value& obj, const Value& key) {
  using namespace detail;
  if (obj.is_undefined()) fail(obj.undefined_hint());
  auto missing = [&]() {
    if (key.is_string()) return Value::undefined("'" + object_type_repr(obj) + "' has no attribute '" + key.str() + "'");
    return Value::undefined("'" + object_type_repr(obj) + "' has no element " + repr(key));
  };
  if (obj.is_iterator()) return key.is_string() ? attribute_only(obj, key.str()) : missing();
  switch (obj.type()) {
    case Value::Type::dict:
      if (const Value* v = obj.dict_ptr()->find(key)) return *v;
      if (!Dict::key_of(key)) return missing();
      break;
    case Value::Type::list:
    case Value::Type::string:
      if (key.is_integral()) {
        int64_t i = key.as_int();
        if (obj.is_list()) {
          const int64_t n = static_cast<int64_t>(obj.items().size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return missing();
          return obj.items()[static_cast<size_t>(i)];
        }
        const std::string& s = obj.str();
        if (is_ascii(s)) {
          const int64_t n = static_cast<int64_t>(s.size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return missing();
          return substr(obj, static_cast<size_t>(i), 1);
        }
        const auto off = cp_offsets(s);
        const int64_t n = static_cast<int64_t>(off.size()) - 1;
        if (i < 0) i += n;
        if (i < 0 || i >= n) return missing();
        return substr(obj, off[static_cast<size_t>(i)], off[static_cast<size_t>(i) + 1] - off[static_cast<size_t>(i)]);
      }
      break;
    default: break;
  }
  if (key.is_string()) {
    Value v = attribute_only(obj, key.str());
    if (v.is_undefined() && !v.undefined_is_unsafe()) return missing();
    return v;
  }
  return missing();
}

// ------------------------------------------------------------------------------------------------
// Shared helpers of the filters

namespace detail {

/// Jinja's make_attrgetter: "a.b.0" looked up item by item (numbers as integer indices).
inline Value lookup_path(Interpreter& in, const Value& item, const std::string& path) {
  Value v = item;
  size_t pos = 0;
  while (true) {
    const size_t dot = path.find('.', pos);
    const std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = in.getitem(v, digits ? Value::integer(std::stoll(part)) : Value::string(part));
    if (dot == std::string::npos) return v;
    pos = dot + 1;
  }
}

inline Value attr_key(Interpreter& in, const Value& item, const std::optional<Value>& attribute, bool ignore_case) {
  Value v = item;
  if (given(attribute)) {
    if (attribute->is_integral()) v = in.getitem(item, *attribute);
    else v = lookup_path(in, item, str_arg(attribute, "attribute"));
  }
  if (ignore_case && v.is_string()) return in.make_str(py_lower(v.str()));
  return v;
}

/// A key for sort/max/min with several comma-separated attributes.
inline std::vector<Value> multi_key(Interpreter& in, const Value& item, const std::optional<Value>& attribute, bool ignore_case) {
  if (given(attribute) && attribute->is_string() && attribute->str().find(',') != std::string::npos) {
    std::vector<Value> keys;
    const std::string& a = attribute->str();
    size_t pos = 0;
    while (true) {
      const size_t c = a.find(',', pos);
      std::string part = a.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
      keys.push_back(attr_key(in, item, Value::string(part), ignore_case));
      if (c == std::string::npos) break;
      pos = c + 1;
    }
    return keys;
  }
  return {attr_key(in, item, attribute, ignore_case)};
}

inline int compare_keys(const std::vector<Value>& a, const std::vector<Value>& b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (equals(a[i], b[i])) continue;
    return compare(a[i], b[i], "<");
  }
  return 0;
}

inline std::string py_split_join_error(const Value& v, size_t i) {
  return "sequence item " + std::to_string(i) + ": expected str instance, " + v.type_name() + " found";
}

/// Python's "%" string formatting for the format filter: %s %r %d %i %f %F %e %E %g %G %x %X %o %c %%,
/// with flags, width and precision.
inline std::string percent_format(const std::string& fmt, const std::vector<Value>& args, const Dict* kwargs) {
  std::string out;
  size_t ai = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) Interpreter::fail("incomplete format");
    if (fmt[i] == '%') {
      out += '%';
      continue;
    }
    const Value* arg = nullptr;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos) Interpreter::fail("incomplete format key");
      const std::string key = fmt.substr(i + 1, close - i - 1);
      if (!kwargs) Interpreter::fail("format requires a mapping");
      arg = kwargs->find(key);
      if (!arg) Interpreter::fail("format: missing key '" + key + "'");
      i = close + 1;
    }
    std::string spec = "%";
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) spec += fmt[i++];
    while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) spec += fmt[i++];
    if (i < fmt.size() && fmt[i] == '.') {
      spec += fmt[i++];
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) spec += fmt[i++];
    }
    if (i >= fmt.size()) Interpreter::fail("incomplete format");
    const char conv = fmt[i];
    if (!arg) {
      if (ai >= args.size()) Interpreter::fail("not enough arguments for format string");
      arg = &args[ai++];
    }
    char buf[512];
    switch (conv) {
      case 's':
      case 'r': {
        const std::string s = conv == 's' ? to_display(*arg) : repr(*arg);
        std::snprintf(buf, sizeof buf, (spec + "s").c_str(), "");
        // width/precision on strings: applied by hand (snprintf counts bytes, Python code points)
        std::string flags = spec.substr(1);
        bool left = flags.find('-') != std::string::npos;
        size_t dot = flags.find('.');
        std::string width_s = flags.substr(0, dot);
        width_s.erase(std::remove_if(width_s.begin(), width_s.end(), [](char c) { return !std::isdigit(static_cast<unsigned char>(c)); }), width_s.end());
        std::string body = s;
        if (dot != std::string::npos) {
          const size_t prec = static_cast<size_t>(std::atoi(flags.c_str() + dot + 1));
          body = std::string(body.substr(0, byte_at(body, static_cast<int64_t>(prec))));
        }
        const size_t width = width_s.empty() ? 0 : static_cast<size_t>(std::atoi(width_s.c_str()));
        const size_t len = cp_count(body);
        if (len < width) body = left ? body + std::string(width - len, ' ') : std::string(width - len, ' ') + body;
        out += body;
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o':
      case 'c': {
        if (!arg->is_number()) Interpreter::fail(std::string("%") + conv + " format: a number is required, not " + arg->type_name());
        const long long v = arg->is_float() ? static_cast<long long>(arg->as_double()) : static_cast<long long>(arg->as_int());
        if (conv == 'c') {
          tok::utf8_append(out, static_cast<char32_t>(v));
          break;
        }
        std::snprintf(buf, sizeof buf, (spec + "ll" + (conv == 'i' ? 'd' : conv)).c_str(), v);
        out += buf;
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (!arg->is_number()) Interpreter::fail(std::string("%") + conv + " format: a real number is required, not " + arg->type_name());
        std::snprintf(buf, sizeof buf, (spec + conv).c_str(), arg->as_double());
        out += buf;
        break;
      }
      default: Interpreter::fail(std::string("unsupported format character '") + conv + "'");
    }
  }
  if (!kwargs && ai < args.size()) Interpreter::fail("not all arguments converted during string formatting");
  return out;
}

/// str.format with {} / {0} / {name} fields and !s / !r conversions; format specs are not supported.
inline std::string brace_format(const std::string& fmt, const CallArgs& a) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '{' && i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    if (c == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') {
      out += '}';
      ++i;
      continue;
    }
    if (c == '}') Interpreter::fail("Single '}' encountered in format string");
    if (c != '{') {
      out += c;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) Interpreter::fail("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    char conversion = 's';
    if (const size_t bang = field.find('!'); bang != std::string::npos) {
      conversion = bang + 1 < field.size() ? field[bang + 1] : 's';
      field = field.substr(0, bang);
    }
    if (field.find(':') != std::string::npos) Interpreter::fail("str.format with a format spec is not supported by dots1");
    const Value* v = nullptr;
    if (field.empty()) {
      if (auto_index >= a.positional.size()) Interpreter::fail("Replacement index " + std::to_string(auto_index) + " out of range for positional args tuple");
      v = &a.positional[auto_index++];
    } else if (std::all_of(field.begin(), field.end(), [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); })) {
      const size_t k = static_cast<size_t>(std::stoul(field));
      if (k >= a.positional.size()) Interpreter::fail("Replacement index " + field + " out of range for positional args tuple");
      v = &a.positional[k];
    } else {
      for (const auto& [name, value] : a.keyword)
        if (name == field) v = &value;
      if (!v) Interpreter::fail("str.format: missing key '" + field + "'");
    }
    out += conversion == 'r' ? repr(*v) : to_display(*v);
  }
  return out;
}

/// Python's int(str, base) (whitespace, sign, underscores, and 0x/0o/0b prefixes for a matching base).
inline std::optional<int64_t> parse_py_int(std::string_view s, int base) {
  size_t b = 0, e = s.size();
  while (b < e && py_isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && py_isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  s = s.substr(b, e - b);
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.size() > 2 && s[0] == '0') {
    const char p = static_cast<char>(std::tolower(static_cast<unsigned char>(s[1])));
    if ((p == 'x' && base == 16) || (p == 'o' && base == 8) || (p == 'b' && base == 2)) {
      s.remove_prefix(2);
      if (!s.empty() && s[0] == '_') s.remove_prefix(1);
    }
  }
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  bool prev_us = true;
  for (char c : s) {
    if (c == '_') {
      if (prev_us) return std::nullopt;
      prev_us = true;
      continue;
    }
    prev_us = false;
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'z') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'Z') d = c - 'A' + 10;
    else return std::nullopt;
    if (d >= base) return std::nullopt;
    if (v > (static_cast<uint64_t>(INT64_MAX) - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base))
      Interpreter::fail("integer overflow (dots1 templates use 64-bit integers)");
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  if (prev_us) return std::nullopt;
  return neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
}

/// Python's float(str).
inline std::optional<double> parse_py_float(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && py_isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && py_isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  std::string t(s.substr(b, e - b));
  std::string low = t;
  for (char& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string_view body = low;
  bool neg = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    neg = body[0] == '-';
    body.remove_prefix(1);
  }
  if (body == "inf" || body == "infinity") return neg ? -INFINITY : INFINITY;
  if (body == "nan") return NAN;
  std::string clean;
  char prev = 0;
  for (char c : t) {
    if (c == '_') {
      if (!std::isdigit(static_cast<unsigned char>(prev))) return std::nullopt;
      prev = c;
      continue;
    }
    if (prev == '_' && !std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) return std::nullopt;
    clean += c;
    prev = c;
  }
  if (clean.empty() || prev == '_') return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(clean.c_str(), &end);
  if (end != clean.c_str() + clean.size()) return std::nullopt;
  return v;
}

/// Python's round(x, ndigits) for a float (correctly rounded, ties to even).
inline double py_round(double x, int64_t nd) {
  if (!std::isfinite(x)) return x;
  if (nd >= 0) {
    if (nd > 330) return x;
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(nd), x);
    return std::strtod(buf, nullptr);
  }
  const double p = std::pow(10.0, static_cast<double>(-nd));
  return std::nearbyint(x / p) * p;
}

}  // namespace detail

// ------------------------------------------------------------------------------------------------
// Methods

inline Value detail::str_method(Interpreter& in, const Value& self, const std::string& name, CallArgs& a) {
  const std::string& s = self.str();
  const bool taint = self.str_ptr()->is_tainted();
  const std::string fname = "str." + name;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    auto p = bind(fname, a, {"chars"});
    const StripSet set = strip_set(p[0], name.c_str());
    size_t b = 0, e = s.size();
    if (name != "rstrip")
      while (b < e) {
        size_t j = b;
        if (!set.has(tok::utf8_next(s, j))) break;
        b = j;
      }
    if (name != "lstrip")
      while (e > b) {
        size_t j = e;
        if (!set.has(tok::utf8_prev(s, j))) break;
        e = j;
      }
    return in.substr(self, b, e - b);
  }
  if (name == "split" || name == "rsplit") {
    auto p = bind(fname, a, {"sep", "maxsplit"});
    int64_t maxsplit = int_arg(p[1], -1, "maxsplit");
    std::vector<std::pair<size_t, size_t>> parts;  // byte ranges
    if (!given(p[0])) {
      // runs of whitespace; leading and trailing whitespace ignored
      std::vector<std::pair<size_t, size_t>> words;
      size_t i = 0;
      while (i < s.size()) {
        size_t j = i;
        if (py_isspace(tok::utf8_next(s, j))) {
          i = j;
          continue;
        }
        const size_t start = i;
        while (i < s.size()) {
          size_t k = i;
          if (py_isspace(tok::utf8_next(s, k))) break;
          i = k;
        }
        words.emplace_back(start, i);
      }
      if (maxsplit < 0 || static_cast<size_t>(maxsplit) + 1 >= words.size()) {
        parts = words;
      } else if (name == "split") {
        for (int64_t k = 0; k < maxsplit; ++k) parts.push_back(words[static_cast<size_t>(k)]);
        // the rest: from the next word to the end of the string (its trailing whitespace stays)
        parts.emplace_back(words[static_cast<size_t>(maxsplit)].first, s.size());
      } else {
        const size_t keep = words.size() - static_cast<size_t>(maxsplit);
        parts.emplace_back(0, words[keep - 1].second);  // the rest keeps its leading whitespace
        for (size_t k = keep; k < words.size(); ++k) parts.push_back(words[k]);
      }
    } else {
      const std::string& sep = str_arg(p[0], "sep");
      if (sep.empty()) Interpreter::fail("empty separator");
      std::vector<size_t> hits;
      if (name == "split") {
        size_t pos = 0;
        while (maxsplit < 0 || static_cast<int64_t>(hits.size()) < maxsplit) {
          const size_t f = s.find(sep, pos);
          if (f == std::string::npos) break;
          hits.push_back(f);
          pos = f + sep.size();
        }
      } else {
        size_t end = s.size();
        while (maxsplit < 0 || static_cast<int64_t>(hits.size()) < maxsplit) {
          if (end < sep.size()) break;
          const size_t f = s.rfind(sep, end - sep.size());
          if (f == std::string::npos) break;
          hits.push_back(f);
          if (f == 0) break;
          end = f;
        }
        std::reverse(hits.begin(), hits.end());
      }
      size_t start = 0;
      for (size_t h : hits) {
        parts.emplace_back(start, h);
        start = h + sep.size();
      }
      parts.emplace_back(start, s.size());
    }
    std::vector<Value> out;
    for (auto [b, e] : parts) out.push_back(in.substr(self, b, e - b));
    return in.make_list(std::move(out));
  }
  if (name == "splitlines") {
    auto p = bind(fname, a, {"keepends"});
    const bool keep = p[0] && truthy(*p[0]);
    std::vector<Value> out;
    size_t i = 0, start = 0;
    while (i < s.size()) {
      size_t j = i;
      const char32_t c = tok::utf8_next(s, j);
      if (py_is_linebreak(c)) {
        size_t end_incl = j;
        if (c == '\r' && j < s.size() && s[j] == '\n') end_incl = j + 1;
        out.push_back(in.substr(self, start, (keep ? end_incl : i) - start));
        start = i = end_incl;
      } else {
        i = j;
      }
    }
    if (start < s.size()) out.push_back(in.substr(self, start, s.size() - start));
    return in.make_list(std::move(out));
  }
  if (name == "startswith" || name == "endswith") {
    auto p = bind(fname, a, {"prefix", "start", "end"});
    if (!p[0]) Interpreter::fail(fname + "() takes at least 1 argument (0 given)");
    auto [b, e] = sub_range(s, p[1], p[2]);
    if (b > e) return Value::boolean(false);
    const std::string_view part = std::string_view(s).substr(b, e - b);
    auto test = [&](const Value& x) {
      charge_work(1);
      if (!x.is_string()) Interpreter::fail(fname + " first arg must be str or a tuple of str, not " + x.type_name());
      const std::string& t = x.str();
      if (t.size() > part.size()) return false;
      return name == "startswith" ? part.substr(0, t.size()) == t : part.substr(part.size() - t.size()) == t;
    };
    if (p[0]->is_list() && p[0]->is_tuple()) {
      for (const auto& x : p[0]->items())
        if (test(x)) return Value::boolean(true);
      return Value::boolean(false);
    }
    return Value::boolean(test(*p[0]));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" || name == "swapcase" || name == "casefold") {
    bind(fname, a, {});
    std::string r = name == "upper" ? py_upper(s)
                    : (name == "lower" || name == "casefold") ? py_lower(s)
                    : name == "title" ? py_title(s)
                    : name == "capitalize" ? py_capitalize(s)
                                          : py_swapcase(s);
    return in.derived_str(std::move(r), taint);
  }
  if (name == "replace") {
    auto p = bind(fname, a, {"old", "new", "count"});
    const std::string& old = str_arg(p[0], "replace() argument 1");
    const std::string& neu = str_arg(p[1], "replace() argument 2");
    int64_t count = int_arg(p[2], -1, "count");
    const bool t = taint || p[1]->str_ptr()->is_tainted();
    std::string out;
    if (old.empty()) {
      // inserts `neu` before every character and at the end (up to count times)
      const auto off = cp_offsets(s);
      int64_t done = 0;
      for (size_t k = 0; k + 1 < off.size(); ++k) {
        if (count < 0 || done < count) {
          out += neu;
          ++done;
        }
        out.append(s, off[k], off[k + 1] - off[k]);
        Interpreter::check_size(out.size(), "a string");
      }
      if (count < 0 || done < count) out += neu;
      return in.derived_str(std::move(out), t);
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
      const size_t f = s.find(old, pos);
      if (f == std::string::npos) break;
      out.append(s, pos, f - pos);
      out += neu;
      Interpreter::check_size(out.size(), "a string");
      pos = f + old.size();
      ++done;
    }
    out.append(s, pos, std::string::npos);
    return in.derived_str(std::move(out), t);
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    auto p = bind(fname, a, {"sub", "start", "end"});
    const std::string& sub = str_arg(p[0], fname + "() argument 1");
    auto [b, e] = sub_range(s, p[1], p[2]);
    if (b > e) return Value::integer(name == "count" ? 0 : -1);
    const std::string_view part = std::string_view(s).substr(b, e - b);
    charge_bytes(part.size());
    if (name == "count") {
      if (sub.empty()) return Value::integer(static_cast<int64_t>(cp_count(part)) + 1);
      int64_t n = 0;
      for (size_t pos = part.find(sub); pos != std::string_view::npos; pos = part.find(sub, pos + sub.size())) ++n;
      return Value::integer(n);
    }
    const size_t f = (name == "find" || name == "index") ? part.find(sub) : part.rfind(sub);
    if (f == std::string_view::npos) {
      if (name == "index" || name == "rindex") Interpreter::fail("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(static_cast<int64_t>(cp_count(std::string_view(s).substr(0, b + f))));
  }
  if (name == "join") {
    auto p = bind(fname, a, {"iterable"});
    if (!p[0]) Interpreter::fail("str.join() takes exactly one argument (0 given)");
    const std::vector<Value> items = in.iterate(*p[0]);
    size_t total = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) Interpreter::fail(py_split_join_error(items[i], i));
      total += items[i].str().size() + (i ? s.size() : 0);
    }
    Interpreter::check_size(total, "a joined string");
    std::string out;
    std::vector<Span> t;
    out.reserve(total);
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) {
        append_spans(t, self.str_ptr()->tainted, out.size());
        out += s;
      }
      append_spans(t, items[i].str_ptr()->tainted, out.size());
      out += items[i].str();
    }
    return in.make_str(std::move(out), std::move(t));
  }
  if (name == "format") {
    bool t = taint;
    for (const auto& v : a.positional) t = t || contains_taint(v);
    for (const auto& [k, v] : a.keyword) t = t || contains_taint(v);
    return in.derived_str(brace_format(s, a), t);
  }
  if (name.rfind("is", 0) == 0) {
    bind(fname, a, {});
    bool r = false;
    if (name == "isdigit" || name == "isdecimal") r = all_of_cps(s, is_decimal_cp);
    else if (name == "isnumeric") r = all_of_cps(s, is_numeric_cp);
    else if (name == "isalpha") r = all_of_cps(s, is_alpha_cp);
    else if (name == "isalnum") r = all_of_cps(s, [](char32_t c) { return is_alpha_cp(c) || is_numeric_cp(c); });
    else if (name == "isspace") r = all_of_cps(s, py_isspace);
    else if (name == "isupper") r = py_isupper(s);
    else if (name == "islower") r = py_islower(s);
    else if (name == "istitle") {
      bool prev_cased = false;
      r = true;
      bool cased = false;
      size_t i = 0;
      while (i < s.size()) {
        const char32_t c = tok::utf8_next(s, i);
        if (is_upper_cp(c)) {
          if (prev_cased) r = false;
          prev_cased = cased = true;
        } else if (is_lower_cp(c)) {
          if (!prev_cased) r = false;
          prev_cased = cased = true;
        } else {
          prev_cased = false;
        }
      }
      r = r && cased;
    }
    return Value::boolean(r);
  }
  if (name == "zfill" || name == "center" || name == "ljust" || name == "rjust") {
    auto p = name == "zfill" ? bind(fname, a, {"width"}) : bind(fname, a, {"width", "fillchar"});
    const int64_t width = int_arg(p[0], 0, "width");
    Interpreter::check_size(static_cast<size_t>(std::max<int64_t>(width, 0)) * 4, "a padded string");
    std::string fill = " ";
    if (name != "zfill" && p.size() > 1 && p[1]) {
      fill = str_arg(p[1], "fillchar");
      if (cp_count(fill) != 1) Interpreter::fail("The fill character must be exactly one character long");
    }
    const int64_t len = static_cast<int64_t>(cp_count(s));
    if (width <= len) return self;
    const int64_t pad = width - len;
    auto rep = [&](int64_t n) {
      std::string r;
      for (int64_t k = 0; k < n; ++k) r += fill;
      return r;
    };
    std::string out;
    if (name == "zfill") {
      size_t sign = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
      out = s.substr(0, sign) + std::string(static_cast<size_t>(pad), '0') + s.substr(sign);
    } else if (name == "ljust") {
      out = s + rep(pad);
    } else if (name == "rjust") {
      out = rep(pad) + s;
    } else {
      // CPython's center: left = pad/2 + (pad & width & 1)
      const int64_t left = pad / 2 + (pad & width & 1);
      out = rep(left) + s + rep(pad - left);
    }
    return in.derived_str(std::move(out), taint);
  }
  if (name == "removeprefix" || name == "removesuffix") {
    auto p = bind(fname, a, {"affix"});
    const std::string& x = str_arg(p[0], fname + "() argument");
    if (name == "removeprefix") return s.compare(0, x.size(), x) == 0 && x.size() <= s.size() ? in.substr(self, x.size(), s.size() - x.size()) : self;
    if (x.size() <= s.size() && s.compare(s.size() - x.size(), x.size(), x) == 0) return in.substr(self, 0, s.size() - x.size());
    return self;
  }
  if (name == "partition" || name == "rpartition") {
    auto p = bind(fname, a, {"sep"});
    const std::string& sep = str_arg(p[0], "sep");
    if (sep.empty()) Interpreter::fail("empty separator");
    const size_t f = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (f == std::string::npos) {
      if (name == "partition") return in.make_list({self, in.make_str(""), in.make_str("")}, true);
      return in.make_list({in.make_str(""), in.make_str(""), self}, true);
    }
    return in.make_list({in.substr(self, 0, f), in.substr(self, f, sep.size()), in.substr(self, f + sep.size(), s.size() - f - sep.size())}, true);
  }
  Interpreter::fail("str." + name + " is not supported");
}

inline Value detail::dict_method(Interpreter& in, const Value& self, const std::string& name, CallArgs& a) {
  const Dict& d = *self.dict_ptr();
  const std::string fname = "dict." + name;
  if (name == "items") {
    bind(fname, a, {});
    std::vector<Value> out;
    for (const auto& [k, v] : d.items()) out.push_back(in.make_list({k, v}, true));
    return in.make_list(std::move(out));
  }
  if (name == "keys" || name == "values") {
    bind(fname, a, {});
    std::vector<Value> out;
    for (const auto& [k, v] : d.items()) out.push_back(name == "keys" ? k : v);
    return in.make_list(std::move(out));
  }
  if (name == "get") {
    auto p = bind(fname, a, {"key", "default"});
    if (!p[0]) Interpreter::fail("get expected at least 1 argument, got 0");
    if (!Dict::key_of(*p[0])) Interpreter::fail("unhashable type: '" + p[0]->type_name() + "'");
    if (const Value* v = d.find(*p[0])) return *v;
    return p[1] ? *p[1] : Value::none();
  }
  if (name == "copy") {
    bind(fname, a, {});
    auto c = std::make_shared<Dict>(d);
    in.account(sizeof(Dict) + d.size() * 2 * sizeof(Value));
    return Value::dict(c);
  }
  Interpreter::fail("dict." + name + " is not supported");
}

inline Value detail::list_method(Interpreter& in, const Value& self, const std::string& name, CallArgs& a) {
  const auto& items = self.items();
  const std::string fname = std::string(self.is_tuple() ? "tuple." : "list.") + name;
  if (name == "index") {
    auto p = bind(fname, a, {"value", "start", "stop"});
    if (!p[0]) Interpreter::fail(fname + "() takes at least 1 argument (0 given)");
    for (size_t i = 0; i < items.size(); ++i)
      if (equals(items[i], *p[0])) return Value::integer(static_cast<int64_t>(i));
    Interpreter::fail(repr(*p[0]) + " is not in list");
  }
  if (name == "count") {
    auto p = bind(fname, a, {"value"});
    if (!p[0]) Interpreter::fail(fname + "() takes exactly one argument (0 given)");
    int64_t n = 0;
    for (const auto& x : items) n += equals(x, *p[0]);
    return Value::integer(n);
  }
  if (name == "copy") {
    bind(fname, a, {});
    return in.make_list(items, self.is_tuple());
  }
  Interpreter::fail(fname + " is not supported");
}

// ------------------------------------------------------------------------------------------------
// Tests

inline bool Interpreter::apply_test(const std::string& name, const Value& v, CallArgs& a) {
  using namespace detail;
  auto arg = [&](const char* what) -> Value {
    auto p = bind(name, a, {what});
    if (!p[0]) fail("test '" + name + "' needs an argument");
    return *p[0];
  };
  auto none_args = [&] { bind(name, a, {}); };
  if (name == "defined") return none_args(), !v.is_undefined();
  if (name == "undefined") return none_args(), v.is_undefined();
  if (name == "none") return none_args(), v.is_none();
  if (name == "boolean") return none_args(), v.is_bool();
  if (name == "true") return none_args(), v.is_bool() && v.as_bool();
  if (name == "false") return none_args(), v.is_bool() && !v.as_bool();
  if (name == "integer") return none_args(), v.is_int();
  if (name == "float") return none_args(), v.is_float();
  if (name == "number") return none_args(), v.is_number();
  if (name == "string") return none_args(), v.is_string();
  if (name == "mapping") return none_args(), v.is_dict();
  if (name == "iterable") return none_args(), v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return none_args(), (v.is_list() && !v.is_iterator()) || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "callable") return none_args(), v.is_function() || v.is_undefined();
  if (name == "escaped") return none_args(), v.is_string() && v.str_ptr()->markup;
  if (name == "lower") return none_args(), py_islower(to_display(v));
  if (name == "upper") return none_args(), py_isupper(to_display(v));
  if (name == "filter") return none_args(), v.is_string() && (known_filters().count(v.str()) || unsupported_filters().count(v.str()));
  if (name == "test") return none_args(), v.is_string() && known_tests().count(v.str());
  if (name == "odd" || name == "even") {
    none_args();
    if (v.is_undefined()) fail(v.undefined_hint());
    if (!v.is_number()) fail("'" + name + "' test needs a number, not " + v.type_name());
    if (v.is_float()) {
      const double r = pyfmod(v.as_double(), 2.0);
      return name == "odd" ? r == 1.0 : r == 0.0;
    }
    const int64_t r = pymod(v.as_int(), 2);
    return name == "odd" ? r == 1 : r == 0;
  }
  if (name == "divisibleby") {
    const Value n = arg("num");
    Value r = binary("%", v, n);
    return equals(r, Value::integer(0));
  }
  if (name == "sameas") {
    const Value o = arg("other");
    if (v.type() != o.type()) return false;
    if (v.identity()) return v.identity() == o.identity() || (v.is_string() && v.str() == o.str());
    return equals(v, o);
  }
  if (name == "in") return contains(arg("seq"), v);
  static const std::unordered_map<std::string, std::string> ops = {
      {"eq", "=="}, {"equalto", "=="}, {"==", "=="}, {"ne", "!="}, {"!=", "!="}, {"lt", "<"}, {"lessthan", "<"},
      {"<", "<"}, {"le", "<="}, {"<=", "<="}, {"gt", ">"}, {"greaterthan", ">"}, {">", ">"}, {"ge", ">="}, {">=", ">="}};
  if (auto it = ops.find(name); it != ops.end()) return compare_op(it->second, v, arg("other"));
  fail("no test named '" + name + "'");
}

// ------------------------------------------------------------------------------------------------
// Filters

inline Value Interpreter::apply_filter(const std::string& name, const Value& v, CallArgs& a) {
  using namespace detail;
  auto needs_value = [&] {
    if (v.is_undefined() && v.undefined_is_unsafe()) fail(v.undefined_hint());
  };
  needs_value();
  if (name == "default" || name == "d") {
    auto p = bind(name, a, {"default_value", "boolean"});
    const Value dflt = p[0] ? *p[0] : make_str("");
    const bool boolean = p[1] && truthy(*p[1]);
    if (v.is_undefined() || (boolean && !truthy(v))) return dflt;
    return v;
  }
  if (name == "length" || name == "count") {
    bind(name, a, {});
    switch (v.type()) {
      case Value::Type::string: return Value::integer(static_cast<int64_t>(cp_count(v.str())));
      case Value::Type::list:
        if (v.is_iterator()) fail("object of type 'generator' has no len()");
        return Value::integer(static_cast<int64_t>(v.items().size()));
      case Value::Type::dict: return Value::integer(static_cast<int64_t>(v.dict_ptr()->size()));
      case Value::Type::undefined: return Value::integer(0);
      default: fail("object of type '" + v.type_name() + "' has no len()");
    }
  }
  if (name == "string") {
    bind(name, a, {});
    return to_str_value(v);
  }
  if (name == "safe") {
    bind(name, a, {});
    return make_markup(to_str_value(v));
  }
  if (name == "e" || name == "escape") {
    bind(name, a, {});
    return escape(v);
  }
  if (name == "trim") {
    auto p = bind(name, a, {"chars"});
    CallArgs sa;
    if (p[0]) sa.positional.push_back(*p[0]);
    return str_method(*this, to_str_value(v), "strip", sa);
  }
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title") {
    bind(name, a, {});
    const Value s = to_str_value(v);
    std::string r = name == "upper" ? py_upper(s.str()) : name == "lower" ? py_lower(s.str()) : name == "capitalize" ? py_capitalize(s.str()) : jinja_title(s.str());
    return derived_str(std::move(r), s.str_ptr()->is_tainted());
  }
  if (name == "replace") {
    auto p = bind(name, a, {"old", "new", "count"});
    if (!p[0] || !p[1]) fail("replace() needs 'old' and 'new'");
    CallArgs ra;
    ra.positional = {to_str_value(*p[0]), to_str_value(*p[1])};
    if (given(p[2])) ra.positional.push_back(*p[2]);
    return str_method(*this, to_str_value(v), "replace", ra);
  }
  if (name == "tojson") {
    // HF's override: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    auto p = bind(name, a, {"ensure_ascii", "indent", "separators", "sort_keys"});
    JsonOptions o;
    const bool ensure_ascii = p[0] && truthy(*p[0]);
    if (given(p[1])) {
      if (p[1]->is_integral()) o.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(p[1]->as_int(), 64))), ' ');
      else if (p[1]->is_string()) o.indent = p[1]->str();
      else fail("tojson: indent must be an integer or a string");
      o.item_separator = ",";
    }
    if (given(p[2])) {
      if (!p[2]->is_list() || p[2]->items().size() != 2 || !p[2]->items()[0].is_string() || !p[2]->items()[1].is_string())
        fail("tojson: separators must be a (item_separator, key_separator) pair of strings");
      o.item_separator = p[2]->items()[0].str();
      o.key_separator = p[2]->items()[1].str();
    }
    o.sort_keys = p[3] && truthy(*p[3]);
    std::string out;
    to_json_into(out, v, o, 0);
    check_size(out.size(), "tojson's result");
    if (ensure_ascii) {
      std::string esc;
      size_t i = 0;
      while (i < out.size()) {
        const size_t start = i;
        const char32_t c = tok::utf8_next(out, i);
        if (c < 0x80) {
          esc.append(out, start, i - start);
          continue;
        }
        char b[16];
        if (c >= 0x10000) {
          const char32_t x = c - 0x10000;
          std::snprintf(b, sizeof b, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (x >> 10)), static_cast<unsigned>(0xDC00 + (x & 0x3FF)));
        } else {
          std::snprintf(b, sizeof b, "\\u%04x", static_cast<unsigned>(c));
        }
        esc += b;
      }
      out = std::move(esc);
    }
    return derived_str(std::move(out), contains_taint(v));
  }
  if (name == "join") {
    auto p = bind(name, a, {"d", "attribute"});
    std::vector<Value> items = iterate(v);
    if (given(p[1]))
      for (auto& x : items) x = attr_key(*this, x, p[1], false);
    for (auto& x : items) x = to_str_value(x);
    CallArgs ja;
    ja.positional.push_back(make_list(std::move(items)));
    return str_method(*this, p[0] ? to_str_value(*p[0]) : make_str(""), "join", ja);
  }
  if (name == "items") {
    bind(name, a, {});
    if (v.is_undefined()) return make_iterator({});
    if (!v.is_dict()) fail("Can only get item pairs from a mapping.");
    CallArgs none;
    return make_iterator(dict_method(*this, v, "items", none).items());
  }
  if (name == "list") {
    bind(name, a, {});
    return make_list(iterate(v));
  }
  if (name == "first" || name == "last") {
    bind(name, a, {});
    if (name == "last" && v.is_undefined()) fail(v.undefined_hint());
    if (name == "last" && v.is_iterator()) fail("'generator' object is not reversible");
    if (name == "first" && v.is_iterator()) {  // next(iter(gen)): takes one item
      List& l = *v.list_ptr();
      if (l.consumed >= l.items.size()) return Value::undefined("No first item, sequence was empty.");
      return l.items[l.consumed++];
    }
    std::vector<Value> items = iterate(v);
    if (items.empty()) return Value::undefined(std::string("No ") + name + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    bind(name, a, {});
    if (v.is_string()) {
      CallArgs none;
      return slice(v, Value::none(), Value::none(), Value::integer(-1));
    }
    const bool reversible = (v.is_list() && !v.is_iterator()) || v.is_dict();
    std::vector<Value> items = iterate(v);
    std::reverse(items.begin(), items.end());
    return reversible ? make_iterator(std::move(items)) : make_list(std::move(items));  // reversed(x), else list(x)[::-1]
  }
  if (name == "sort") {
    auto p = bind(name, a, {"reverse", "case_sensitive", "attribute"});
    const bool rev = p[0] && truthy(*p[0]);
    const bool ignore_case = !(p[1] && truthy(*p[1]));
    std::vector<Value> items = iterate(v);
    std::vector<std::pair<std::vector<Value>, size_t>> keyed;
    account(items.size() * (sizeof(keyed[0]) + sizeof(Value)));
    for (size_t i = 0; i < items.size(); ++i) keyed.emplace_back(multi_key(*this, items[i], p[2], ignore_case), i);
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
      return rev ? compare_keys(y.first, x.first) < 0 : compare_keys(x.first, y.first) < 0;
    });
    std::vector<Value> out;
    for (auto& [k, i] : keyed) out.push_back(items[i]);
    return make_list(std::move(out));
  }
  if (name == "dictsort") {
    auto p = bind(name, a, {"case_sensitive", "by", "reverse"});
    if (!v.is_dict()) fail("dictsort: expected a mapping, got " + v.type_name());
    const bool ignore_case = !(p[0] && truthy(*p[0]));
    const std::string by = p[1] ? str_arg(p[1], "by") : "key";
    if (by != "key" && by != "value") fail("You can only sort by either 'key' or 'value'");
    const bool rev = p[2] && truthy(*p[2]);
    std::vector<std::pair<Value, Value>> items(v.dict_ptr()->items().begin(), v.dict_ptr()->items().end());
    auto key = [&](const std::pair<Value, Value>& kv) {
      const Value& x = by == "key" ? kv.first : kv.second;
      return ignore_case && x.is_string() ? make_str(py_lower(x.str())) : x;
    };
    std::stable_sort(items.begin(), items.end(), [&](const auto& x, const auto& y) {
      return rev ? compare(key(y), key(x), "<") < 0 : compare(key(x), key(y), "<") < 0;
    });
    std::vector<Value> out;
    for (auto& [k, x] : items) out.push_back(make_list({k, x}, true));
    return make_list(std::move(out));
  }
  if (name == "unique") {
    auto p = bind(name, a, {"case_sensitive", "attribute"});
    const bool ignore_case = !(p[0] && truthy(*p[0]));
    std::vector<Value> out;
    std::unordered_set<std::string> seen;
    for (auto& item : iterate(v)) {
      const Value k = attr_key(*this, item, p[1], ignore_case);
      const auto ks = Dict::key_of(k);
      if (!ks) fail("unhashable type: '" + k.type_name() + "'");
      if (seen.insert(*ks).second) out.push_back(item);
    }
    return make_iterator(std::move(out));
  }
  if (name == "min" || name == "max") {
    auto p = bind(name, a, {"case_sensitive", "attribute"});
    const bool ignore_case = !(p[0] && truthy(*p[0]));
    std::vector<Value> items = iterate(v);
    if (items.empty()) return Value::undefined(std::string("No aggregated item, sequence was empty."));
    size_t best = 0;
    auto best_key = multi_key(*this, items[0], p[1], ignore_case);
    for (size_t i = 1; i < items.size(); ++i) {
      auto k = multi_key(*this, items[i], p[1], ignore_case);
      const int c = compare_keys(k, best_key);
      if (name == "max" ? c > 0 : c < 0) {
        best = i;
        best_key = std::move(k);
      }
    }
    return items[best];
  }
  if (name == "sum") {
    auto p = bind(name, a, {"attribute", "start"});
    Value total = p[1] ? *p[1] : Value::integer(0);
    for (auto& item : iterate(v)) total = binary("+", total, given(p[0]) ? attr_key(*this, item, p[0], false) : item);
    return total;
  }
  if (name == "map") {
    std::vector<Value> out;
    if (!truthy(v)) return make_iterator({});
    const std::vector<Value> items = iterate(v);
    if (a.positional.empty()) {
      std::optional<Value> attribute, dflt;
      for (auto& [k, x] : a.keyword) {
        if (k == "attribute") attribute = x;
        else if (k == "default") dflt = x;
        else fail("Unexpected keyword argument '" + k + "'");
      }
      if (!attribute) fail("map: give a filter name or attribute=");
      for (const auto& item : items) {
        Value x = attr_key(*this, item, attribute, false);
        if (x.is_undefined() && dflt) x = *dflt;
        out.push_back(std::move(x));
      }
      return make_iterator(std::move(out));
    }
    if (!a.positional[0].is_string()) fail("map: the filter name must be a string");
    const std::string filter = a.positional[0].str();
    if (!known_filters().count(filter)) fail("no filter named '" + filter + "'");
    CallArgs rest;
    rest.positional.assign(a.positional.begin() + 1, a.positional.end());
    rest.keyword = a.keyword;
    for (const auto& item : items) {
      CallArgs copy = rest;
      out.push_back(apply_filter(filter, item, copy));
    }
    return make_iterator(std::move(out));
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    const bool attr = name == "selectattr" || name == "rejectattr";
    const bool keep_if = name == "select" || name == "selectattr";
    std::vector<Value> out;
    if (!truthy(v)) return make_iterator({});
    size_t k = 0;
    std::optional<Value> attribute;
    if (attr) {
      if (a.positional.empty()) fail(name + ": missing the attribute name");
      attribute = a.positional[k++];
    }
    std::optional<std::string> test;
    if (k < a.positional.size()) {
      if (!a.positional[k].is_string()) fail(name + ": the test name must be a string");
      test = a.positional[k++].str();
      if (!known_tests().count(*test)) fail("no test named '" + *test + "'");
    }
    CallArgs rest;
    rest.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(k), a.positional.end());
    rest.keyword = a.keyword;
    for (const auto& item : iterate(v)) {
      const Value x = attribute ? attr_key(*this, item, attribute, false) : item;
      bool r;
      if (test) {
        CallArgs copy = rest;
        r = apply_test(*test, x, copy);
      } else {
        r = truthy(x);
      }
      if (r == keep_if) out.push_back(item);
    }
    return make_iterator(std::move(out));
  }
  if (name == "attr") {
    auto p = bind(name, a, {"name"});
    return attribute_only(v, str_arg(p[0], "attr name"));
  }
  if (name == "abs") {
    bind(name, a, {});
    if (v.is_undefined()) fail(v.undefined_hint());
    if (!v.is_number()) fail("bad operand type for abs(): '" + v.type_name() + "'");
    if (v.is_float()) return Value::floating(std::fabs(v.as_double()));
    if (v.as_int() == INT64_MIN) fail("integer overflow (dots1 templates use 64-bit integers)");
    return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  if (name == "int") {
    auto p = bind(name, a, {"default", "base"});
    const Value dflt = p[0] ? *p[0] : Value::integer(0);
    const int64_t base = int_arg(p[1], 10, "base");
    if (v.is_integral()) return Value::integer(v.as_int());
    if (v.is_float()) {
      const double d = v.as_double();
      if (std::isnan(d)) return dflt;
      if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) fail("cannot convert float infinity or a huge float to a 64-bit integer");
      return Value::integer(static_cast<int64_t>(d));
    }
    if (v.is_string()) {
      if (base >= 2 && base <= 36)
        if (auto i = parse_py_int(v.str(), static_cast<int>(base))) return Value::integer(*i);
      if (auto f = parse_py_float(v.str())) {
        if (std::isnan(*f)) return dflt;
        if (!std::isfinite(*f) || std::fabs(*f) >= 9.2e18) fail("cannot convert float infinity or a huge float to a 64-bit integer");
        return Value::integer(static_cast<int64_t>(*f));
      }
    }
    return dflt;
  }
  if (name == "float") {
    auto p = bind(name, a, {"default"});
    const Value dflt = p[0] ? *p[0] : Value::floating(0.0);
    if (v.is_number()) return Value::floating(v.as_double());
    if (v.is_string())
      if (auto f = parse_py_float(v.str())) return Value::floating(*f);
    return dflt;
  }
  if (name == "round") {
    auto p = bind(name, a, {"precision", "method"});
    const int64_t precision = int_arg(p[0], 0, "precision");
    const std::string method = p[1] ? str_arg(p[1], "method") : "common";
    if (method != "common" && method != "ceil" && method != "floor") fail("method must be common, ceil or floor");
    if (v.is_undefined()) fail(v.undefined_hint());
    if (!v.is_number()) fail("type " + v.type_name() + " doesn't define __round__ method");
    if (method == "common") {
      if (v.is_integral()) {
        if (precision >= 0) return Value::integer(v.as_int());
        const double p10 = std::pow(10.0, static_cast<double>(-precision));
        return Value::integer(static_cast<int64_t>(std::nearbyint(static_cast<double>(v.as_int()) / p10) * p10));
      }
      return Value::floating(py_round(v.as_double(), precision));
    }
    const double p10 = std::pow(10.0, static_cast<double>(precision));
    const double x = v.as_double() * p10;
    return Value::floating((method == "ceil" ? std::ceil(x) : std::floor(x)) / p10);
  }
  if (name == "indent") {
    auto p = bind(name, a, {"width", "first", "blank"});
    std::string indention = "    ";
    if (p[0]) {
      if (p[0]->is_string()) indention = p[0]->str();
      else indention = std::string(static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(int_arg(p[0], 4, "width"), 1024))), ' ');
    }
    const bool first = p[1] && truthy(*p[1]);
    const bool blank = p[2] && truthy(*p[2]);
    const Value sv = to_str_value(v);
    const std::string s = sv.str() + "\n";
    // s.splitlines()
    std::vector<std::string> lines;
    {
      size_t i = 0, start = 0;
      while (i < s.size()) {
        size_t j = i;
        const char32_t c = tok::utf8_next(s, j);
        if (py_is_linebreak(c)) {
          lines.push_back(s.substr(start, i - start));
          if (c == '\r' && j < s.size() && s[j] == '\n') ++j;
          start = i = j;
        } else {
          i = j;
        }
      }
      if (start < s.size()) lines.push_back(s.substr(start));
    }
    check_size(s.size() + lines.size() * (indention.size() + 1), "indent's result");
    std::string rv;
    if (blank) {
      for (size_t k = 0; k < lines.size(); ++k) {
        if (k) rv += "\n" + indention;
        rv += lines[k];
      }
    } else {
      rv = lines.empty() ? std::string() : lines[0];
      for (size_t k = 1; k < lines.size(); ++k) {
        rv += "\n";
        if (!lines[k].empty()) rv += indention;
        rv += lines[k];
      }
    }
    if (first) rv = indention + rv;
    return derived_str(std::move(rv), sv.str_ptr()->is_tainted());
  }
  if (name == "wordcount") {
    bind(name, a, {});
    const std::string s = to_display(v);
    int64_t n = 0;
    bool in_word = false;
    size_t i = 0;
    while (i < s.size()) {
      const bool w = is_word_cp(tok::utf8_next(s, i));
      if (w && !in_word) ++n;
      in_word = w;
    }
    return Value::integer(n);
  }
  if (name == "center") {
    auto p = bind(name, a, {"width"});
    CallArgs ca;
    ca.positional.push_back(p[0] ? *p[0] : Value::integer(80));
    return str_method(*this, to_str_value(v), "center", ca);
  }
  if (name == "truncate") {
    auto p = bind(name, a, {"length", "killwords", "end", "leeway"});
    const int64_t length = int_arg(p[0], 255, "length");
    const bool killwords = p[1] && truthy(*p[1]);
    const Value end = p[2] ? to_str_value(*p[2]) : make_str("...");
    const int64_t leeway = int_arg(p[3], 5, "leeway");
    const Value s = to_str_value(v);
    const int64_t end_len = static_cast<int64_t>(cp_count(end.str()));
    if (length < end_len) fail("expected length >= " + std::to_string(end_len) + ", got " + std::to_string(length));
    if (leeway < 0) fail("expected leeway >= 0, got " + std::to_string(leeway));
    if (static_cast<int64_t>(cp_count(s.str())) <= length + leeway) return s;
    Value head = slice(s, Value::none(), Value::integer(length - end_len), Value::none());
    if (!killwords) {
      CallArgs ra;
      ra.positional = {make_str(" "), Value::integer(1)};
      head = str_method(*this, head, "rsplit", ra).items()[0];
    }
    return concat(head, end);
  }
  if (name == "batch") {
    auto p = bind(name, a, {"linecount", "fill_with"});
    const int64_t n = int_arg(p[0], 0, "linecount");
    if (n <= 0) fail("batch: linecount must be positive");
    std::vector<Value> out, cur;
    for (auto& item : iterate(v)) {
      cur.push_back(item);
      if (static_cast<int64_t>(cur.size()) == n) {
        out.push_back(make_list(std::move(cur)));
        cur.clear();
      }
    }
    if (!cur.empty()) {
      if (given(p[1]))
        while (static_cast<int64_t>(cur.size()) < n) cur.push_back(*p[1]);
      out.push_back(make_list(std::move(cur)));
    }
    return make_iterator(std::move(out));
  }
  if (name == "format") {
    if (!a.positional.empty() && !a.keyword.empty()) fail("can't handle positional and keyword arguments at the same time");
    const Value s = to_str_value(v);
    bool t = s.str_ptr()->is_tainted();
    for (const auto& x : a.positional) t = t || contains_taint(x);
    std::string out;
    if (!a.keyword.empty()) {
      Dict kw;
      for (const auto& [k, x] : a.keyword) {
        t = t || contains_taint(x);
        kw.set(k, x);
      }
      out = percent_format(s.str(), {}, &kw);
    } else if (a.positional.size() == 1 && a.positional[0].is_dict()) {
      out = percent_format(s.str(), {}, a.positional[0].dict_ptr().get());
    } else {
      out = percent_format(s.str(), a.positional, nullptr);
    }
    return derived_str(std::move(out), t);
  }
  fail("no filter named '" + name + "'");
}

// ------------------------------------------------------------------------------------------------
// Globals

inline void Interpreter::install_globals(Scope& g) {
  using namespace detail;
  g.vars["range"] = Value::function("range", [](Interpreter& in, CallArgs& a) {
    if (!a.keyword.empty()) fail("range() takes no keyword arguments");
    if (a.positional.empty() || a.positional.size() > 3) fail("range expected 1 to 3 arguments, got " + std::to_string(a.positional.size()));
    for (const auto& x : a.positional) {
      if (x.is_undefined()) fail(x.undefined_hint());
      if (!x.is_integral()) fail("'" + x.type_name() + "' object cannot be interpreted as an integer");
    }
    int64_t start = 0, stop, step = 1;
    if (a.positional.size() == 1) stop = a.positional[0].as_int();
    else {
      start = a.positional[0].as_int();
      stop = a.positional[1].as_int();
      if (a.positional.size() == 3) step = a.positional[2].as_int();
    }
    if (step == 0) fail("range() arg 3 must not be zero");
    const long double count = step > 0 ? (stop > start ? std::ceil((static_cast<long double>(stop) - start) / step) : 0)
                                       : (stop < start ? std::ceil((static_cast<long double>(start) - stop) / -static_cast<long double>(step)) : 0);
    if (count > static_cast<long double>(kMaxRange))
      fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (" + std::to_string(kMaxRange) + ").");
    std::vector<Value> out;
    for (int64_t i = 0; i < static_cast<int64_t>(count); ++i) out.push_back(Value::integer(start + i * step));
    return in.make_list(std::move(out));
  });
  auto dict_from = [](Interpreter& in, CallArgs& a, const char* fname) {
    auto d = make_dict();
    if (a.positional.size() > 1) fail(std::string(fname) + " expected at most 1 argument, got " + std::to_string(a.positional.size()));
    if (!a.positional.empty()) {
      const Value& src = a.positional[0];
      if (src.is_dict()) {
        for (const auto& [k, x] : src.dict_ptr()->items()) d->set(k, x);
      } else if (src.is_namespace()) {
        for (const auto& [k, x] : src.ns_ptr()->attrs.items()) d->set(k, x);
      } else {
        for (const auto& pair : in.iterate(src)) {
          const auto kv = in.iterate(pair);
          if (kv.size() != 2) fail(std::string(fname) + ": sequence elements must have length 2");
          d->set(kv[0], kv[1]);
        }
      }
    }
    for (auto& [k, x] : a.keyword) d->set(k, x);
    in.account(sizeof(Dict) + d->size() * 2 * sizeof(Value));
    return d;
  };
  g.vars["dict"] = Value::function("dict", [dict_from](Interpreter& in, CallArgs& a) { return Value::dict(dict_from(in, a, "dict")); });
  g.vars["namespace"] = Value::function("namespace", [dict_from](Interpreter& in, CallArgs& a) {
    auto d = dict_from(in, a, "namespace");
    auto ns = std::make_shared<Namespace>();
    for (const auto& [k, x] : d->items()) {
      if (k.is_string() && !k.str().empty() && k.str()[0] == '_')
        fail("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '" + k.str() + "'. Please rename the attribute.");
      if (depth_of(x) >= kNamespaceDepth)
        fail("a namespace cannot hold a namespace or a value nested " + std::to_string(kNamespaceDepth) + " levels deep (kNamespaceDepth)");
      ns->attrs.set(k, x);
    }
    return Value::ns(ns);
  });
  g.vars["raise_exception"] = Value::function("raise_exception", [](Interpreter&, CallArgs& a) -> Value {
    if (a.positional.size() != 1 || !a.keyword.empty()) fail("raise_exception() takes exactly one argument");
    throw TemplateError(to_display(a.positional[0]));
  });
  g.vars["strftime_now"] = Value::function("strftime_now", [](Interpreter& in, CallArgs& a) {
    if (a.positional.size() != 1 || !a.keyword.empty() || !a.positional[0].is_string()) fail("strftime_now() takes one format string");
    const std::string& fmt = a.positional[0].str();
    if (fmt.size() > 256) fail("strftime_now: format longer than 256 bytes");
    const std::time_t now = in.options().now ? *in.options().now : std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    std::string buf(1024, '\0');
    const size_t n = fmt.empty() ? 0 : std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
    if (n == 0 && !fmt.empty()) fail("strftime_now: the formatted date is empty or too long");
    buf.resize(n);
    return in.make_str(std::move(buf));
  });
}

}  // namespace dots1::jinja
