// dots1/bench/traffic.hpp — the bytes and FLOPs a model's forward really needs, from its blocks'
// declarations (model/describe.hpp) and the dtype each tensor is held in: the denominators of a
// benchmark's GB/s and GFLOP/s.
//
// Decoding one token (batch 1) reads: one embedding row; per layer every tensor a token uses: the norms,
// the attention projections (and biases), the dense MLP or the router + the top_k routed experts (batch 1
// routes to exactly top_k distinct experts: each expert's share used_per_token = top_k / E) + the shared
// experts; the K and V rows of the cache (float32) up to the context, or a sliding window's last W; the
// final norm and the LM head (the whole embedding table when tied). FLOPs: 2 per weight of every matrix
// read but the embedding, plus 4 * heads * head_dim per attended key (q.k and p.v).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dots1/config.hpp"
#include "dots1/model/describe.hpp"

namespace dots1::bench {

/// Bytes per element a tensor is held in: 2 or 4.
using ElementBytes = std::function<double(const TensorSpec&)>;

class TrafficModel {
 public:
  TrafficModel(const Dots1Config& c, const ModelDescription& model, const ElementBytes& element_bytes) : c_(c), windows_(model.windows) {
    for (const auto& t : model.tensors) {
      const double n = static_cast<double>(t.held_numel());
      const double bytes = n * element_bytes(t);
      resident_ += bytes;
      if (t.kind == TensorKind::embedding) {
        per_token_bytes_ += bytes / static_cast<double>(t.shape[0]);  // one row
        if (c.tie_word_embeddings) {  // the LM head reads the whole table
          per_token_bytes_ += bytes;
          per_token_flops_ += 2 * n;
          head_flops_ += 2 * n;
        }
        continue;
      }
      const bool matrix = t.kind == TensorKind::matrix || t.kind == TensorKind::router || t.kind == TensorKind::lm_head;
      per_token_bytes_ += bytes * t.used_per_token;
      if (matrix) {
        per_token_flops_ += 2 * n * t.used_per_token;
        if (t.kind == TensorKind::lm_head) head_flops_ += 2 * n;
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
    for (int64_t w : windows_) b += kv_row_bytes_ * static_cast<double>(attended(w, kv_len));
    return b;
  }
  /// FLOPs of one decode step attending over `kv_len` keys.
  double decode_flops(int64_t kv_len) const {
    double f = per_token_flops_;
    for (int64_t w : windows_) f += attention_flops_per_key() * static_cast<double>(attended(w, kv_len));
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
    for (int64_t w : windows_)
      for (int64_t i = 0; i < tokens; ++i) f += attention_flops_per_key() * static_cast<double>(attended(w, i + 1));
    return f;
  }

 private:
  double attention_flops_per_key() const { return 4.0 * static_cast<double>(c_.num_attention_heads * c_.head_dim()); }
  /// Keys a layer with attention window w (0: every key) reads at kv_len keys.
  static int64_t attended(int64_t w, int64_t kv_len) { return w > 0 ? std::min<int64_t>(kv_len, w) : kv_len; }

  Dots1Config c_;
  std::vector<int64_t> windows_;
  double resident_ = 0, per_token_bytes_ = 0, per_token_flops_ = 0, head_flops_ = 0, kv_row_bytes_ = 0;
};

}  // namespace dots1::bench
