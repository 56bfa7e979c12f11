// libFuzzer target: the dots1 tool's argument parsing. The input is a command line (arguments separated by
// NUL bytes) parsed by a CLI11 app declaring options exactly as the tool does: the sampling options of
// `generate` and `chat` (sampling_options.hpp), the model edits (edit_options.hpp), and integer options of
// every type and range the subcommands use, through integer_options.hpp; list options (--ids, --layers,
// --context) go through parse_integer_list. A refusal must be CLI11's ParseError or dots1::InputError; an
// accepted value must equal the number its text spells (checked with an independent 128-bit parser) and lie in
// its declared range, and the edits must build. Anything else (another exception, UB, a wrapped value) is a bug.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../../examples/dots1/edit_options.hpp"
#include "../../examples/dots1/integer_options.hpp"
#include "../../examples/dots1/sampling_options.hpp"
#include "fuzz_support.hpp"

namespace {

/// The decimal number `text` spells, if it is one (digits with an optional '-'), independent of from_chars.
std::optional<__int128> reference_value(const std::string& text) {
  if (text.empty() || text.size() > 30) return std::nullopt;
  size_t i = text[0] == '-' ? 1 : 0;
  if (i == text.size()) return std::nullopt;
  __int128 v = 0;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    v = v * 10 + (text[i] - '0');
  }
  return text[0] == '-' ? -v : v;
}

template <class T>
void check_value(const std::optional<std::string>& text, T value, dots1_cli::IntRange<T> range, const char* option) {
  if (!text) return;
  const auto ref = reference_value(*text);
  FUZZ_CHECK(ref.has_value(), std::string(option) + " accepted '" + *text + "'");
  FUZZ_CHECK(*ref == static_cast<__int128>(value), std::string(option) + " parsed '" + *text + "' as " + std::to_string(value));
  FUZZ_CHECK(value >= range.min && value <= range.max, std::string(option) + " outside its range");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args{"dots1"};
  std::string cur;
  for (size_t i = 0; i < size && args.size() < 40; ++i) {
    if (data[i] == 0) {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += static_cast<char>(data[i]);
    }
  }
  if (!cur.empty()) args.push_back(cur);
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());

  CLI::App app{"fuzz"};
  dots1_cli::SamplingOptions sampling;
  dots1_cli::EditOptions edits;
  sampling.add_to(&app);
  edits.add_to(&app);
  int threads = 0;
  int64_t row = 0;
  uint64_t seed64 = 1;
  std::optional<int> ranks;
  std::string ids, layers, contexts;
  // the raw texts, to check the parsed values against
  std::optional<std::string> t_threads, t_row, t_seed64, t_ranks, t_max_new, t_top_k, t_seed;
  constexpr dots1_cli::IntRange<int> threads_range{.min = 1, .max = 65536};
  constexpr dots1_cli::IntRange<int64_t> row_range{.min = 0};
  constexpr dots1_cli::IntRange<int> ranks_range{.min = 1, .max = 1 << 20};
  dots1_cli::add_integer_option(&app, "--threads", threads, "", threads_range);
  dots1_cli::add_integer_option(&app, "--row", row, "", row_range);
  dots1_cli::add_integer_option(&app, "--bench-seed", seed64, "");
  dots1_cli::add_integer_option(&app, "--ranks", ranks, "", ranks_range);
  app.add_option("--ids", ids, "");
  app.add_option("--layers", layers, "");
  app.add_option("--context", contexts, "");
  app.allow_extras(false);
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError&) {
    return 0;
  } catch (const dots1::InputError&) {
    return 0;
  }
  // The texts CLI11 handed to each option's parser.
  auto given = [&](const char* name) -> std::optional<std::string> {
    const auto& results = app.get_option(name)->results();
    if (results.empty()) return std::nullopt;
    return results.back();
  };
  t_threads = given("--threads");
  t_row = given("--row");
  t_seed64 = given("--bench-seed");
  t_ranks = given("--ranks");
  t_max_new = given("--max-new-tokens");
  t_top_k = given("--top-k");
  t_seed = given("--seed");
  check_value(t_threads, threads, threads_range, "--threads");
  check_value(t_row, row, row_range, "--row");
  check_value(t_seed64, seed64, dots1_cli::IntRange<uint64_t>{}, "--bench-seed");
  if (ranks) check_value(t_ranks, *ranks, ranks_range, "--ranks");
  if (sampling.max_new_tokens) check_value(t_max_new, *sampling.max_new_tokens, dots1_cli::IntRange<int64_t>{.min = 1}, "--max-new-tokens");
  if (sampling.top_k) check_value(t_top_k, *sampling.top_k, dots1_cli::IntRange<int64_t>{.min = 0}, "--top-k");
  if (sampling.seed) check_value(t_seed, *sampling.seed, dots1_cli::IntRange<uint64_t>{}, "--seed");
  try {
    (void)edits.build();
  } catch (const dots1::InputError&) {
  }
  for (const std::string* list : {&ids, &layers, &contexts}) {
    if (list->empty()) continue;
    try {
      const auto values = dots1_cli::parse_integer_list<int64_t>(*list, "--list", {.min = 0});
      FUZZ_CHECK(!values.empty(), "an empty list accepted");
      FUZZ_CHECK(list->front() != ',' && list->back() != ',' && list->find(",,") == std::string::npos, "an empty item accepted: " + *list);
      for (int64_t v : values) FUZZ_CHECK(v >= 0, "a value outside the range accepted");
    } catch (const dots1::InputError&) {
    }
  }
  return 0;
}
