// The dots1 tool's one integer parser: every integer a user types (an option's value, an item of a list such
// as --ids 1,2,3 or --layers 0,3, the parts of --zero-head L:H) goes through parse_integer, so that none can
// wrap, overflow or be half-read:
//   * decimal digits only, with a '-' for signed types: "", "+1", " 1", "0x10", "1e3", "1.0", "12abc" are
//     refused; values beyond the type (2^63 for int64, 2^64 or any negative number for a uint64 seed) are
//     refused instead of wrapping to -1 or -100;
//   * every option declares its range (e.g. --max-new-tokens at least 1, --top-k at least 0), checked here;
//   * a list refuses empty items ("1,2,", ",1", "1,,2") and an empty list.
// A bad value raises dots1::InputError naming the option, the value (shortened) and the rule, which the tool
// prints as its one-line error.
//
// Declaring an integer option (the target may be int, int64_t, uint64_t, or std::optional of one; the range
// is an IntRange of the target's type, inclusive, by default the whole type):
//
//   std::optional<int64_t> max_new_tokens;
//   dots1_cli::add_integer_option(cmd, "--max-new-tokens", max_new_tokens, "tokens to generate", {.min = 1});
//   int64_t row = 0;                                    // a default value is shown in --help
//   dots1_cli::add_integer_option(cmd, "--row", row, "batch row of the per-token plots", {.min = 0});
//   uint64_t seed = 1;
//   dots1_cli::add_integer_option(cmd, "--seed", seed, "seed");          // any uint64; negative refused
//
// A list option is declared as a string and parsed with parse_integer_list when the command runs:
//
//   std::string ids;
//   cmd->add_option("--ids", ids, "prompt token ids, comma-separated (1,2,3)");
//   ... const std::vector<int64_t> prompt = dots1_cli::parse_integer_list<int64_t>(ids, "--ids", {.min = 0});
#pragma once

#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>

#include <dots1/error.hpp>

namespace dots1_cli {

/// An inclusive range of allowed values.
template <class T>
struct IntRange {
  T min = std::numeric_limits<T>::lowest();
  T max = std::numeric_limits<T>::max();
};

namespace detail {

template <class T>
struct integer_of {
  using type = T;
};
template <class T>
struct integer_of<std::optional<T>> {
  using type = T;
};
template <class T>
using integer_of_t = typename integer_of<T>::type;

template <class T>
std::string range_text(const IntRange<T>& r) {
  const bool low = r.min != std::numeric_limits<T>::lowest(), high = r.max != std::numeric_limits<T>::max();
  if (low && high) return "an integer in [" + std::to_string(r.min) + ", " + std::to_string(r.max) + "]";
  if (low) return "an integer >= " + std::to_string(r.min);
  if (high) return "an integer <= " + std::to_string(r.max);
  return std::is_signed_v<T> ? "a 64-bit integer" : "a non-negative 64-bit integer";
}

}  // namespace detail

/// `text` as a T in `range`, or InputError naming `option` (see the file comment).
template <class T>
T parse_integer(std::string_view text, std::string_view option, IntRange<T> range = {}) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  auto fail = [&](const std::string& why) -> dots1::InputError {
    return dots1::InputError(std::string(option) + ": '" + dots1::shown(text) + "' " + why);
  };
  const std::string expected = "(expected " + detail::range_text(range) + ")";
  if (text.empty()) throw fail("is empty " + expected);
  const bool negative = text[0] == '-';
  const std::string_view digits = negative ? text.substr(1) : text;
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos)
    throw fail("is not a decimal integer " + expected);
  if (negative && std::is_unsigned_v<T>) throw fail("is negative " + expected);
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range) throw fail("is out of range " + expected);
  if (ec != std::errc() || end != text.data() + text.size()) throw fail("is not a decimal integer " + expected);
  if (value < range.min || value > range.max) throw fail("is out of range " + expected);
  return value;
}

/// "1,2,3" -> {1, 2, 3}, each item through parse_integer; empty items and an empty list are refused.
template <class T>
std::vector<T> parse_integer_list(std::string_view text, std::string_view option, IntRange<T> range = {}) {
  if (text.empty()) throw dots1::InputError(std::string(option) + ": no values given (expected a comma-separated list such as 1,2,3)");
  std::vector<T> out;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string_view item = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty())
      throw dots1::InputError(std::string(option) + ": '" + dots1::shown(text) + "' has an empty item " + std::to_string(out.size() + 1) +
                              " (expected a comma-separated list such as 1,2,3)");
    out.push_back(parse_integer<T>(item, option, range));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

/// Adds an integer option whose value goes through parse_integer (see the file comment for an example).
template <class Target>
CLI::Option* add_integer_option(CLI::App* cmd, const std::string& name, Target& target, const std::string& description,
                                IntRange<detail::integer_of_t<Target>> range = {}) {
  using T = detail::integer_of_t<Target>;
  const std::string option = name.substr(0, name.find(','));  // "--seed,-s" -> "--seed" in messages
  auto* opt = cmd->add_option_function<std::string>(
      name, [&target, option, range](const std::string& text) { target = parse_integer<T>(text, option, range); }, description);
  opt->type_name(std::is_signed_v<T> ? "INT" : "UINT");
  if constexpr (!std::is_same_v<Target, std::optional<T>>) opt->default_str(std::to_string(target));
  return opt;
}

}  // namespace dots1_cli
