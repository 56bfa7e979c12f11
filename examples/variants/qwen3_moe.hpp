// examples/variants/qwen3_moe.hpp — Qwen3-MoE (HF Qwen3MoeForCausalLM, model_type "qwen3_moe") composed from
// dots1's blocks plus one new block: the sparse MoE with a softmax top-k router. The attention, the dense
// MLP, the decoder layer and the routed experts are dots1's, unchanged; this file adds the router, the
// block, its feed-forward policy, and the family (which layers are MoE).
//
//   using Qwen3MoeForCausalLM = dots1::CausalLM<dots1::EigenBackend<float>, dots1::variants::Qwen3Moe>;
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <dots1/model/dots1.hpp>

#include "qwen3.hpp"

namespace dots1::variants {

/// Qwen3MoeTopKRouter for one token, a portable functor (it runs on every backend through
/// B::for_each_index): p = softmax(logits) over all experts in float32, the top_k largest (descending),
/// and their probabilities as weights, renormalised to sum 1 when norm_topk_prob (no epsilon, as HF).
template <class T>
struct SoftmaxTopK {
  const T* logits;   // [tokens, experts]
  int32_t* indices;  // [tokens, top_k]
  T* weights;        // [tokens, top_k]
  int64_t experts, top_k;
  bool norm_topk_prob;

  DOTS1_HD void operator()(int64_t t) const {
    const T* l = logits + t * experts;
    T max_logit = -INFINITY;
    for (int64_t e = 0; e < experts; ++e) max_logit = l[e] > max_logit ? l[e] : max_logit;
    T total = 0;
    for (int64_t e = 0; e < experts; ++e) total += std::exp(l[e] - max_logit);
    int32_t* idx = indices + t * top_k;
    T* w = weights + t * top_k;
    T chosen = 0;
    for (int64_t k = 0; k < top_k; ++k) {  // the k-th largest logit is the k-th largest probability
      int64_t best = -1;
      for (int64_t e = 0; e < experts; ++e) {
        bool taken = false;
        for (int64_t p = 0; p < k; ++p) taken = taken || idx[p] == e;
        if (!taken && (best < 0 || l[e] > l[best])) best = e;
      }
      idx[k] = static_cast<int32_t>(best);
      w[k] = std::exp(l[best] - max_logit) / total;
      chosen += w[k];
    }
    if (norm_topk_prob)
      for (int64_t k = 0; k < top_k; ++k) w[k] = w[k] / chosen;
  }
};

/// Qwen3MoeSparseMoeBlock: the router (no bias, no correction bias, no groups, no scaling) and the routed
/// experts; no shared experts.
template <class B>
class Qwen3MoeSparseMoe {
 public:
  using Vector = typename B::Vector;
  struct Scratch {
    Vector router_logits, topk_weights;
    typename B::IndexVector topk_indices;
  };

  Qwen3MoeSparseMoe(const Dots1Config& c, Weights w)
      : experts_(*c.n_routed_experts), top_k_(*c.num_experts_per_tok), norm_topk_prob_(c.norm_topk_prob),
        gate(w.at("gate"), experts_, c.hidden_size, false, TensorKind::router),  // [E, H]
        experts(w, experts_, top_k_, c.hidden_size, c.moe_intermediate_size, activation_of(c.hidden_act)) {}

  template <class Obs>
  void operator()(const ForwardContext<B>& ctx, const Vector& x, Vector& y, const Obs&) const {
    auto& s = ctx.template scratch<Scratch>();
    const int64_t T = ctx.tokens();
    gate(x, T, s.router_logits);  // [T, E]
    B::resize(s.topk_indices, static_cast<size_t>(T * top_k_));
    B::resize(s.topk_weights, static_cast<size_t>(T * top_k_));
    B::for_each_index(T, SoftmaxTopK<typename B::Scalar>{B::ptr(s.router_logits), B::ptr(s.topk_indices), B::ptr(s.topk_weights), experts_,
                                                         top_k_, norm_topk_prob_});  // [T, K]
    experts(x, T, s.topk_indices, s.topk_weights, y);  // [T, H] = sum_k w * expert_k(x)
  }

 private:
  int64_t experts_, top_k_;
  bool norm_topk_prob_;

 public:
  Linear<B> gate;
  RoutedExperts<B> experts;
};

/// The feed-forward policy of Qwen3-MoE's sparse layers.
struct Qwen3SparseMoe {
  static constexpr const char* name = "moe";
  template <class B>
  using block = Qwen3MoeSparseMoe<B>;
};

/// Qwen3-MoE (model_type "qwen3_moe"): a layer is the sparse MoE when it is not in mlp_only_layers and
/// (layer + 1) is a multiple of decoder_sparse_step, the dense MLP otherwise; all layers slide or none.
struct Qwen3Moe {
  static constexpr const char* model_type = "qwen3_moe";
  static Dots1Config read_config(const nlohmann::json& j) {
    Dots1Config c = read_qwen3_config(j, /*moe=*/true);
    const int64_t E = c.n_routed_experts.value_or(0);
    if (E < 1) throw ConfigError("num_experts", std::to_string(E), "must be >= 1");
    if (!c.num_experts_per_tok || *c.num_experts_per_tok < 1 || *c.num_experts_per_tok > E)
      throw ConfigError("num_experts_per_tok", std::to_string(c.num_experts_per_tok.value_or(0)), "must be in [1, num_experts = " + std::to_string(E) + "]");
    if (c.moe_intermediate_size < 1) throw ConfigError("moe_intermediate_size", std::to_string(c.moe_intermediate_size), "must be >= 1");
    (void)sparse_step(c);
    (void)mlp_only_layers(c);
    return c;
  }
  static std::vector<LayerKind> layer_kinds(const Dots1Config& c) {
    const int64_t step = sparse_step(c);
    const std::vector<int64_t> dense = mlp_only_layers(c);
    const auto types = c.resolved_layer_types();
    std::vector<LayerKind> kinds;
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      const bool sparse = std::find(dense.begin(), dense.end(), i) == dense.end() && (i + 1) % step == 0;
      kinds.push_back({types[static_cast<size_t>(i)], sparse ? Qwen3SparseMoe::name : DenseMlp::name});
    }
    return kinds;
  }
  template <class B>
  using layers = typename LayerProduct<DecoderLayer, B, TypeList<FullAttention, SlidingWindowAttention>, TypeList<DenseMlp, Qwen3SparseMoe>>::type;

 private:
  static int64_t sparse_step(const Dots1Config& c) {
    const auto& v = c.extra.at("decoder_sparse_step");
    if (!v.is_number_integer() || v.get<int64_t>() < 1) throw ConfigError("decoder_sparse_step", v.dump(), "must be an integer >= 1");
    return v.get<int64_t>();
  }
  static std::vector<int64_t> mlp_only_layers(const Dots1Config& c) {
    const auto& v = c.extra.at("mlp_only_layers");
    std::vector<int64_t> out;
    if (!v.is_array()) throw ConfigError("mlp_only_layers", v.dump(), "expected a list of layer numbers");
    for (const auto& x : v) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= c.num_hidden_layers)
        throw ConfigError("mlp_only_layers", v.dump(), "each entry must be a layer number in [0, " + std::to_string(c.num_hidden_layers) + ")");
      out.push_back(x.get<int64_t>());
    }
    return out;
  }
};

}  // namespace dots1::variants
