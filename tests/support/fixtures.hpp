// Helpers for tests that read the committed HF reference fixtures (tests/fixtures/...).
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <dots1/io/safetensors.hpp>
#include <dots1/base/forward_io.hpp>

namespace dots1_test {

inline std::filesystem::path fixtures_dir() { return DOTS1_FIXTURES_DIR; }
inline std::filesystem::path shared_dir() { return DOTS1_SHARED_DIR; }

inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

/// Flattens a JSON array of arrays (of numbers) row-major.
template <class T>
std::vector<T> flatten(const nlohmann::json& j) {
  std::vector<T> out;
  if (j.is_array()) {
    for (const auto& x : j) {
      auto part = flatten<T>(x);
      out.insert(out.end(), part.begin(), part.end());
    }
  } else {
    out.push_back(j.get<T>());
  }
  return out;
}

/// Largest |a - b| over two equally long arrays (infinity if the sizes differ).
template <class A, class B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

/// A ForwardInput from one run of a fixture's case.json.
inline dots1::ForwardInput forward_input_from_json(const nlohmann::json& run) {
  dots1::ForwardInput in;
  if (run.contains("input_ids")) {
    in.batch = static_cast<int64_t>(run["input_ids"].size());
    in.seq = static_cast<int64_t>(run["input_ids"][0].size());
    in.input_ids = flatten<int64_t>(run["input_ids"]);
  } else {
    in.batch = static_cast<int64_t>(run["inputs_embeds"].size());
    in.seq = static_cast<int64_t>(run["inputs_embeds"][0].size());
    in.inputs_embeds = flatten<float>(run["inputs_embeds"]);
  }
  if (run.contains("attention_mask")) in.attention_mask = flatten<int64_t>(run["attention_mask"]);
  if (run.contains("position_ids")) in.position_ids = flatten<int64_t>(run["position_ids"]);
  if (run.contains("labels")) in.labels = flatten<int64_t>(run["labels"]);
  if (run.contains("logits_to_keep")) {
    const auto& k = run["logits_to_keep"];
    if (k.is_array()) in.logits_to_keep = dots1::LogitsToKeep(k.get<std::vector<int64_t>>());
    else in.logits_to_keep = dots1::LogitsToKeep(k.get<int64_t>());
  }
  in.output_hidden_states = run.value("output_hidden_states", false);
  in.output_attentions = run.value("output_attentions", false);
  in.use_cache = run.value("use_cache", false);
  return in;
}

}  // namespace dots1_test
