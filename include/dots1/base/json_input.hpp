// dots1/base/json_input.hpp — the one way dots1 parses JSON it is given (config.json, tokenizer.json,
// tokenizer_config.json, generation_config.json, model.safetensors.index.json, safetensors headers, trace
// metadata, forward inputs, `dots1 tokenize` lines), and checked reading of its integers.
//
// Before nlohmann sees the text, one pass checks two things nlohmann does not:
//   * nesting depth at most limits::kMaxJsonDepth (128, serde_json's limit: every file HF's Rust readers
//     accept passes). nlohmann's DOM is recursive in its destructor, copies, comparisons and dump(), so a
//     document nested a million levels deep would overflow the stack long after parsing succeeded;
//   * no NUL byte anywhere: nlohmann stops at a NUL as if the text ended there, so "{...}\0<anything>" would
//     parse, and a NUL inside a string is not JSON either.
// A problem is reported through the caller's `fail` (which throws the caller's error type, with its file or
// field name), so every format keeps its own error type and wording.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/base/input_file.hpp"
#include "dots1/base/limits.hpp"
#include "dots1/base/memory_check.hpp"

namespace dots1::io {

/// A NUL byte's offset in `text` (memchr: fast), for the message of nul_problem.
inline std::string nul_problem(std::string_view text) {
  if (const void* nul = std::memchr(text.data(), 0, text.size()))
    return "a NUL byte at offset " + std::to_string(static_cast<const char*>(nul) - text.data()) +
           " (JSON text holds none; a binary or truncated file?)";
  return {};
}

/// The message for nesting past the limit, at byte `at`.
inline std::string depth_problem(std::size_t at, std::size_t max_depth = limits::kMaxJsonDepth) {
  return "arrays and objects nested more than " + std::to_string(max_depth) + " levels deep (at byte " + std::to_string(at) +
         "; the limit of HF's JSON readers too)";
}

/// What is wrong with `text` before parsing (see the file comment), or an empty string. One pass.
inline std::string json_prescan_problem(std::string_view text, std::size_t max_depth = limits::kMaxJsonDepth) {
  if (std::string nul = nul_problem(text); !nul.empty()) return nul;
  std::size_t depth = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return depth_problem(i, max_depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return {};
}

/// nlohmann's message for a parse error, shortened (its "last read" part repeats the input).
inline std::string json_error_text(const nlohmann::json::exception& e) { return shown(e.what(), 2 * kMaxShownBytes); }

/// Parses `text`; on any problem calls fail(description), which must throw (the caller's error type, naming
/// its file or field; the description is what went wrong, e.g. "not valid JSON: ...").
template <class Fail>
nlohmann::json parse_json(std::string_view text, Fail&& fail) {
  if (const std::string problem = json_prescan_problem(text); !problem.empty()) fail(problem);
  // A DOM takes up to ~16 bytes per byte of text (a list of small numbers): the preflight before building it.
  check_allocation(checked_bytes({static_cast<int64_t>(text.size()), 16}), "parsing " + std::to_string(text.size()) + " bytes of JSON");
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    fail(json_error_text(e));
  }
  throw Error("unreachable: the JSON fail handler returned");  // fail must throw
}

/// A regular file of at most `max_bytes` (base/input_file.hpp: IoError for missing, special or oversized files)
/// parsed with parse_json.
template <class Fail>
nlohmann::json read_json_file(const std::filesystem::path& path, std::string_view what, std::uint64_t max_bytes, Fail&& fail) {
  const std::string text = read_input_file(path, what, max_bytes);
  return parse_json(text, std::forward<Fail>(fail));
}

/// A JSON value as an error message shows it (shortened, see dots1::shown).
inline std::string shown_json(const nlohmann::json& v) { return shown(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)); }

/// The value of an integer JSON number that fits int64, else nullopt: nlohmann keeps integers above
/// INT64_MAX as unsigned, and get<int64_t>() would silently wrap them (2^64 - 100 to -100, HF's ignore index).
inline std::optional<int64_t> json_int64(const nlohmann::json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

}  // namespace dots1::io
