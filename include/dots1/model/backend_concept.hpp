// dots1/model/backend_concept.hpp — what the model asks of a backend.
//
// The model code (model/dots1_model.hpp) is written once against this concept; EigenBackend (CPU) and the
// Thrust backend implement it. Shapes are passed explicitly; activations are flat row-major buffers.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

#include "dots1/io/safetensors.hpp"
#include "dots1/kernels/portable.hpp"

namespace dots1 {

/// Geometry of one attention call: queries [batch, q_len, heads, head_dim] against the first kv_len rows
/// of the cache [batch, capacity, kv_heads, head_dim].
struct AttentionShape {
  int64_t batch = 0, q_len = 0, kv_len = 0, capacity = 0, heads = 0, kv_heads = 0, head_dim = 0;
  double scaling = 1.0;
};

/// The router's hyper-parameters (Dots1TopkRouter).
struct RouterShape {
  int64_t experts = 0, top_k = 0, n_group = 1, topk_group = 1;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
};

template <class B>
concept Backend = requires(typename B::Vector& v, const typename B::Vector& cv, typename B::IndexVector& iv,
                           const typename B::IndexVector& civ, const typename B::Int64Vector& c64, const typename B::Matrix& m,
                           const TensorView& t, const std::vector<typename B::ExpertMatrices>& experts, int64_t n,
                           const AttentionShape& as, const RouterShape& rs, const kernels::MaskSpec& mask,
                           kernels::Activation act, std::span<const typename B::Scalar> host) {
  typename B::Scalar;
  { B::matrix(t) } -> std::same_as<typename B::Matrix>;
  { B::vector(t) } -> std::same_as<typename B::Vector>;
  { B::upload(host) } -> std::same_as<typename B::Vector>;
  { B::download(cv) } -> std::same_as<std::vector<typename B::Scalar>>;
  B::embedding(m, c64, v);
  B::linear(m, &cv, cv, n, v);
  B::rms_norm(cv, cv, n, n, 1e-6, v);
  B::rope(v, n, n, n, cv, cv);
  B::act_mul(cv, cv, act, v);
  B::add(v, cv);
  B::gather_rows(cv, n, c64, v);
  B::kv_reserve(v, n, n, n, n, n);
  B::kv_write(v, n, n, n, n, cv, n);
  B::kv_drop_front(v, n, n, n, n, n);
  B::attention(cv, cv, cv, as, mask, v, &v);
  B::route(cv, cv, n, rs, iv, v);
  B::moe_experts(cv, n, n, civ, cv, n, experts, n, act, v);
};

}  // namespace dots1
