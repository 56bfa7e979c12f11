// Small pieces shared by the dots1 tool's commands (host code only, so that the nvcc-compiled
// gpu_model.cu can include it too).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <dots1/error.hpp>
#include <dots1/io/checkpoint.hpp>

#include "integer_options.hpp"

namespace dots1_cli {

/// "1,2,3" -> {1, 2, 3} of int64 (integer_options.hpp: empty items, overflow and values outside `range` refused).
inline std::vector<int64_t> parse_int_list(const std::string& text, const std::string& option, IntRange<int64_t> range = {}) {
  return parse_integer_list<int64_t>(text, option, range);
}

/// Refuses, before any work, a run of `tokens` positions (a prompt, a prompt plus the tokens to generate, a
/// bench context) on a model whose context is shorter: the model was never trained on such positions, and the
/// attention cost of a long prompt grows with its square (a 23k-token prompt against a 1k context ran for
/// minutes before this check). `what` says where the length comes from.
inline void check_context_length(const dots1::Dots1Config& config, int64_t tokens, const std::string& what) {
  if (tokens > config.max_position_embeddings)
    throw dots1::InputError(what + " needs " + std::to_string(tokens) + " positions, but the model's context (max_position_embeddings) is " +
                            std::to_string(config.max_position_embeddings) + " tokens");
}

}  // namespace dots1_cli
