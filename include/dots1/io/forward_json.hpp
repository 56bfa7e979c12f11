// dots1/io/forward_json.hpp — the JSON form of forward inputs used by `dots1 forward --input IN.json`:
//   {"input_ids": [[...], ...], "attention_mask": [[...]], "position_ids": [[...]], "labels": [[...]],
//    "logits_to_keep": 0 | k | [positions]}
// Every malformed field raises InputError naming the field and what was expected.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/base/forward_io.hpp"
#include "dots1/base/json_input.hpp"

namespace dots1 {

namespace detail {

/// A rectangular 2-D integer array; returns it flat and sets rows/cols.
inline std::vector<int64_t> read_int_matrix(const nlohmann::json& j, const std::string& field, int64_t& rows, int64_t& cols) {
  if (!j.is_array() || j.empty()) throw InputError("forward input: '" + field + "' must be a non-empty 2-D array of integers");
  rows = static_cast<int64_t>(j.size());
  cols = -1;
  std::vector<int64_t> flat;
  for (const auto& row : j) {
    if (!row.is_array()) throw InputError("forward input: '" + field + "' must be a 2-D array (a list of rows)");
    if (cols < 0) cols = static_cast<int64_t>(row.size());
    if (static_cast<int64_t>(row.size()) != cols)
      throw InputError("forward input: '" + field + "' rows have different lengths (" + std::to_string(cols) + " and " +
                       std::to_string(row.size()) + ")");
    for (const auto& v : row) {
      // json_int64, not get<int64_t>(): 2^64 - 100 would wrap to -100, the label HF ignores.
      const auto x = io::json_int64(v);
      if (!x)
        throw InputError("forward input: '" + field + "' holds " + io::shown_json(v) +
                         (v.is_number_integer() ? ", which does not fit a 64-bit integer" : ", expected integers"));
      flat.push_back(*x);
    }
  }
  if (cols == 0) throw InputError("forward input: '" + field + "' has empty rows");
  return flat;
}

}  // namespace detail

inline ForwardInput forward_input_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw InputError("forward input: expected a JSON object with 'input_ids'");
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const char* known[] = {"input_ids", "attention_mask", "position_ids", "labels", "logits_to_keep"};
    bool ok = false;
    for (const char* k : known) ok = ok || it.key() == k;
    if (!ok) throw InputError("forward input: unknown field '" + shown(it.key()) + "' (known: input_ids, attention_mask, position_ids, labels, logits_to_keep)");
  }
  if (!j.contains("input_ids")) throw InputError("forward input: missing 'input_ids'");
  ForwardInput in;
  in.use_cache = false;
  in.input_ids = detail::read_int_matrix(j["input_ids"], "input_ids", in.batch, in.seq);
  auto optional_matrix = [&](const char* field, std::vector<int64_t>& out, bool allow_single_row) {
    if (!j.contains(field) || j[field].is_null()) return;
    int64_t r = 0, c = 0;
    out = detail::read_int_matrix(j[field], field, r, c);
    if (!(r == in.batch || (allow_single_row && r == 1)))
      throw InputError(std::string("forward input: '") + field + "' has " + std::to_string(r) + " rows, input_ids has " + std::to_string(in.batch));
    if (std::string(field) != "attention_mask" && c != in.seq)
      throw InputError(std::string("forward input: '") + field + "' rows have " + std::to_string(c) + " entries, input_ids rows have " +
                       std::to_string(in.seq));
  };
  optional_matrix("attention_mask", in.attention_mask, false);
  optional_matrix("position_ids", in.position_ids, true);
  optional_matrix("labels", in.labels, false);
  if (j.contains("logits_to_keep") && !j["logits_to_keep"].is_null()) {
    const auto& k = j["logits_to_keep"];
    if (k.is_number_integer()) {
      const auto n = io::json_int64(k);
      if (!n) throw InputError("forward input: 'logits_to_keep' = " + io::shown_json(k) + " does not fit a 64-bit integer");
      in.logits_to_keep = LogitsToKeep(*n);
    } else if (k.is_array()) {
      std::vector<int64_t> positions;
      for (const auto& p : k) {
        const auto x = io::json_int64(p);
        if (!x) throw InputError("forward input: 'logits_to_keep' list holds " + io::shown_json(p) + ", expected integers within 64 bits");
        positions.push_back(*x);
      }
      in.logits_to_keep = LogitsToKeep(std::move(positions));
    } else {
      throw InputError("forward input: 'logits_to_keep' must be an integer or a list of positions");
    }
  }
  return in;
}

}  // namespace dots1
