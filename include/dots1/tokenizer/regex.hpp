// dots1/tokenizer/regex.hpp — the Split pre-tokenizer's regular expressions: Oniguruma patterns (what
// HF tokenizers runs) translated to PCRE2 (UTF + UCP, JIT-compiled), iterated like Oniguruma does.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "dots1/error.hpp"
#include "dots1/base/limits.hpp"
#include "dots1/tokenizer/unicode.hpp"

namespace dots1::tok {

namespace detail {

inline void append_ranges(std::string& out, std::span<const tables::CodepointRange> ranges) {
  char buf[40];
  for (const auto& r : ranges) {
    if (r.first == 0xFFFFFFFF) continue;  // empty-table placeholder
    if (r.first == r.last)
      std::snprintf(buf, sizeof buf, "\\x{%X}", static_cast<unsigned>(r.first));
    else
      std::snprintf(buf, sizeof buf, "\\x{%X}-\\x{%X}", static_cast<unsigned>(r.first), static_cast<unsigned>(r.last));
    out += buf;
  }
}

}  // namespace detail

/// Translates an Oniguruma pattern (Ruby syntax, as HF tokenizers compiles it) into an equivalent PCRE2
/// pattern, to be compiled with UTF | UCP | MULTILINE (Ruby's ^ and $ are line anchors).
///
/// Rewritten so that PCRE2 matches exactly what Oniguruma matches:
///   * \s and \S: Oniguruma's \s is White_Space; PCRE2's UCP \s also matches U+180E.
///   * \p{L} and \p{N} (also \pL, \pN, \P{..}): PCRE2 10.42 has Unicode 14 tables and Oniguruma in
///     tokenizers 0.23 has Unicode 16; the letters and digits assigned since are added to the class.
///   * \v (a vertical tab in Ruby, a class in PCRE2) and \uHHHH (a Ruby escape).
/// Constructs whose meaning differs between the two engines are refused with TokenizerError rather
/// than translated approximately: \w \W \b \B \h \H \X \R, (?m) (dotall in Ruby), (?x), POSIX
/// brackets, nested classes and && intersections, \S or \P{..} inside a class. Backreferences (\1, \k<n>) and
/// subexpression calls (\g<n>) are refused too: their cost per matching step is unbounded (see for_each_match).
/// Known remaining difference (documented, not detected): under (?i), Oniguruma also applies
/// multi-character case folds (e.g. "ss" matches U+00DF); single-character folds agree.
inline std::string onig_to_pcre2(std::string_view p, std::string_view origin) {
  auto unsupported = [&](const std::string& what) -> TokenizerError {
    return TokenizerError(std::string(origin) + ": unsupported regex construct " + shown(what) + " in Split pattern '" +
                          shown(p) + "' (Oniguruma and PCRE2 disagree on it; dots1 refuses rather than "
                          "risk a different encoding)");
  };
  std::string space;  // the members of Oniguruma's \s, for use inside a class
  detail::append_ranges(space, tables::kOnigSpace);

  std::string out;
  bool in_class = false;
  size_t class_start = 0;  // index in p just after '[' or '[^'
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\') {
      if (i + 1 >= p.size()) throw unsupported("trailing backslash");
      const char e = p[++i];
      switch (e) {
        case 's':
          out += in_class ? space : "[" + space + "]";
          continue;
        case 'S':
          if (in_class) throw unsupported("\\S inside a character class");
          out += "[^" + space + "]";
          continue;
        case 'p':
        case 'P': {
          std::string name;
          size_t end = i;
          if (i + 1 < p.size() && p[i + 1] == '{') {
            end = p.find('}', i + 2);
            if (end == std::string_view::npos) throw unsupported("unterminated \\p{");
            name = std::string(p.substr(i + 2, end - i - 2));
          } else if (i + 1 < p.size()) {
            end = i + 1;
            name = std::string(1, p[i + 1]);
          } else {
            throw unsupported("trailing \\p");
          }
          if (!name.empty() && name[0] == '^') throw unsupported("\\p{^...}");
          std::span<const tables::CodepointRange> extra;
          std::string base;
          if (name == "L" || name == "Letter") {
            extra = tables::kOnigLetterExtra;
            base = "\\p{L}";
          } else if (name == "N" || name == "Number") {
            extra = tables::kOnigNumberExtra;
            base = "\\p{N}";
          }
          if (base.empty()) {  // other properties: PCRE2's own tables (see the header notes)
            out += '\\';
            out += e;
            out += p.substr(i + 1, end - i);
          } else if (in_class) {
            if (e == 'P') throw unsupported("\\P{" + name + "} inside a character class");
            out += base;
            detail::append_ranges(out, extra);
          } else {
            out += e == 'P' ? "[^" : "[";
            out += base;
            detail::append_ranges(out, extra);
            out += ']';
          }
          i = end;
          continue;
        }
        case 'w': case 'W': case 'b': case 'B': case 'h': case 'H': case 'X': case 'R':
          throw unsupported(std::string("\\") + e);
        case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9': case 'k': case 'g':
          // Backreferences and subexpression calls: one step of them compares or re-enters an unbounded part of
          // the text, so the bounded matching of for_each_match could not bound their cost (no real
          // tokenizer's pattern has one). Inside a class, \1 is an octal escape in both engines.
          if (!in_class) throw unsupported(std::string("\\") + e + " (a backreference or subexpression call)");
          out += '\\';
          out += e;
          continue;
        case 'v':
          out += "\\x0B";
          continue;
        case 'u': {
          if (i + 4 >= p.size()) throw unsupported("truncated \\u escape");
          out += "\\x{" + std::string(p.substr(i + 1, 4)) + "}";
          i += 4;
          continue;
        }
        default:
          out += '\\';
          out += e;
          continue;
      }
    }
    if (in_class) {
      if (c == ']' && i > class_start) {
        in_class = false;
      } else if (c == '[') {
        throw unsupported(p.substr(i, 2) == "[:" ? "POSIX bracket [:...:]" : "nested character class");
      } else if (c == '&' && i + 1 < p.size() && p[i + 1] == '&') {
        throw unsupported("&& class intersection");
      }
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      class_start = i + 1;  // a ']' right here is a literal
      continue;
    }
    if (c == '(' && p.substr(i, 3) == "(?P") throw unsupported("(?P...) (Python-style groups are not Oniguruma syntax)");
    if (c == '(' && i + 1 < p.size() && p[i + 1] == '?') {
      // Inline options (?imx-imx) or (?imx-imx:...): only i is the same in both engines.
      size_t j = i + 2;
      while (j < p.size() && (p[j] == 'i' || p[j] == 'm' || p[j] == 'x' || p[j] == '-')) ++j;
      if (j > i + 2 && j < p.size() && (p[j] == ':' || p[j] == ')')) {
        const auto flags = p.substr(i + 2, j - i - 2);
        if (flags.find_first_of("mx") != std::string_view::npos)
          throw unsupported("inline option (?" + std::string(flags) + ")");
      }
    }
    out += c;
  }
  if (in_class) throw unsupported("unterminated character class");
  return out;
}

namespace detail {

// Per-thread PCRE2 match state: match data (only group 0 is read), a JIT stack large enough for the
// pre-tokenizer patterns, and two match contexts: the fast path's (JIT stack, match limit
// limits::kRegexFastMatchLimit) and the bounded retry's (match limit set per attempt, heap limit).
// Matching from several threads (encode_batch) needs one each.
struct Pcre2Scratch {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  pcre2_match_context* retry_ctx = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
  Pcre2Scratch() {
    pcre2_jit_stack_assign(ctx, nullptr, stack);
    pcre2_set_match_limit(ctx, limits::kRegexFastMatchLimit);
    pcre2_set_heap_limit(ctx, limits::kRegexHeapLimitKiB);
    pcre2_set_heap_limit(retry_ctx, limits::kRegexHeapLimitKiB);
  }
  ~Pcre2Scratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(retry_ctx);
    pcre2_match_context_free(ctx);
    pcre2_match_data_free(md);
  }
  Pcre2Scratch(const Pcre2Scratch&) = delete;
  Pcre2Scratch& operator=(const Pcre2Scratch&) = delete;
};

inline Pcre2Scratch& pcre2_scratch() {
  thread_local Pcre2Scratch s;
  return s;
}

/// PCRE2's result codes that mean "this attempt needed more than it was allowed", as opposed to a real error.
inline bool pcre2_out_of_budget(int rc) {
  return rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT;
}

}  // namespace detail

/// A compiled Split pattern. Immutable and shareable between threads.
class Regex {
 public:
  /// Compiles an Oniguruma-syntax pattern; `origin` (e.g. "tokenizer.json pre_tokenizer") is put in errors.
  Regex(std::string_view onig_pattern, std::string_view origin) : source_(onig_pattern) {
    const std::string pcre = onig_to_pcre2(onig_pattern, origin);
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre.data()), pcre.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &off, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw TokenizerError(std::string(origin) + ": cannot compile Split pattern '" + shown(onig_pattern) +
                           "': " + reinterpret_cast<const char*>(msg));
    }
    code_.reset(code, pcre2_code_free);
    // JIT makes matching several times faster; without it (unsupported CPU) the interpreter is used.
    jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  }

  const std::string& source() const noexcept { return source_; }

  /// Calls f(start, end) for every match in `subject` (valid UTF-8), left to right, with the iteration
  /// rules of the onig crate's find_iter that HF uses: after a match ending at e, search again from e;
  /// an empty match right where the previous match ended is skipped by advancing one character.
  ///
  /// Bounded work (limits.hpp): PCRE2's match limit applies to each start position, and a search may try
  /// every position, so a limit alone still allows cost quadratic in the text (or worse: catastrophic
  /// backtracking). Here each search first runs unanchored (JIT) with a small per-position limit, which
  /// bounds it by limit x positions tried; a search that hits the limit is redone one start position at a time
  /// (anchored, the same leftmost match), each attempt with a limit doubled until it suffices, and every limit
  /// granted is charged to a budget linear in the text's length. A pattern that exhausts it throws
  /// TokenizerError instead of running for hours; the matches are the same as unbounded matching's otherwise.
  template <class F>
  void for_each_match(std::string_view subject, F&& f) const {
    auto& scratch = detail::pcre2_scratch();
    const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
    const size_t n = subject.size();
    const uint64_t budget = limits::kRegexBaseSteps + (n > (UINT64_MAX - limits::kRegexBaseSteps) / limits::kRegexStepsPerByte
                                                           ? UINT64_MAX - limits::kRegexBaseSteps
                                                           : limits::kRegexStepsPerByte * n);
    uint64_t spent = 0;
    size_t last_end = 0;
    std::optional<size_t> last_match_end;
    while (last_end <= n) {
      int rc = jit_ ? pcre2_jit_match(code_.get(), s, n, last_end, 0, scratch.md, scratch.ctx)
                    : pcre2_match(code_.get(), s, n, last_end, PCRE2_NO_UTF_CHECK, scratch.md, scratch.ctx);
      if (detail::pcre2_out_of_budget(rc)) rc = match_one_position_at_a_time(subject, last_end, budget, spent);
      if (rc == PCRE2_ERROR_NOMATCH) return;
      if (rc < 0) fail(rc, last_end);
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.md);
      const size_t ms = ov[0], me = ov[1];
      if (ms == me && last_match_end && *last_match_end == me) {
        last_end += last_end < n ? static_cast<size_t>(utf8_len(static_cast<unsigned char>(subject[last_end]))) : 1;
        continue;
      }
      last_end = me;
      last_match_end = me;
      f(ms, me);
    }
  }

 private:
  /// The leftmost match starting at or after `from`, tried one start position at a time (PCRE2_ANCHORED, the
  /// interpreter), each attempt with a match limit doubled until it suffices; every limit granted is added to
  /// `spent`, and passing `budget` throws. Returns a PCRE2 result code (the match in the scratch match data).
  int match_one_position_at_a_time(std::string_view subject, size_t from, uint64_t budget, uint64_t& spent) const {
    auto& scratch = detail::pcre2_scratch();
    const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
    const size_t n = subject.size();
    for (size_t start = from; start <= n;) {
      int rc = PCRE2_ERROR_MATCHLIMIT;
      for (uint64_t limit = 64; detail::pcre2_out_of_budget(rc); limit *= 2) {
        if (limit > budget - std::min(spent, budget)) {
          throw TokenizerError("Split pattern '" + shown(source_) + "' needs more than " + std::to_string(budget) +
                               " matching steps on a text of " + std::to_string(n) + " bytes (at byte " + std::to_string(start) +
                               "): its cost grows faster than the text (catastrophic backtracking), so dots1 stops instead of "
                               "running unbounded (limit: " + std::to_string(limits::kRegexStepsPerByte) + " steps per byte + " +
                               std::to_string(limits::kRegexBaseSteps) + ")");
        }
        spent += limit;
        pcre2_set_match_limit(scratch.retry_ctx, static_cast<uint32_t>(std::min<uint64_t>(limit, UINT32_MAX)));
        pcre2_set_depth_limit(scratch.retry_ctx, static_cast<uint32_t>(std::min<uint64_t>(limit, UINT32_MAX)));
        rc = pcre2_match(code_.get(), s, n, start, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, scratch.md, scratch.retry_ctx);
        if (limit >= UINT32_MAX) break;
      }
      if (rc != PCRE2_ERROR_NOMATCH) return rc;
      start += start < n ? static_cast<size_t>(utf8_len(static_cast<unsigned char>(subject[start]))) : 1;
    }
    return PCRE2_ERROR_NOMATCH;
  }

  [[noreturn]] void fail(int rc, size_t at) const {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    throw TokenizerError("Split pattern '" + shown(source_) + "' failed to match at byte " + std::to_string(at) + ": " +
                         reinterpret_cast<const char*>(msg) +
                         (rc == PCRE2_ERROR_HEAPLIMIT ? " (more than " + std::to_string(limits::kRegexHeapLimitKiB / 1024) +
                                                            " MiB of backtracking memory)"
                                                      : std::string()));
  }

  std::string source_;
  std::shared_ptr<pcre2_code> code_;
  bool jit_ = false;
};

}  // namespace dots1::tok
