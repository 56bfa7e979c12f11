// dots1/model/shapes.hpp — the HF tensor names and shapes of a Dots1 checkpoint (spec 5) for a config,
// and the parameter / memory arithmetic `dots1 info` reports. Sizes use checked 64-bit arithmetic.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dots1/config.hpp"

namespace dots1 {

/// Every tensor of a released (per-expert) checkpoint with its shape, keyed by HF name.
inline std::map<std::string, std::vector<int64_t>> model_tensor_shapes(const Dots1Config& c) {
  std::map<std::string, std::vector<int64_t>> s;
  const int64_t H = c.hidden_size, d = c.head_dim(), nh = c.num_attention_heads, nkv = c.kv_heads();
  s["model.embed_tokens.weight"] = {c.vocab_size, H};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    s[p + "input_layernorm.weight"] = {H};
    s[p + "post_attention_layernorm.weight"] = {H};
    s[p + "self_attn.q_proj.weight"] = {nh * d, H};
    s[p + "self_attn.k_proj.weight"] = {nkv * d, H};
    s[p + "self_attn.v_proj.weight"] = {nkv * d, H};
    s[p + "self_attn.o_proj.weight"] = {H, nh * d};
    if (c.attention_bias) {
      s[p + "self_attn.q_proj.bias"] = {nh * d};
      s[p + "self_attn.k_proj.bias"] = {nkv * d};
      s[p + "self_attn.v_proj.bias"] = {nkv * d};
      s[p + "self_attn.o_proj.bias"] = {H};
    }
    s[p + "self_attn.q_norm.weight"] = {d};
    s[p + "self_attn.k_norm.weight"] = {d};
    if (!c.is_moe_layer(i)) {
      s[p + "mlp.gate_proj.weight"] = {c.intermediate_size, H};
      s[p + "mlp.up_proj.weight"] = {c.intermediate_size, H};
      s[p + "mlp.down_proj.weight"] = {H, c.intermediate_size};
    } else {
      const int64_t E = *c.n_routed_experts, Im = c.moe_intermediate_size, Is = c.shared_intermediate_size();
      s[p + "mlp.gate.weight"] = {E, H};
      s[p + "mlp.gate.e_score_correction_bias"] = {E};
      for (int64_t e = 0; e < E; ++e) {
        const std::string q = p + "mlp.experts." + std::to_string(e) + ".";
        s[q + "gate_proj.weight"] = {Im, H};
        s[q + "up_proj.weight"] = {Im, H};
        s[q + "down_proj.weight"] = {H, Im};
      }
      s[p + "mlp.shared_experts.gate_proj.weight"] = {Is, H};
      s[p + "mlp.shared_experts.up_proj.weight"] = {Is, H};
      s[p + "mlp.shared_experts.down_proj.weight"] = {H, Is};
    }
  }
  s["model.norm.weight"] = {H};
  if (!c.tie_word_embeddings) s["lm_head.weight"] = {c.vocab_size, H};
  return s;
}

/// Parameter counts: total, and active per token (all but the routed experts a token does not use).
struct ParameterCount {
  int64_t total = 0;
  int64_t active_per_token = 0;
  int64_t routed_expert_parameters = 0;  // all routed experts of all layers
};

inline ParameterCount count_parameters(const Dots1Config& c) {
  ParameterCount p;
  const int64_t H = c.hidden_size, d = c.head_dim(), nh = c.num_attention_heads, nkv = c.kv_heads();
  // q, o: [nh*d, H]; k, v: [nkv*d, H]; q_norm, k_norm: [d]; biases on q, k, v ([nh*d], [nkv*d] x2) and o ([H])
  const int64_t attn = 2 * H * nh * d + 2 * H * nkv * d + 2 * d + (c.attention_bias ? nh * d + 2 * nkv * d + H : 0);
  p.total = c.vocab_size * H * (c.tie_word_embeddings ? 1 : 2) + H;  // embeddings, head, final norm
  p.active_per_token = p.total;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    int64_t layer = attn + 2 * H;
    int64_t active = layer;
    if (!c.is_moe_layer(i)) {
      layer += 3 * H * c.intermediate_size;
      active = layer;
    } else {
      const int64_t E = *c.n_routed_experts, K = *c.num_experts_per_tok, per_expert = 3 * H * c.moe_intermediate_size;
      // router [E, H] and shared experts; e_score_correction_bias is a buffer, not a parameter (as in HF)
      const int64_t common = E * H + 3 * H * c.shared_intermediate_size();
      layer += common + E * per_expert;
      active += common + K * per_expert;
      p.routed_expert_parameters += E * per_expert;
    }
    p.total += layer;
    p.active_per_token += active;
  }
  return p;
}

}  // namespace dots1
