// dots1/bench/traffic.hpp — the bytes and FLOPs a Dots1 forward really needs, from the config and the
// dtype each tensor is held in: the denominators of a benchmark's GB/s and GFLOP/s.
//
// Decoding one token (batch 1) reads: one embedding row; per layer the norms, q/k/v/o (and biases), the
// dense MLP or the router + the top_k routed experts actually used (batch 1 routes to exactly top_k
// distinct experts) + the shared experts; the K and V rows of the cache up to the context (float32); the
// final norm and the LM head. FLOPs: 2 per weight of every matrix read but the embedding, plus
// 4 * heads * head_dim per attended key (q.k and p.v).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dots1/config.hpp"
#include "dots1/model/shapes.hpp"

namespace dots1::bench {

/// Bytes per element a tensor is held in (name, shape) -> 2 or 4.
using ElementBytes = std::function<double(const std::string&, const std::vector<int64_t>&)>;

class TrafficModel {
 public:
  TrafficModel(const Dots1Config& c, const ElementBytes& element_bytes) : c_(c) {
    const int64_t E = c.any_moe_layer() ? *c.n_routed_experts : 0;
    const int64_t K = c.any_moe_layer() ? *c.num_experts_per_tok : 0;
    for (const auto& [name, shape] : model_tensor_shapes(c)) {
      double n = 1;
      for (auto d : shape) n *= static_cast<double>(d);
      const double bytes = n * element_bytes(name, shape);
      resident_ += bytes;
      if (name == "model.embed_tokens.weight") {
        per_token_bytes_ += bytes / static_cast<double>(c.vocab_size);  // one row
        if (c.tie_word_embeddings) {  // the LM head reads the whole table
          per_token_bytes_ += bytes;
          per_token_flops_ += 2 * n;
          head_flops_ += 2 * n;
        }
        continue;
      }
      const bool matrix = shape.size() >= 2;
      const bool routed = name.find(".mlp.experts.") != std::string::npos;
      const bool head = name == "lm_head.weight";
      const double share = routed ? static_cast<double>(K) / static_cast<double>(E) : 1.0;
      per_token_bytes_ += bytes * share;
      if (matrix) {
        per_token_flops_ += 2 * n * share;
        if (head) head_flops_ += 2 * n;
      }
    }
    kv_row_bytes_ = 2.0 * static_cast<double>(c.kv_heads() * c.head_dim()) * 4.0;  // K and V, float32
  }

  /// Weights held in memory (bytes).
  double resident_weight_bytes() const { return resident_; }
  /// Weight bytes read to decode one token (batch 1).
  double weight_bytes_per_token() const { return per_token_bytes_; }
  /// KV cache bytes per cached token (all layers).
  double kv_bytes_per_token() const { return kv_row_bytes_ * static_cast<double>(c_.num_hidden_layers); }

  /// KV bytes read by one decode step attending over `kv_len` keys (sliding layers over their window).
  double kv_bytes_read(int64_t kv_len) const {
    double b = 0;
    for (const auto& p : c_.layer_plan()) b += kv_row_bytes_ * static_cast<double>(attended(p, kv_len));
    return b;
  }
  /// FLOPs of one decode step attending over `kv_len` keys.
  double decode_flops(int64_t kv_len) const {
    double f = per_token_flops_;
    for (const auto& p : c_.layer_plan()) f += attention_flops_per_key() * static_cast<double>(attended(p, kv_len));
    return f;
  }

  /// Bytes and FLOPs of decoding `steps` tokens after `context` cached ones (step s attends context + s + 1 keys).
  double decode_bytes(int64_t context, int64_t steps) const {
    double b = 0;
    for (int64_t s = 0; s < steps; ++s) b += per_token_bytes_ + kv_bytes_read(context + s + 1);
    return b;
  }
  double decode_flops(int64_t context, int64_t steps) const {
    double f = 0;
    for (int64_t s = 0; s < steps; ++s) f += decode_flops(context + s + 1);
    return f;
  }

  /// FLOPs of a prefill of `tokens` tokens into an empty cache, with logits for the last position only
  /// (as generate() asks for): every token through every layer, causal attention, one LM-head row.
  double prefill_flops(int64_t tokens) const {
    double f = static_cast<double>(tokens) * (per_token_flops_ - head_flops_) + head_flops_;
    for (const auto& p : c_.layer_plan())
      for (int64_t i = 0; i < tokens; ++i) f += attention_flops_per_key() * static_cast<double>(attended(p, i + 1));
    return f;
  }

 private:
  double attention_flops_per_key() const { return 4.0 * static_cast<double>(c_.num_attention_heads * c_.head_dim()); }
  int64_t attended(const LayerPlan& p, int64_t kv_len) const {
    return p.attention == AttentionKind::sliding ? std::min<int64_t>(kv_len, c_.window()) : kv_len;
  }

  Dots1Config c_;
  double resident_ = 0, per_token_bytes_ = 0, per_token_flops_ = 0, head_flops_ = 0, kv_row_bytes_ = 0;
};

}  // namespace dots1::bench
