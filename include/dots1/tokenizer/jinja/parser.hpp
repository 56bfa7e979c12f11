// dots1/tokenizer/jinja/parser.hpp — Jinja's lexer and parser, for the environment HF renders chat
// templates in: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the loopcontrols
// extension ({% break %}, {% continue %}) and HF's {% generation %} tag.
//
// The lexer follows jinja2/lexer.py: newlines normalised to \n and one trailing newline dropped
// (keep_trailing_newline=False); `{%-`/`{{-`/`{#-` strip all whitespace before the tag and `-%}`/`-}}`/`-#}`
// all whitespace after it; trim_blocks removes the newline after a block or comment tag; lstrip_blocks
// removes spaces and tabs between the start of a line and a block or comment tag (`{%+` keeps them, `+%}`
// keeps the newline); `{% raw %}` blocks are data; end tags inside brackets are operators (`{{ {'a': {}}}}`).
// String literals are unescaped as Python's unicode-escape does.
//
// The parser follows jinja2/parser.py's grammar and precedence (note: Jinja's `-2 ** 2` is 4, and `~`
// binds tighter than `+`). Constructs outside the subset dots1 runs (extends, block, include, import,
// recursive loops, unknown filters or tests ...) are refused here, at parse time, with a TemplateError
// naming the construct and its line and column.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "dots1/error.hpp"
#include "dots1/tokenizer/jinja/value.hpp"

namespace dots1::jinja {

/// Bounds that keep a hostile template from exhausting the machine (see also the render limits in
/// interpreter.hpp).
inline constexpr size_t kMaxTemplateBytes = 4u << 20;  // 4 MiB of template source (real ones are < 100 kB)
inline constexpr int kMaxParseDepth = 200;             // nesting of expressions and blocks

// ------------------------------------------------------------------------------------------------
// Tokens

enum class Tok : uint8_t {
  data, variable_begin, variable_end, block_begin, block_end, name, string, integer, floating, op, eof
};

struct Token {
  Tok type = Tok::eof;
  std::string value;  // data text, name, operator spelling, decoded string literal, number text
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1, column = 1;
};

/// Line and column (1-based, in code points) of byte offsets into the normalised source.
class SourceMap {
 public:
  explicit SourceMap(std::string_view s) : src_(s) {
    starts_.push_back(0);
    for (size_t i = 0; i < s.size(); ++i)
      if (s[i] == '\n') starts_.push_back(i + 1);
  }
  std::pair<int, int> locate(size_t pos) const {
    auto it = std::upper_bound(starts_.begin(), starts_.end(), pos);
    const size_t line = static_cast<size_t>(it - starts_.begin());
    const size_t start = starts_[line - 1];
    return {static_cast<int>(line), static_cast<int>(cp_count(src_.substr(start, pos - start))) + 1};
  }

 private:
  std::string_view src_;
  std::vector<size_t> starts_;
};

/// jinja2's tokeniter + wrap for HF's settings. The source must be valid UTF-8.
class Lexer {
 public:
  explicit Lexer(std::string source) : src_(normalize(std::move(source))), map_(src_) {}

  std::vector<Token> run() {
    std::vector<Token> out;
    bool line_starting = true;
    while (pos_ < src_.size()) {
      // The next tag start ({{, {% or {#) and the data before it.
      size_t t = pos_;
      int kind = -1;  // 0 variable, 1 block, 2 comment
      while (true) {
        t = src_.find('{', t);
        if (t == std::string::npos || t + 1 >= src_.size()) {
          t = std::string::npos;
          break;
        }
        const char c = src_[t + 1];
        if (c == '{') kind = 0;
        else if (c == '%') kind = 1;
        else if (c == '#') kind = 2;
        if (kind >= 0) break;
        ++t;
      }
      if (t == std::string::npos) {
        push_data(out, src_.substr(pos_), pos_);
        pos_ = src_.size();
        break;
      }
      std::string text = src_.substr(pos_, t - pos_);
      const size_t text_pos = pos_;
      size_t after = t + 2;
      char sign = 0;
      if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      const bool raw = kind == 1 && is_raw_begin(after);
      if (sign == '-') {
        text = rstrip_ws(text);
      } else if (sign != '+' && kind != 0) {
        text = lstrip_block_text(text, line_starting);
      }
      push_data(out, text, text_pos);
      if (kind == 2) {
        pos_ = comment_end(t, after);
        line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
      } else if (raw) {
        pos_ = raw_block(out, t, after, line_starting);
      } else {
        out.push_back(make(kind == 0 ? Tok::variable_begin : Tok::block_begin, t));
        pos_ = after;
        line_starting = lex_tag(out, kind == 0);
      }
    }
    Token eof = make(Tok::eof, src_.size());
    out.push_back(eof);
    return out;
  }

  const std::string& source() const { return src_; }

 private:
  // Python's newline_re split and join; a trailing newline is removed (keep_trailing_newline=False).
  static std::string normalize(std::string s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\r') {
        out += '\n';
        if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
      } else {
        out += s[i];
      }
    }
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  Token make(Tok type, size_t pos, std::string value = {}) const {
    Token t;
    t.type = type;
    t.value = std::move(value);
    auto [l, c] = map_.locate(pos);
    t.line = l;
    t.column = c;
    return t;
  }
  [[noreturn]] void fail(const std::string& msg, size_t pos) const {
    auto [l, c] = map_.locate(std::min(pos, src_.size()));
    throw TemplateError(msg, l, c);
  }

  void push_data(std::vector<Token>& out, const std::string& text, size_t pos) const {
    if (!text.empty()) out.push_back(make(Tok::data, pos, text));
  }

  // Python's str.rstrip() (Unicode whitespace).
  static std::string rstrip_ws(const std::string& s) {
    size_t end = s.size();
    while (end > 0) {
      size_t j = end;
      if (!py_isspace(tok::utf8_prev(s, j))) break;
      end = j;
    }
    return s.substr(0, end);
  }
  // Length of the whitespace run at s[pos:] (regex \s*).
  static size_t ws_run(std::string_view s, size_t pos) {
    size_t i = pos;
    while (i < s.size()) {
      size_t j = i;
      if (!py_isspace(tok::utf8_next(s, j))) break;
      i = j;
    }
    return i - pos;
  }
  // lstrip_blocks: the text between the last newline (or a line start) and the tag is removed when it is
  // only whitespace.
  static std::string lstrip_block_text(const std::string& text, bool line_starting) {
    const size_t nl = text.rfind('\n');
    const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
    if (l_pos == 0 && !line_starting) return text;
    if (l_pos >= text.size()) return text;
    if (ws_run(text, l_pos) == text.size() - l_pos) return text.substr(0, l_pos);
    return text;
  }

  bool is_raw_begin(size_t after) const {
    size_t i = after + ws_run(src_, after);
    if (src_.compare(i, 3, "raw") != 0) return false;
    i += 3;
    if (i < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) return false;
    i += ws_run(src_, i);
    return src_.compare(i, 3, "-%}") == 0 || src_.compare(i, 2, "%}") == 0;
  }

  // `(.*?)((?:\+#}|\-#}\s*|#}\n?))`: returns the position after the comment.
  size_t comment_end(size_t start, size_t after) const {
    const size_t j = src_.find("#}", after);
    if (j == std::string::npos) fail("missing end of comment tag '#}'", start);
    if (j > after && src_[j - 1] == '-') return j + 2 + ws_run(src_, j + 2);
    if (j > after && src_[j - 1] == '+') return j + 2;
    return j + 2 + (j + 2 < src_.size() && src_[j + 2] == '\n' ? 1 : 0);
  }

  // {% raw %}...{% endraw %}: the text in between is data.
  size_t raw_block(std::vector<Token>& out, size_t start, size_t after, bool& line_starting) {
    size_t i = after + ws_run(src_, after) + 3;
    i += ws_run(src_, i);
    if (src_.compare(i, 3, "-%}") == 0) i += 3 + ws_run(src_, i + 3);
    else i += 2;  // "%}" (no trim_blocks newline after raw)
    // Find "{%[-+]?\s*endraw\s*(+%}|-%}\s*|%}\n?)".
    size_t search = i;
    while (true) {
      const size_t b = src_.find("{%", search);
      if (b == std::string::npos) fail("missing end of raw directive '{% endraw %}'", start);
      size_t k = b + 2;
      char sign = 0;
      if (k < src_.size() && (src_[k] == '-' || src_[k] == '+')) sign = src_[k++];
      k += ws_run(src_, k);
      if (src_.compare(k, 6, "endraw") != 0) {
        search = b + 2;
        continue;
      }
      k += 6;
      k += ws_run(src_, k);
      size_t end;
      if (src_.compare(k, 3, "+%}") == 0) end = k + 3;
      else if (src_.compare(k, 3, "-%}") == 0) end = k + 3 + ws_run(src_, k + 3);
      else if (src_.compare(k, 2, "%}") == 0) end = k + 2 + (k + 2 < src_.size() && src_[k + 2] == '\n' ? 1 : 0);
      else {
        search = b + 2;
        continue;
      }
      std::string text = src_.substr(i, b - i);
      if (sign == '-') text = rstrip_ws(text);
      else if (sign != '+') text = lstrip_block_text(text, line_starting);
      push_data(out, text, i);
      line_starting = src_[end - 1] == '\n';
      return end;
    }
  }

  // Lexes the inside of {{ }} or {% %} from pos_ through its end tag; returns whether the end tag's match
  // ended with a newline (for lstrip_blocks).
  bool lex_tag(std::vector<Token>& out, bool variable) {
    std::vector<char> balance;
    const size_t tag_start = pos_;
    while (true) {
      if (pos_ >= src_.size())
        fail(std::string("unexpected end of template: missing '") + (variable ? "}}" : "%}") + "'", tag_start);
      if (balance.empty()) {
        if (variable) {
          if (src_.compare(pos_, 3, "-}}") == 0) {
            out.push_back(make(Tok::variable_end, pos_));
            pos_ += 3;
            pos_ += ws_run(src_, pos_);
            return pos_ > 0 && src_[pos_ - 1] == '\n';
          }
          if (src_.compare(pos_, 2, "}}") == 0) {
            out.push_back(make(Tok::variable_end, pos_));
            pos_ += 2;
            return false;
          }
        } else {
          if (src_.compare(pos_, 3, "+%}") == 0) {
            out.push_back(make(Tok::block_end, pos_));
            pos_ += 3;
            return false;
          }
          if (src_.compare(pos_, 3, "-%}") == 0) {
            out.push_back(make(Tok::block_end, pos_));
            pos_ += 3;
            pos_ += ws_run(src_, pos_);
            return pos_ > 0 && src_[pos_ - 1] == '\n';
          }
          if (src_.compare(pos_, 2, "%}") == 0) {
            out.push_back(make(Tok::block_end, pos_));
            pos_ += 2;
            if (pos_ < src_.size() && src_[pos_] == '\n') {
              ++pos_;
              return true;
            }
            return false;
          }
        }
      }
      if (const size_t w = ws_run(src_, pos_)) {
        pos_ += w;
        continue;
      }
      if (lex_number(out) || lex_name(out) || lex_string(out)) continue;
      lex_operator(out, balance);
    }
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  static bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

  // (\d+_)*\d+ at i; returns the end or npos.
  size_t digits(size_t i) const {
    if (i >= src_.size() || !is_digit(src_[i])) return std::string::npos;
    while (true) {
      while (i < src_.size() && is_digit(src_[i])) ++i;
      if (i + 1 < src_.size() && src_[i] == '_' && is_digit(src_[i + 1])) {
        ++i;
        continue;
      }
      return i;
    }
  }

  bool lex_number(std::vector<Token>& out) {
    const size_t start = pos_;
    if (!is_digit(src_[start])) return false;
    // float_re: (?<!\.)(\d+_)*\d+((\.(\d+_)*\d+)?e[+\-]?(\d+_)*\d+|\.(\d+_)*\d+)
    if (start == 0 || src_[start - 1] != '.') {
      const size_t int_end = digits(start);
      size_t i = int_end;
      bool frac = false;
      if (i < src_.size() && src_[i] == '.') {
        const size_t f = digits(i + 1);
        if (f != std::string::npos) i = f, frac = true;
      }
      size_t e_end = std::string::npos;
      if (i < src_.size() && (src_[i] == 'e' || src_[i] == 'E')) {
        size_t k = i + 1;
        if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
        e_end = digits(k);
      }
      if (e_end != std::string::npos || frac) {
        const size_t end = e_end != std::string::npos ? e_end : i;
        std::string text;
        for (size_t k = start; k < end; ++k)
          if (src_[k] != '_') text += src_[k];
        Token t = make(Tok::floating, start, text);
        t.float_value = std::strtod(text.c_str(), nullptr);
        out.push_back(std::move(t));
        pos_ = end;
        return true;
      }
    }
    // integer_re: 0b.., 0o.., 0x.., [1-9](_?\d)*, 0(_?0)*
    size_t i = start;
    int base = 10;
    std::string body;
    auto take = [&](auto ok) {
      while (i < src_.size()) {
        if (ok(src_[i])) body += src_[i++];
        else if (src_[i] == '_' && i + 1 < src_.size() && ok(src_[i + 1])) ++i;
        else break;
      }
    };
    const char n1 = start + 1 < src_.size() ? static_cast<char>(std::tolower(static_cast<unsigned char>(src_[start + 1]))) : 0;
    if (src_[start] == '0' && (n1 == 'b' || n1 == 'o' || n1 == 'x')) {
      base = n1 == 'b' ? 2 : (n1 == 'o' ? 8 : 16);
      i = start + 2;
      if (base == 2) take([](char c) { return c == '0' || c == '1'; });
      else if (base == 8) take([](char c) { return c >= '0' && c <= '7'; });
      else take([](char c) { return is_hex(c); });
      if (body.empty()) {  // "0x" alone: the integer 0 then a name
        base = 10;
        i = start + 1;
        body = "0";
      }
    } else if (src_[start] == '0') {
      i = start;
      take([](char c) { return c == '0'; });
    } else {
      take([](char c) { return is_digit(c); });
    }
    uint64_t v = 0;
    for (char c : body) {
      const unsigned d = is_digit(c) ? static_cast<unsigned>(c - '0') : static_cast<unsigned>(std::tolower(static_cast<unsigned char>(c)) - 'a' + 10);
      if (v > (static_cast<uint64_t>(INT64_MAX) - d) / static_cast<uint64_t>(base))
        fail("integer literal " + src_.substr(start, i - start) + " does not fit in 64 bits (dots1 templates use 64-bit integers)", start);
      v = v * static_cast<uint64_t>(base) + d;
    }
    Token t = make(Tok::integer, start, src_.substr(start, i - start));
    t.int_value = static_cast<int64_t>(v);
    out.push_back(std::move(t));
    pos_ = i;
    return true;
  }

  bool lex_name(std::vector<Token>& out) {
    const char c = src_[pos_];
    if (!(std::isalpha(static_cast<unsigned char>(c)) || c == '_')) {
      if (static_cast<unsigned char>(c) >= 0x80) fail("non-ASCII identifiers are not supported", pos_);
      return false;
    }
    size_t i = pos_ + 1;
    while (i < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) ++i;
    out.push_back(make(Tok::name, pos_, src_.substr(pos_, i - pos_)));
    pos_ = i;
    return true;
  }

  bool lex_string(std::vector<Token>& out) {
    const char q = src_[pos_];
    if (q != '\'' && q != '"') return false;
    size_t i = pos_ + 1;
    while (i < src_.size() && src_[i] != q) {
      if (src_[i] == '\\') ++i;
      ++i;
    }
    if (i >= src_.size()) fail("unterminated string literal", pos_);
    out.push_back(make(Tok::string, pos_, unescape(std::string_view(src_).substr(pos_ + 1, i - pos_ - 1), pos_)));
    pos_ = i + 1;
    return true;
  }

  // Python's unicode-escape decoding of a literal's body (non-ASCII characters pass through).
  std::string unescape(std::string_view s, size_t at) const {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\\') {
        out += s[i];
        continue;
      }
      if (++i >= s.size()) fail("string literal ends with a backslash", at);
      const char c = s[i];
      auto hex = [&](size_t n) -> char32_t {
        char32_t v = 0;
        for (size_t k = 1; k <= n; ++k) {
          if (i + k >= s.size() || !is_hex(s[i + k])) fail("truncated \\x/\\u/\\U escape in a string literal", at);
          const char h = s[i + k];
          v = v * 16 + static_cast<char32_t>(is_digit(h) ? h - '0' : std::tolower(static_cast<unsigned char>(h)) - 'a' + 10);
        }
        i += n;
        return v;
      };
      auto put = [&](char32_t cp) {
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("string literal escape is not a Unicode scalar value", at);
        tok::utf8_append(out, cp);
      };
      switch (c) {
        case '\n': break;  // line continuation
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': put(hex(2)); break;
        case 'u': put(hex(4)); break;
        case 'U': put(hex(8)); break;
        case 'N': fail("\\N{...} escapes in string literals are not supported", at);
        default:
          if (c >= '0' && c <= '7') {
            char32_t v = static_cast<char32_t>(c - '0');
            for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) v = v * 8 + static_cast<char32_t>(s[++i] - '0');
            put(v);
          } else {
            out += '\\';  // an unknown escape stays as written, as in Python
            out += c;
          }
      }
    }
    return out;
  }

  void lex_operator(std::vector<Token>& out, std::vector<char>& balance) {
    static const char* const two[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : two) {
      if (src_.compare(pos_, 2, op) == 0) {
        out.push_back(make(Tok::op, pos_, op));
        pos_ += 2;
        return;
      }
    }
    const char c = src_[pos_];
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos) {
      size_t j = pos_;
      const char32_t cp = tok::utf8_next(src_, j);
      std::string ch;
      tok::utf8_append(ch, cp);
      fail("unexpected character '" + ch + "'", pos_);
    }
    if (c == '(' || c == '[' || c == '{') balance.push_back(c == '(' ? ')' : (c == '[' ? ']' : '}'));
    if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) fail(std::string("unexpected '") + c + "'", pos_);
      if (balance.back() != c) fail(std::string("unexpected '") + c + "', expected '" + balance.back() + "'", pos_);
      balance.pop_back();
    }
    out.push_back(make(Tok::op, pos_, std::string(1, c)));
    ++pos_;
  }

  std::string src_;
  SourceMap map_;
  size_t pos_ = 0;
};

// ------------------------------------------------------------------------------------------------
// Syntax tree

struct Node {
  int line = 0, column = 0;
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Keyword {
  std::string name;
  ExprPtr value;
};

struct Expr : Node {
  enum class Kind : uint8_t {
    constant, name, list, tuple, dict, getattr, getitem, slice, call, filter, test, neg, pos, not_, binary, and_, or_,
    compare, condexpr, concat
  };
  Kind kind;
  explicit Expr(Kind k) : kind(k) {}
  Value constant;                   // constant
  std::string name;                 // name, getattr attribute, filter/test name, binary operator
  std::vector<ExprPtr> children;    // operands, list/tuple items, dict key,value pairs, slice start/stop/step
  std::vector<Keyword> keywords;    // call/filter/test keyword arguments
  ExprPtr dyn_args, dyn_kwargs;     // *args, **kwargs of a call
  std::vector<std::string> ops;     // compare operators, one per children[1..]
  // slice: children are start, stop, step, each possibly null
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

/// An assignment target: a name, a tuple of targets, or ns.attr.
struct Target : Node {
  std::string name, attr;        // attr non-empty: namespace attribute
  std::vector<Target> items;     // tuple unpacking when non-empty
  bool is_tuple = false;
};

struct Stmt : Node {
  enum class Kind : uint8_t { data, output, if_, for_, set, set_block, macro, call_block, filter_block, with, break_, continue_, body };
  Kind kind;
  explicit Stmt(Kind k) : kind(k) {}
  std::string text;                                   // data
  ExprPtr expr;                                       // output, for iterable, set value, call_block call
  std::vector<std::pair<ExprPtr, Body>> branches;     // if / elif
  Body body, else_body;                               // for, if else, set block, macro, call block, filter, with
  Target target;                                      // for, set
  ExprPtr loop_filter;                                // for ... if cond
  ExprPtr filter;                                     // set block / filter block: a filter expression with no input
  std::string name;                                   // macro
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro / call block signature (defaults may be null)
  bool uses_caller = false, uses_varargs = false, uses_kwargs = false;
  std::vector<std::pair<Target, ExprPtr>> assignments;  // with
};

/// A parsed template.
struct Program {
  Body body;
};

// ------------------------------------------------------------------------------------------------
// Parser

/// The filters and tests dots1 implements (checked at parse time, as Jinja checks them at compile time).
inline const std::unordered_set<std::string>& known_filters() {
  static const std::unordered_set<std::string> f = {
      "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "first", "float", "indent", "int", "items", "join",
      "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse", "round",
      "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim", "unique", "upper", "wordcount",
      "center", "batch", "format", "truncate", "e", "escape"};
  return f;
}
/// Filters Jinja has that dots1 does not run (a template using one gets a clear error, not a wrong output).
inline const std::unordered_set<std::string>& unsupported_filters() {
  static const std::unordered_set<std::string> f = {"groupby", "filesizeformat", "forceescape", "pprint", "random", "slice",
                                                    "striptags", "urlencode", "urlize", "wordwrap", "xmlattr"};
  return f;
}
inline const std::unordered_set<std::string>& known_tests() {
  static const std::unordered_set<std::string> t = {
      "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "filter", "float", "ge",
      "gt", "greaterthan", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none", "number",
      "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper", "==", "!=", "<", "<=", ">", ">="};
  return t;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Program run() {
    Program p;
    p.body = subparse({});
    if (cur().type != Tok::eof) fail("unexpected '" + describe(cur()) + "'");
    return p;
  }

 private:
  // ---- token access
  const Token& cur() const { return t_[i_]; }
  const Token& look() const { return t_[std::min(i_ + 1, t_.size() - 1)]; }
  void next() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool is_op(std::string_view op) const { return cur().type == Tok::op && cur().value == op; }
  bool is_name(std::string_view n) const { return cur().type == Tok::name && cur().value == n; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::eof: return "end of template";
      case Tok::block_end: return "end of statement block";
      case Tok::variable_end: return "end of print statement";
      case Tok::block_begin: return "begin of statement block";
      case Tok::variable_begin: return "begin of print statement";
      case Tok::data: return "template data";
      case Tok::string: return "string";
      default: return t.value;
    }
  }
  [[noreturn]] void fail(const std::string& msg) const { throw TemplateError(msg, cur().line, cur().column); }
  [[noreturn]] void fail_at(const std::string& msg, const Node& n) const { throw TemplateError(msg, n.line, n.column); }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) fail("expected '" + std::string(op) + "', got '" + describe(cur()) + "'");
  }
  void expect_name(std::string_view n) {
    if (!skip_name(n)) fail("expected '" + std::string(n) + "', got '" + describe(cur()) + "'");
  }
  std::string expect_identifier() {
    if (cur().type != Tok::name) fail("expected a name, got '" + describe(cur()) + "'");
    std::string v = cur().value;
    next();
    return v;
  }
  void expect_block_end() {
    skip_op(":");
    if (cur().type != Tok::block_end) fail("expected end of statement block, got '" + describe(cur()) + "'");
    next();
  }
  template <class N>
  void at(N& n, const Token& t) const {
    n.line = t.line;
    n.column = t.column;
  }
  ExprPtr expr(Expr::Kind k, const Token& t) {
    auto e = std::make_unique<Expr>(k);
    at(*e, t);
    return e;
  }

  struct DepthGuard {
    int& d;
    explicit DepthGuard(Parser& p) : d(p.depth_) {
      if (++d > kMaxParseDepth) {
        --d;
        p.fail("template nested too deeply (more than " + std::to_string(kMaxParseDepth) + " levels)");
      }
    }
    ~DepthGuard() { --d; }
  };

  // ---- statements
  Body subparse(const std::vector<std::string_view>& end_tokens) {
    DepthGuard g(*this);
    Body body;
    while (cur().type != Tok::eof) {
      const Token& t = cur();
      if (t.type == Tok::data) {
        auto s = std::make_unique<Stmt>(Stmt::Kind::data);
        at(*s, t);
        s->text = t.value;
        body.push_back(std::move(s));
        next();
      } else if (t.type == Tok::variable_begin) {
        next();
        auto s = std::make_unique<Stmt>(Stmt::Kind::output);
        at(*s, t);
        s->expr = parse_tuple(true, {}, false);
        if (cur().type != Tok::variable_end) fail("expected end of print statement, got '" + describe(cur()) + "'");
        next();
        body.push_back(std::move(s));
      } else if (t.type == Tok::block_begin) {
        next();
        if (cur().type == Tok::name)
          for (auto e : end_tokens)
            if (cur().value == e) return body;
        body.push_back(parse_statement());
      } else {
        fail("unexpected '" + describe(t) + "'");
      }
    }
    if (!end_tokens.empty()) {
      std::string want;
      for (auto e : end_tokens) want += (want.empty() ? "'" : " or '") + std::string(e) + "'";
      fail("unexpected end of template; expected " + want + " (the innermost block that needs closing is '" + open_blocks_.back() + "')");
    }
    return body;
  }

  // Parses the statements up to one of end_tokens (the block's head has been parsed).
  Body parse_statements(const std::vector<std::string_view>& end_tokens, bool drop_needle) {
    expect_block_end();
    Body b = subparse(end_tokens);
    if (cur().type == Tok::eof) fail("unexpected end of template");
    if (drop_needle) {
      next();
      expect_block_end();
    }
    return b;
  }

  StmtPtr parse_statement() {
    const Token t = cur();
    if (t.type != Tok::name) fail("tag name expected");
    const std::string& n = t.value;
    if (n == "for") return parse_for();
    if (n == "if") return parse_if();
    if (n == "set") return parse_set();
    if (n == "macro") return parse_macro();
    if (n == "call") return parse_call_block();
    if (n == "filter") return parse_filter_block();
    if (n == "with") return parse_with();
    if (n == "print") {
      next();
      auto s = std::make_unique<Stmt>(Stmt::Kind::output);
      at(*s, t);
      s->expr = parse_tuple(true, {}, false);
      expect_block_end();
      return s;
    }
    if (n == "break" || n == "continue") {
      next();
      if (loop_depth_ == 0) fail_at("'" + n + "' outside of a for loop", node_at(t));
      expect_block_end();
      auto s = std::make_unique<Stmt>(n == "break" ? Stmt::Kind::break_ : Stmt::Kind::continue_);
      at(*s, t);
      return s;
    }
    if (n == "generation") {  // HF's AssistantTracker tag: renders its body
      next();
      open_blocks_.push_back("generation");
      auto s = std::make_unique<Stmt>(Stmt::Kind::body);
      at(*s, t);
      s->body = parse_statements({"endgeneration"}, true);
      open_blocks_.pop_back();
      return s;
    }
    static const std::set<std::string> jinja_only = {"extends", "block", "include", "import", "from", "autoescape", "trans"};
    if (jinja_only.count(n))
      fail("the '" + n + "' tag is not supported by dots1's chat template interpreter (chat templates are one self-contained file)");
    fail("unknown tag '" + n + "'" + (n == "do" ? " (HF's Jinja environment has no 'do' extension)" : ""));
  }

  Node node_at(const Token& t) const {
    Node n;
    n.line = t.line;
    n.column = t.column;
    return n;
  }

  StmtPtr parse_for() {
    const Token t = cur();
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::for_);
    at(*s, t);
    s->target = parse_assign_target(true, false, {"in"});
    expect_name("in");
    s->expr = parse_tuple(false, {"recursive"}, false);
    if (skip_name("if")) s->loop_filter = parse_expression(true);
    if (is_name("recursive")) fail("recursive for loops are not supported by dots1's chat template interpreter");
    open_blocks_.push_back("endfor");
    ++loop_depth_;
    s->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (cur().value == "endfor") {
      next();
      expect_block_end();
    } else {
      next();  // else
      s->else_body = parse_statements({"endfor"}, true);
    }
    open_blocks_.pop_back();
    return s;
  }

  StmtPtr parse_if() {
    const Token t = cur();
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::if_);
    at(*s, t);
    open_blocks_.push_back("endif");
    while (true) {
      ExprPtr test = parse_tuple(false, {}, false);
      Body body = parse_statements({"elif", "else", "endif"}, false);
      s->branches.emplace_back(std::move(test), std::move(body));
      const std::string which = cur().value;
      next();
      if (which == "elif") continue;
      if (which == "else") s->else_body = parse_statements({"endif"}, true);
      else expect_block_end();
      break;
    }
    open_blocks_.pop_back();
    return s;
  }

  StmtPtr parse_set() {
    const Token t = cur();
    next();
    Target target = parse_assign_target(true, true, {});
    if (skip_op("=")) {
      auto s = std::make_unique<Stmt>(Stmt::Kind::set);
      at(*s, t);
      s->target = std::move(target);
      s->expr = parse_tuple(true, {}, false);
      expect_block_end();
      return s;
    }
    auto s = std::make_unique<Stmt>(Stmt::Kind::set_block);
    at(*s, t);
    s->target = std::move(target);
    if (is_op("|")) s->filter = parse_filter(nullptr, false);
    open_blocks_.push_back("endset");
    s->body = parse_statements({"endset"}, true);
    open_blocks_.pop_back();
    return s;
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    bool defaults = false;
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      const Token at_tok = cur();
      std::string name = expect_identifier();
      ExprPtr def;
      if (skip_op("=")) {
        def = parse_expression(true);
        defaults = true;
      } else if (defaults) {
        fail_at("non-default argument follows default argument", node_at(at_tok));
      }
      s.params.emplace_back(std::move(name), std::move(def));
    }
    expect_op(")");
  }

  StmtPtr parse_macro() {
    const Token t = cur();
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::macro);
    at(*s, t);
    s->name = expect_identifier();
    parse_signature(*s);
    macro_names_.emplace_back();
    open_blocks_.push_back("endmacro");
    const int saved_loop = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_statements({"endmacro"}, true);
    loop_depth_ = saved_loop;
    open_blocks_.pop_back();
    const auto& used = macro_names_.back();
    s->uses_caller = used.count("caller") != 0;
    s->uses_varargs = used.count("varargs") != 0;
    s->uses_kwargs = used.count("kwargs") != 0;
    macro_names_.pop_back();
    return s;
  }

  StmtPtr parse_call_block() {
    const Token t = cur();
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::call_block);
    at(*s, t);
    if (is_op("(")) parse_signature(*s);
    s->expr = parse_expression(true);
    if (s->expr->kind != Expr::Kind::call) fail_at("expected a call after {% call %}", *s->expr);
    macro_names_.emplace_back();
    open_blocks_.push_back("endcall");
    s->body = parse_statements({"endcall"}, true);
    open_blocks_.pop_back();
    macro_names_.pop_back();
    return s;
  }

  StmtPtr parse_filter_block() {
    const Token t = cur();
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::filter_block);
    at(*s, t);
    s->filter = parse_filter(nullptr, true);
    open_blocks_.push_back("endfilter");
    s->body = parse_statements({"endfilter"}, true);
    open_blocks_.pop_back();
    return s;
  }

  StmtPtr parse_with() {
    const Token t = cur();
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::with);
    at(*s, t);
    while (cur().type != Tok::block_end) {
      if (!s->assignments.empty()) expect_op(",");
      Target target = parse_assign_target(true, false, {});
      expect_op("=");
      s->assignments.emplace_back(std::move(target), parse_expression(true));
    }
    open_blocks_.push_back("endwith");
    s->body = parse_statements({"endwith"}, true);
    open_blocks_.pop_back();
    return s;
  }

  Target parse_assign_target(bool with_tuple, bool with_namespace, const std::vector<std::string_view>& extra_end) {
    Target target;
    at(target, cur());
    if (with_namespace && cur().type == Tok::name && look().type == Tok::op && look().value == ".") {
      target.name = cur().value;
      next();
      next();
      target.attr = expect_identifier();
      return target;
    }
    auto one = [&]() {
      Target x;
      at(x, cur());
      if (cur().type != Tok::name) fail("can't assign to '" + describe(cur()) + "'");
      const std::string& n = cur().value;
      if (n == "true" || n == "false" || n == "True" || n == "False" || n == "none" || n == "None")
        fail("can't assign to the constant '" + n + "'");
      x.name = n;
      next();
      return x;
    };
    if (!with_tuple) return one();
    // parse_tuple(simplified=True): names separated by commas, optionally in parentheses
    bool paren = skip_op("(");
    std::vector<Target> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) {
        if (!skip_op(",")) break;
        is_tuple = true;
      }
      if (cur().type == Tok::block_end || cur().type == Tok::variable_end || is_op(")") || is_op("=")) break;
      bool end = false;
      for (auto e : extra_end)
        if (is_name(e)) end = true;
      if (end) break;
      items.push_back(one());
    }
    if (paren) expect_op(")");
    if (items.empty()) fail("expected an assignment target");
    if (items.size() == 1 && !is_tuple) return std::move(items[0]);
    target.items = std::move(items);
    target.is_tuple = true;
    return target;
  }

  // ---- expressions
  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard g(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    const Token t = cur();
    ExprPtr e1 = parse_or();
    while (skip_name("if")) {
      ExprPtr e2 = parse_or();
      ExprPtr e3;
      if (skip_name("else")) e3 = parse_condexpr();
      auto c = expr(Expr::Kind::condexpr, t);
      c->children.push_back(std::move(e2));  // test
      c->children.push_back(std::move(e1));  // then
      c->children.push_back(std::move(e3));  // else (may be null)
      e1 = std::move(c);
    }
    return e1;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const Token t = cur();
      next();
      auto e = expr(Expr::Kind::or_, t);
      e->children.push_back(std::move(left));
      e->children.push_back(parse_and());
      left = std::move(e);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const Token t = cur();
      next();
      auto e = expr(Expr::Kind::and_, t);
      e->children.push_back(std::move(left));
      e->children.push_back(parse_not());
      left = std::move(e);
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard g(*this);
      const Token t = cur();
      next();
      auto e = expr(Expr::Kind::not_, t);
      e->children.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token t = cur();
    ExprPtr first = parse_math1();
    std::vector<std::string> ops;
    std::vector<ExprPtr> rest;
    while (true) {
      if (cur().type == Tok::op && (cur().value == "==" || cur().value == "!=" || cur().value == "<" || cur().value == "<=" ||
                                    cur().value == ">" || cur().value == ">=")) {
        ops.push_back(cur().value);
        next();
      } else if (is_name("in")) {
        ops.push_back("in");
        next();
      } else if (is_name("not") && look().type == Tok::name && look().value == "in") {
        ops.push_back("notin");
        next();
        next();
      } else {
        break;
      }
      rest.push_back(parse_math1());
    }
    if (ops.empty()) return first;
    auto e = expr(Expr::Kind::compare, t);
    e->children.push_back(std::move(first));
    for (auto& r : rest) e->children.push_back(std::move(r));
    e->ops = std::move(ops);
    return e;
  }

  ExprPtr binary(const Token& t, std::string op, ExprPtr l, ExprPtr r) {
    auto e = expr(Expr::Kind::binary, t);
    e->name = std::move(op);
    e->children.push_back(std::move(l));
    e->children.push_back(std::move(r));
    return e;
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token t = cur();
      next();
      left = binary(t, t.value, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    const Token t = cur();
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto e = expr(Expr::Kind::concat, t);
    e->children.push_back(std::move(first));
    while (skip_op("~")) e->children.push_back(parse_math2());
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token t = cur();
      next();
      left = binary(t, t.value, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const Token t = cur();
      next();
      left = binary(t, "**", std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(*this);
    const Token t = cur();
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      next();
      node = expr(t.value == "-" ? Expr::Kind::neg : Expr::Kind::pos, t);
      node->children.push_back(parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token t = cur();
    if (t.type == Tok::name) {
      next();
      if (t.value == "true" || t.value == "True" || t.value == "false" || t.value == "False") {
        auto e = expr(Expr::Kind::constant, t);
        e->constant = Value::boolean(t.value == "true" || t.value == "True");
        return e;
      }
      if (t.value == "none" || t.value == "None") {
        auto e = expr(Expr::Kind::constant, t);
        e->constant = Value::none();
        return e;
      }
      auto e = expr(Expr::Kind::name, t);
      e->name = t.value;
      for (auto& m : macro_names_) m.insert(t.value);
      return e;
    }
    if (t.type == Tok::string) {
      std::string s;
      while (cur().type == Tok::string) {
        s += cur().value;
        next();
      }
      auto e = expr(Expr::Kind::constant, t);
      e->constant = Value::string(std::move(s));
      return e;
    }
    if (t.type == Tok::integer || t.type == Tok::floating) {
      next();
      auto e = expr(Expr::Kind::constant, t);
      e->constant = t.type == Tok::integer ? Value::integer(t.int_value) : Value::floating(t.float_value);
      return e;
    }
    if (is_op("(")) {
      next();
      ExprPtr e = parse_tuple(true, {}, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto e = expr(Expr::Kind::list, t);
      while (!is_op("]")) {
        if (!e->children.empty()) expect_op(",");
        if (is_op("]")) break;
        e->children.push_back(parse_expression(true));
      }
      expect_op("]");
      return e;
    }
    if (is_op("{")) {
      next();
      auto e = expr(Expr::Kind::dict, t);
      while (!is_op("}")) {
        if (!e->children.empty()) expect_op(",");
        if (is_op("}")) break;
        e->children.push_back(parse_expression(true));
        expect_op(":");
        e->children.push_back(parse_expression(true));
      }
      expect_op("}");
      return e;
    }
    fail("unexpected '" + describe(t) + "'");
  }

  // Jinja's parse_tuple; `simplified` is not needed (targets have their own parser).
  ExprPtr parse_tuple(bool with_condexpr, const std::vector<std::string_view>& extra_end, bool explicit_parentheses) {
    const Token t = cur();
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    auto at_end = [&] {
      if (cur().type == Tok::variable_end || cur().type == Tok::block_end || is_op(")")) return true;
      for (auto e : extra_end)
        if (is_name(e)) return true;
      return false;
    };
    while (true) {
      if (!args.empty()) expect_op(",");
      if (at_end()) break;
      args.push_back(parse_expression(with_condexpr));
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parentheses) fail("expected an expression, got '" + describe(cur()) + "'");
    }
    auto e = expr(Expr::Kind::tuple, t);
    e->children = std::move(args);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) node = parse_subscript(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) node = parse_filter(std::move(node), false);
      else if (is_name("is")) node = parse_test(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    DepthGuard g(*this);
    const Token t = cur();
    next();
    if (t.value == ".") {
      const Token a = cur();
      if (a.type == Tok::name) {
        next();
        auto e = expr(Expr::Kind::getattr, t);
        e->name = a.value;
        e->children.push_back(std::move(node));
        return e;
      }
      if (a.type != Tok::integer) fail("expected name or number after '.'");
      next();
      auto e = expr(Expr::Kind::getitem, t);
      auto c = expr(Expr::Kind::constant, a);
      c->constant = Value::integer(a.int_value);
      e->children.push_back(std::move(node));
      e->children.push_back(std::move(c));
      return e;
    }
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    auto e = expr(Expr::Kind::getitem, t);
    e->children.push_back(std::move(node));
    if (args.size() == 1) {
      e->children.push_back(std::move(args[0]));
    } else {
      auto tup = expr(Expr::Kind::tuple, t);
      tup->children = std::move(args);
      e->children.push_back(std::move(tup));
    }
    return e;
  }

  ExprPtr parse_subscribed() {
    const Token t = cur();
    std::vector<ExprPtr> parts;
    if (is_op(":")) {
      next();
      parts.push_back(nullptr);
    } else {
      ExprPtr node = parse_expression(true);
      if (!is_op(":")) return node;
      next();
      parts.push_back(std::move(node));
    }
    if (is_op(":")) parts.push_back(nullptr);
    else if (!is_op("]") && !is_op(",")) parts.push_back(parse_expression(true));
    else parts.push_back(nullptr);
    if (is_op(":")) {
      next();
      if (!is_op("]") && !is_op(",")) parts.push_back(parse_expression(true));
      else parts.push_back(nullptr);
    } else {
      parts.push_back(nullptr);
    }
    auto e = expr(Expr::Kind::slice, t);
    e->children = std::move(parts);
    return e;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool require_comma = false;
    std::vector<ExprPtr> args;
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*")) {
        if (e.dyn_args || e.dyn_kwargs) fail("invalid syntax for function call expression");
        next();
        e.dyn_args = parse_expression(true);
      } else if (is_op("**")) {
        if (e.dyn_kwargs) fail("invalid syntax for function call expression");
        next();
        e.dyn_kwargs = parse_expression(true);
      } else if (cur().type == Tok::name && look().type == Tok::op && look().value == "=") {
        if (e.dyn_kwargs) fail("invalid syntax for function call expression");
        std::string key = cur().value;
        next();
        next();
        e.keywords.push_back({std::move(key), parse_expression(true)});
      } else {
        if (e.dyn_args || e.dyn_kwargs || !e.keywords.empty()) fail("positional argument follows keyword argument");
        e.children.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr node) {
    DepthGuard g(*this);
    const Token t = cur();
    auto e = expr(Expr::Kind::call, t);
    e->children.push_back(std::move(node));  // callee first, then the positional arguments
    parse_call_args(*e);
    return e;
  }

  // `| name(args)` chains; node may be null (a block filter).
  ExprPtr parse_filter(ExprPtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      start_inline = false;
      const Token t = cur();
      std::string name = expect_identifier();
      while (is_op(".")) {
        next();
        name += '.';
        name += expect_identifier();
      }
      if (unsupported_filters().count(name))
        fail_at("the filter '" + name + "' is not supported by dots1's chat template interpreter", node_at(t));
      if (!known_filters().count(name)) fail_at("no filter named '" + name + "'", node_at(t));
      auto e = expr(Expr::Kind::filter, t);
      e->name = std::move(name);
      e->children.push_back(std::move(node));  // the input first (null for block filters)
      if (is_op("(")) parse_call_args(*e);
      node = std::move(e);
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    const Token t = cur();
    next();  // 'is'
    const bool negated = skip_name("not");
    const Token nt = cur();
    std::string name = expect_identifier();
    while (is_op(".")) {
      next();
      name += '.';
      name += expect_identifier();
    }
    if (!known_tests().count(name)) fail_at("no test named '" + name + "'", node_at(nt));
    auto e = expr(Expr::Kind::test, t);
    e->name = std::move(name);
    e->children.push_back(std::move(node));
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((cur().type == Tok::name || cur().type == Tok::string || cur().type == Tok::integer ||
                cur().type == Tok::floating || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("you cannot chain multiple tests with is");
      e->children.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return e;
    auto n = expr(Expr::Kind::not_, t);
    n->children.push_back(std::move(e));
    return n;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::string> open_blocks_{"(none)"};
  std::vector<std::set<std::string>> macro_names_;  // names referenced inside each macro being parsed
};

/// Lexes and parses `source` (UTF-8). Throws TemplateError.
inline Program parse_template(std::string source) {
  if (source.size() > kMaxTemplateBytes)
    throw TemplateError("template is " + std::to_string(source.size()) + " bytes; the limit is " + std::to_string(kMaxTemplateBytes));
  try {
    tok::validate_utf8(source, "chat template");
  } catch (const TokenizerError& e) {
    throw TemplateError(e.what());
  }
  Lexer lexer(std::move(source));
  return Parser(lexer.run()).run();
}

}  // namespace dots1::jinja
