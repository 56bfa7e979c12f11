// dots1/io/forward_preflight.hpp — the memory one forward will allocate, estimated from the config and the
// input before the forward starts, and checked with the memory preflight (base/memory_check.hpp). A forward
// with output_attentions on a long input holds layers x heads x seq x (past + seq) weights; a long prompt's
// KV cache and logits grow with it too. Without this check such a request is found out by the kernel's OOM
// killer halfway through; with it, the forward throws ResourceError naming the need and what is available.
//
// The estimate counts what grows with the input: the new KV cache rows, the logits (backend buffer and host
// copy), the hidden states and attention weights when asked for, and the activations of the widest block.
// Small forwards (decode steps) stay below the preflight's threshold and cost nothing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <variant>

#include "dots1/config.hpp"
#include "dots1/base/memory_check.hpp"
#include "dots1/base/forward_io.hpp"

namespace dots1 {

/// Bytes a forward of `in` after `past` cached tokens allocates, in `scalar_bytes`-byte scalars (saturating).
inline uint64_t forward_memory_bytes(const Dots1Config& c, const ForwardInput& in, int64_t past, uint64_t scalar_bytes) {
  const int64_t B = in.batch, S = in.seq, L = c.num_hidden_layers, H = c.hidden_size, kv = saturating_add(past < 0 ? 0 : past, S < 0 ? 0 : S);
  const auto scalar = static_cast<int64_t>(scalar_bytes);
  int64_t kept = S;
  if (const auto* k = std::get_if<int64_t>(&in.logits_to_keep.value)) kept = *k <= 0 ? S : std::min(*k, S);
  else kept = static_cast<int64_t>(std::get<std::vector<int64_t>>(in.logits_to_keep.value).size());
  int64_t widest = c.first_k_dense_replace > 0 ? c.intermediate_size : 0;  // an MLP's intermediate width
  if (c.any_moe_layer())
    widest = std::max(widest, c.moe_intermediate_size * (c.num_experts_per_tok.value_or(0) + c.n_shared_experts.value_or(0)) +
                                  c.n_routed_experts.value_or(0));
  uint64_t total = checked_bytes({2, L, B, S, c.kv_heads(), c.head_dim(), scalar});       // new K and V rows
  total = saturating_add(total, checked_bytes({2, B, kept, c.vocab_size, scalar}));        // logits
  total = saturating_add(total, checked_bytes({B, S, 16 * H + 4 * widest, scalar}));      // activations
  if (in.output_hidden_states) total = saturating_add(total, checked_bytes({L + 1, B, S, H, scalar}));
  if (in.output_attentions)
    total = saturating_add(total, checked_bytes({L, B, c.num_attention_heads, S, static_cast<int64_t>(std::min<uint64_t>(kv, INT64_MAX)), scalar}));
  return total;
}

/// ResourceError when the forward of `in` would not fit the available memory (see the file comment).
inline void check_forward_memory(const Dots1Config& c, const ForwardInput& in, int64_t past, uint64_t scalar_bytes) {
  const uint64_t bytes = forward_memory_bytes(c, in, past, scalar_bytes);
  if (bytes < limits::kPreflightMinBytes) return;
  check_allocation(bytes, "forward of " + std::to_string(in.batch) + " x " + std::to_string(in.seq) + " tokens" +
                              (past > 0 ? " after " + std::to_string(past) + " cached" : std::string()) +
                              (in.output_attentions ? " with output_attentions" : "") + (in.output_hidden_states ? " with output_hidden_states" : ""));
}

}  // namespace dots1
