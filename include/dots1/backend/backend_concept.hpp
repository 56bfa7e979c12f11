// dots1/backend/backend_concept.hpp — everything the model asks of a backend, as one C++20 concept.
//
// The blocks (model/) are written once against this contract; the Eigen backend (CPU), the Thrust backend
// (CUDA, or Thrust's OpenMP/CPP device systems) and the meta backend (backend/meta: shapes only, to
// describe a model without loading it) implement it, and every model template `requires Backend<B>`.
// Activations are flat row-major buffers with their shapes passed explicitly; a backend may keep them
// anywhere (MemorySpace) as long as B::ptr gives pointers its own functors and collectives can use.
//
//   storage   Scalar, Vector, IndexVector (int32), Int64Vector, Matrix (a weight, possibly bf16), ExpertMatrices
//             matrix(view) vector(view): a loaded tensor in backend memory (a view of the source when possible)
//             upload(span) download(vector) resize size ptr bytes(matrix)
//   traits    name; memory (host or device: whether a load counts against host memory);
//             keeps_in_place(dtype): whether matrix() uses a tensor of that dtype without a copy
//   math      embedding linear rms_norm rope act_mul add gather_rows
//             attention(q, k, v, shape, MaskSpec<Window>, out, weights) for any Window type
//             route (Dots1's sigmoid router) moe_experts (routed experts, summed in ascending expert id)
//             kv_reserve kv_write kv_drop_front (KV storage [batch, capacity, row])
//             for_each_index(n, f): a portable functor (kernels/portable.hpp style, DOTS1_HD) for every
//             index in [0, n), where the data is: what a new block's own math runs on
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

#include "dots1/base/geometry.hpp"
#include "dots1/base/tensor.hpp"
#include "dots1/kernels/portable.hpp"

namespace dots1 {

/// Where a backend keeps weights and activations.
enum class MemorySpace { host, device };

namespace backend_detail {
/// A functor the concept hands to for_each_index.
struct IndexProbe {
  DOTS1_HD void operator()(int64_t) const {}
};
}  // namespace backend_detail

template <class B>
concept Backend = requires(typename B::Vector& v, const typename B::Vector& cv, typename B::IndexVector& iv,
                           const typename B::IndexVector& civ, const typename B::Int64Vector& c64, const typename B::Matrix& m,
                           const TensorView& t, const std::vector<typename B::ExpertMatrices>& experts, int64_t n, size_t size,
                           const AttentionShape& as, const RouterShape& rs, const kernels::MaskSpec<kernels::NoWindow>& full,
                           const kernels::MaskSpec<kernels::SlidingWindow>& sliding, kernels::Activation act,
                           std::span<const typename B::Scalar> host, std::span<const int32_t> host32, std::span<const int64_t> host64,
                           DType dtype) {
  typename B::Scalar;
  typename B::ExpertMatrices;
  { B::name } -> std::convertible_to<const char*>;
  { B::memory } -> std::convertible_to<MemorySpace>;
  { B::keeps_in_place(dtype) } -> std::same_as<bool>;
  // storage
  { B::matrix(t) } -> std::same_as<typename B::Matrix>;
  { B::vector(t) } -> std::same_as<typename B::Vector>;
  { B::upload(host) } -> std::same_as<typename B::Vector>;
  { B::upload(host32) } -> std::same_as<typename B::IndexVector>;
  { B::upload(host64) } -> std::same_as<typename B::Int64Vector>;
  { B::download(cv) } -> std::same_as<std::vector<typename B::Scalar>>;
  { B::download(civ) } -> std::same_as<std::vector<int32_t>>;
  B::resize(v, size);
  B::resize(iv, size);
  { B::size(cv) } -> std::same_as<size_t>;
  { B::ptr(v) } -> std::same_as<typename B::Scalar*>;
  { B::ptr(cv) } -> std::same_as<const typename B::Scalar*>;
  { B::ptr(iv) } -> std::same_as<int32_t*>;
  { B::ptr(civ) } -> std::same_as<const int32_t*>;
  { B::ptr(c64) } -> std::same_as<const int64_t*>;
  { B::bytes(m) } -> std::same_as<size_t>;
  // math
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
  B::attention(cv, cv, cv, as, full, v, &v);
  B::attention(cv, cv, cv, as, sliding, v, &v);
  B::route(cv, cv, n, rs, iv, v);
  B::moe_experts(cv, n, n, civ, cv, n, experts, n, act, v);
  B::for_each_index(n, backend_detail::IndexProbe{});
};

}  // namespace dots1
