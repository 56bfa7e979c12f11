// dots1/backend/thrust/thrust_backend.hpp — the Thrust backend: storage in thrust::device_vector, the
// element-wise and per-row math as the portable functors of kernels/portable.hpp run by thrust::for_each,
// projections as cuBLAS GEMMs (CUDA device system) or Eigen GEMMs (OMP/CPP device systems).
//
// The same source serves every Thrust device system: nvcc builds it for CUDA (THRUST_DEVICE_SYSTEM_CUDA,
// the default there), g++ for OpenMP with -DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP -fopenmp, which
// is how the test suite checks it against HF on machines without a GPU. Every pointer handed to a functor
// is a raw device pointer (thrust::raw_pointer_cast), so the model's MaskSpec pointers (B::ptr of the
// mask vectors) are device pointers as the kernels need.
//
// Weights: matrices arrive as float32 (or the compute dtype) or, with float compute, as bfloat16 (a bf16
// checkpoint, or any checkpoint loaded with WeightFormat::bf16), which stay bf16 in device memory (half the
// bytes and half the bandwidth). Products over bf16 weights accumulate in float32:
//   * up to gemv_max_rows activation rows (decode): float32 activations against the bf16 weights widened
//     exactly (a warp-per-row CUDA kernel; the OMP/CPP systems widen and use Eigen), i.e. the CPU
//     backend's bf16 arithmetic up to summation order;
//   * more rows (prefill): cuBLAS bf16 tensor-core GEMMs (cublasGemmEx, CUDA_R_16BF inputs,
//     CUBLAS_COMPUTE_32F). Tensor cores need bf16 activations too; with Bf16Activations::split (the
//     default) each activation is split as hi + lo (both bf16, hi = bf16(x), lo = bf16(x - hi)) and two
//     GEMMs accumulate into the same float32 output, which keeps ~16 significant bits of the activations
//     (relative error ~2^-17) at twice the tensor-core work; Bf16Activations::rounded runs one GEMM on
//     bf16(x) (relative error ~2^-9 per projection, the usual bf16 inference numerics). The OMP/CPP
//     systems compute exactly these products (hi, lo widened) with Eigen, so the tests here measure the
//     numerics the GPU will have.
//
// Routed experts: with few (token, expert) slots (decode) all experts' projections run as one grouped
// launch each (gate, up, down), with no host synchronisation; with many (prefill) the slots are sorted by
// expert on the device and each non-empty expert runs its GEMMs over its contiguous block of rows, on the
// one stream.
//
// Determinism: no atomics anywhere; the MoE scatter sums each token's expert outputs in a fixed order
// (ascending expert id, as HF's per-expert loop and the Eigen backend do).
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <thrust/binary_search.h>
#include <thrust/copy.h>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/gather.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/sequence.h>
#include <thrust/sort.h>
#include <thrust/transform.h>

#include "dots1/error.hpp"
#include "dots1/base/tensor.hpp"
#include "dots1/kernels/portable.hpp"
#include "dots1/backend/backend_concept.hpp"
#include "dots1/backend/thrust/token_selection.hpp"

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#define DOTS1_THRUST_CUDA 1
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "dots1/backend/thrust/cuda_kernels.hpp"
#else
#define DOTS1_THRUST_CUDA 0
#include <Eigen/Core>
#endif

namespace dots1 {

namespace thrust_detail {

/// dst[i] = src[(rows[i / width] / div) * width + i % width]: embedding lookups and row gathers (div 1),
/// and the MoE gather of each (token, k) slot's token row (rows = slot ids, div = top_k).
template <class T, class I>
struct GatherRows {
  const T* src;
  const I* rows;
  int64_t div;
  T* dst;
  int64_t width;
  DOTS1_HD void operator()(int64_t i) const {
    const int64_t r = static_cast<int64_t>(rows[i / width]) / div;
    dst[i] = src[r * width + i % width];
  }
};

/// Copies `blocks` blocks of `len` values: dst[b*dst_stride + r] = src[b*src_stride + r]. The KV cache's
/// per-batch-entry moves; source and destination must not overlap.
template <class T>
struct StridedCopy {
  const T* src;
  T* dst;
  int64_t len, src_stride, dst_stride;
  DOTS1_HD void operator()(int64_t i) const {
    const int64_t b = i / len, r = i % len;
    dst[b * dst_stride + r] = src[b * src_stride + r];
  }
};

/// y[i] += bias[i % width] (nn.Linear's bias, added after the GEMM as in the Eigen backend).
template <class T>
struct AddBias {
  T* y;
  const T* bias;
  int64_t width;
  DOTS1_HD void operator()(int64_t i) const { y[i] += bias[i % width]; }
};

/// x -> x / d (slot id -> token id).
struct DivideBy {
  int32_t d;
  DOTS1_HD int32_t operator()(int32_t x) const { return x / d; }
};

/// A weight as float: float32 as is, bf16 (raw bits) widened exactly.
DOTS1_HD inline float weight_value(float w) { return w; }
DOTS1_HD inline double weight_value(double w) { return w; }
DOTS1_HD inline float weight_value(uint16_t w) { return kernels::bf16_to_f32(w); }

/// The embedding lookup of a bf16 table: dst[i] = widen(src[ids[i / width] * width + i % width]).
template <class T>
struct GatherBf16Rows {
  const uint16_t* src;
  const int64_t* rows;
  T* dst;
  int64_t width;
  DOTS1_HD void operator()(int64_t i) const { dst[i] = static_cast<T>(kernels::bf16_to_f32(src[rows[i / width] * width + i % width])); }
};

/// dst[i] = widen(src[i]) (bf16 -> float32, exact).
struct WidenBf16 {
  const uint16_t* src;
  float* dst;
  DOTS1_HD void operator()(int64_t i) const { dst[i] = kernels::bf16_to_f32(src[i]); }
};

/// x = hi + lo with hi = bf16(x), lo = bf16(x - hi): float32 activations as two bf16 operands for tensor cores.
struct SplitBf16 {
  const float* x;
  uint16_t* hi;
  uint16_t* lo;  // null: hi only (Bf16Activations::rounded)
  DOTS1_HD void operator()(int64_t i) const {
    const uint16_t h = kernels::f32_to_bf16(x[i]);
    hi[i] = h;
    if (lo) lo[i] = kernels::f32_to_bf16(x[i] - kernels::bf16_to_f32(h));
  }
};

/// The grouped expert product on the OMP/CPP systems (the CUDA system runs cuda::grouped_gemv_kernel):
/// y[p, o] = sum_k x[p / div, k] * W_{expert_of[p]}[o, k], one output value per index.
template <class W>
struct GroupedRowDot {
  const float* x;
  int64_t div;
  const int32_t* expert_of;
  const W* const* table;
  float* y;
  int64_t out, in;
  DOTS1_HD void operator()(int64_t i) const {
    const int64_t p = i / out, o = i % out;
    const W* wr = table[expert_of[p]] + o * in;
    const float* xr = x + (p / div) * in;
    float acc = 0;
    for (int64_t k = 0; k < in; ++k) acc += xr[k] * weight_value(wr[k]);
    y[i] = acc;
  }
};

/// The MoE scatter of the grouped path, one output value per index: out[t, c] = sum_j w[s_j] * y[s_j, c]
/// over token t's slots s_j = t*top_k + j taken in ascending expert id (a token's experts are distinct).
template <class T>
struct CombineByExpert {
  const T* y;               // [tokens*top_k, hidden], row = slot
  const T* w;               // [tokens*top_k]
  const int32_t* experts;   // [tokens*top_k]
  T* out;                   // [tokens, hidden]
  int64_t hidden, top_k;
  DOTS1_HD void operator()(int64_t i) const {
    const int64_t t = i / hidden, c = i % hidden;
    const int32_t* e = experts + t * top_k;
    T o = 0;
    int32_t prev = -1;
    for (int64_t j = 0; j < top_k; ++j) {
      int64_t best = -1;
      for (int64_t q = 0; q < top_k; ++q)
        if (e[q] > prev && (best < 0 || e[q] < e[best])) best = q;
      if (best < 0) break;
      prev = e[best];
      const int64_t s = t * top_k + best;
      o += y[s * hidden + c] * w[s];
    }
    out[i] = o;
  }
};

/// The MoE scatter, one output value per index: out[t, c] = sum_j w[p_j] * y[p_j, c] over token t's slots
/// p_j in expert-sorted order (order[t*top_k + j] ascending), starting from 0 — the Eigen backend's
/// "out += y * w, experts ascending" in the same order, without atomics.
template <class T>
struct CombineSlots {
  const T* y;           // [slots, hidden], rows in expert-sorted order
  const T* w;           // [slots], routing weight of each sorted row
  const int32_t* order; // [tokens, top_k], sorted positions of each token's slots, ascending
  T* out;               // [tokens, hidden]
  int64_t hidden, top_k;
  DOTS1_HD void operator()(int64_t i) const {
    const int64_t t = i / hidden, c = i % hidden;
    T o = 0;
    for (int64_t j = 0; j < top_k; ++j) {
      const int64_t p = order[t * top_k + j];
      o += y[p * hidden + c] * w[p];
    }
    out[i] = o;
  }
};

#if DOTS1_THRUST_CUDA
inline void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuBLAS ") + what + " failed: " + cublasGetStatusString(s));
}

/// One cuBLAS handle per host thread (cuBLAS handles must not be shared by concurrent threads), created
/// on first use and bound to the stream Thrust's default policy uses, so GEMMs and Thrust algorithms are
/// ordered on one stream.
class CublasContext {
 public:
  static cublasHandle_t handle() {
    thread_local CublasContext ctx;
    return ctx.handle_;
  }
  CublasContext(const CublasContext&) = delete;
  CublasContext& operator=(const CublasContext&) = delete;

 private:
  CublasContext() {
    check_cublas(cublasCreate(&handle_), "cublasCreate");
    check_cublas(cublasSetStream(handle_, cuda::stream()), "cublasSetStream");
    // Plain FP32 math for float32 GEMMs: no TF32 tensor-op shortcuts, the results must stay within fp32
    // rounding of HF. (bf16 GEMMs use tensor cores under this mode too.)
    check_cublas(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  }
  ~CublasContext() {
    if (handle_) cublasDestroy(handle_);  // at thread exit; a failure there cannot be reported
  }
  cublasHandle_t handle_ = nullptr;
};
#endif

}  // namespace thrust_detail

/// How GEMMs over bf16 weights with more than ThrustBackend::gemv_max_rows rows feed float32 activations
/// to bf16 tensor cores (see the header comment).
enum class Bf16Activations { split, rounded };

template <class T = float>
struct ThrustBackend {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "ThrustBackend computes in float or double");
  using Scalar = T;
  using Vector = thrust::device_vector<T>;
  using IndexVector = thrust::device_vector<int32_t>;
  using Int64Vector = thrust::device_vector<int64_t>;
  static constexpr const char* name = DOTS1_THRUST_CUDA ? "thrust-cuda" : "thrust";
  /// generate() chooses tokens on the device: the logits never leave it (token_selection.hpp).
  using TokenSelector = ThrustTokenSelector;
  /// bf16 weights stay bf16 on the device with float compute; double compute converts everything.
  static constexpr bool keeps_bf16 = std::is_same_v<T, float>;
  /// Weights and activations in device memory (the host's is not where a load's size matters).
  static constexpr MemorySpace memory = MemorySpace::device;
  /// Every weight is copied to the device; a bf16 one stays bf16 (float compute).
  static bool keeps_in_place(DType) { return false; }
  /// Products over bf16 weights with at most this many rows (at most 8) use float32 activations (the
  /// GEMV path). Tunable before forwards run, like the two settings below (the tests force each path).
  static inline int64_t gemv_max_rows = 8;
  /// Routed-expert calls with at most this many (token, expert) slots run grouped (decode).
  static inline int64_t grouped_max_slots = 64;
  /// The activations of bf16 tensor-core GEMMs: split (default, ~fp32) or rounded (one GEMM). Set it
  /// before forwards run (it is read by every GEMM over bf16 weights with more than gemv_max_rows rows).
  static inline Bf16Activations bf16_activations = Bf16Activations::split;

  /// A weight matrix [rows, cols], row-major, in device memory: in the compute dtype, or bf16 (raw bits)
  /// when it arrived as bf16 and the compute dtype is float. Copies share the storage (a tied LM head is
  /// the embedding matrix).
  struct Matrix {
    const void* data = nullptr;  // device pointer
    DType dtype = std::is_same_v<T, float> ? DType::F32 : DType::F64;
    int64_t rows = 0, cols = 0;
    std::shared_ptr<const void> owner;

    bool is_bf16() const { return dtype == DType::BF16; }
    const T* values() const { return static_cast<const T*>(data); }          // when !is_bf16()
    const uint16_t* bf16() const { return static_cast<const uint16_t*>(data); }  // when is_bf16()
    size_t element_bytes() const { return is_bf16() ? 2 : sizeof(T); }
  };
  struct ExpertMatrices {
    Matrix gate, up, down;  // [inter, hidden], [inter, hidden], [hidden, inter]
  };

  // ---------------------------------------------------------------- storage
  static Matrix matrix(const TensorView& t) {
    Matrix m;
    m.rows = t.shape.size() >= 2 ? t.shape[0] : 1;  // [out, in] (a 1-D tensor is one row)
    m.cols = m.rows ? t.numel() / m.rows : 0;
    if (keeps_bf16 && t.dtype == DType::BF16) {
      std::vector<uint16_t> host(static_cast<size_t>(t.numel()));
      if (!host.empty()) std::memcpy(host.data(), t.data, host.size() * sizeof(uint16_t));  // the mapping may be unaligned
      auto d = std::make_shared<const thrust::device_vector<uint16_t>>(host.begin(), host.end());
      m.data = thrust::raw_pointer_cast(d->data());
      m.dtype = DType::BF16;
      m.owner = std::move(d);
      return m;
    }
    const std::vector<T> host = t.to_vector<T>();
    auto d = std::make_shared<const thrust::device_vector<T>>(host.data(), host.data() + host.size());
    m.data = thrust::raw_pointer_cast(d->data());
    m.owner = std::move(d);
    return m;
  }
  static Vector vector(const TensorView& t) {
    const std::vector<T> host = t.to_vector<T>();
    return Vector(host.data(), host.data() + host.size());
  }
  // Raw pointers are host iterators to Thrust: these are host -> device copies.
  static Vector upload(std::span<const T> v) { return Vector(v.data(), v.data() + v.size()); }
  static IndexVector upload(std::span<const int32_t> v) { return IndexVector(v.data(), v.data() + v.size()); }
  static Int64Vector upload(std::span<const int64_t> v) { return Int64Vector(v.data(), v.data() + v.size()); }
  static std::vector<T> download(const Vector& v) { return to_host(v); }
  static std::vector<int32_t> download(const IndexVector& v) { return to_host(v); }
  static void resize(Vector& v, size_t n) { v.resize(n); }
  static void resize(IndexVector& v, size_t n) { v.resize(n); }
  static size_t size(const Vector& v) { return v.size(); }
  static T* ptr(Vector& v) { return raw(v); }
  static const T* ptr(const Vector& v) { return raw(v); }
  static int32_t* ptr(IndexVector& v) { return raw(v); }
  static const int32_t* ptr(const IndexVector& v) { return raw(v); }  // null when empty: "no mask"
  static const int64_t* ptr(const Int64Vector& v) { return raw(v); }
  static size_t bytes(const Matrix& m) { return static_cast<size_t>(m.rows * m.cols) * m.element_bytes(); }

  // ---------------------------------------------------------------- ops
  /// out[t] = table[ids[t]]
  static void embedding(const Matrix& table, const Int64Vector& ids, Vector& out) {
    out.resize(ids.size() * static_cast<size_t>(table.cols));
    if (table.is_bf16())
      for_n(static_cast<int64_t>(out.size()), thrust_detail::GatherBf16Rows<T>{table.bf16(), raw(ids), raw(out), table.cols});
    else
      for_n(static_cast<int64_t>(out.size()), thrust_detail::GatherRows<T, int64_t>{table.values(), raw(ids), 1, raw(out), table.cols});
  }

  /// y[rows, out] = x[rows, in] . W^T (+ bias)
  static void linear(const Matrix& w, const Vector* bias, const Vector& x, int64_t rows, Vector& y) {
    y.resize(static_cast<size_t>(rows * w.rows));
    gemm(w, raw(x), rows, raw(y));
    if (bias) for_n(static_cast<int64_t>(y.size()), thrust_detail::AddBias<T>{raw(y), raw(*bias), w.rows});
  }

  static void rms_norm(const Vector& x, const Vector& w, int64_t rows, int64_t dim, double eps, Vector& y) {
    y.resize(x.size());
    for_n(rows, kernels::RmsNormRow<T>{raw(x), raw(w), raw(y), dim, static_cast<T>(static_cast<float>(eps))});
  }

  static void rope(Vector& x, int64_t tokens, int64_t heads, int64_t head_dim, const Vector& cos, const Vector& sin) {
    for_n(tokens * heads, kernels::RopeHead<T>{raw(x), raw(cos), raw(sin), heads, head_dim});
  }

  static void act_mul(const Vector& gate, const Vector& up, kernels::Activation act, Vector& out) {
    out.resize(gate.size());  // out may be gate itself: element-wise, so in place is fine
    for_n(static_cast<int64_t>(gate.size()), kernels::ActMul<T>{raw(gate), raw(up), raw(out), act});
  }

  static void add(Vector& acc, const Vector& x) {
    thrust::transform(thrust::device, acc.begin(), acc.end(), x.begin(), acc.begin(), thrust::plus<T>());
  }

  /// out = x[rows[i]] for each i, rows of `width`.
  static void gather_rows(const Vector& x, int64_t width, const Int64Vector& rows, Vector& out) {
    out.resize(rows.size() * static_cast<size_t>(width));
    for_n(static_cast<int64_t>(out.size()), thrust_detail::GatherRows<T, int64_t>{raw(x), raw(rows), 1, raw(out), width});
  }

  // KV storage: [batch, capacity, row]
  static void kv_reserve(Vector& cache, int64_t batch, int64_t old_capacity, int64_t new_capacity, int64_t row, int64_t stored) {
    Vector grown(static_cast<size_t>(batch * new_capacity * row));
    if (stored > 0)
      for_n(batch * stored * row, thrust_detail::StridedCopy<T>{raw(cache), raw(grown), stored * row, old_capacity * row, new_capacity * row});
    cache.swap(grown);
  }
  static void kv_write(Vector& cache, int64_t batch, int64_t capacity, int64_t row, int64_t at, const Vector& rows, int64_t count) {
    for_n(batch * count * row, thrust_detail::StridedCopy<T>{raw(rows), raw(cache) + at * row, count * row, count * row, capacity * row});
  }
  static void kv_drop_front(Vector& cache, int64_t batch, int64_t capacity, int64_t row, int64_t stored, int64_t drop) {
    // The kept rows move towards the front of their own region; a parallel copy of overlapping ranges
    // would race, so they go through a temporary.
    const int64_t keep = (stored - drop) * row;
    if (keep <= 0) return;
    Vector kept(static_cast<size_t>(batch * keep));
    for_n(batch * keep, thrust_detail::StridedCopy<T>{raw(cache) + drop * row, raw(kept), keep, capacity * row, keep});
    for_n(batch * keep, thrust_detail::StridedCopy<T>{raw(kept), raw(cache), keep, keep, capacity * row});
  }

  /// Eager attention in three passes, each over many independent indices (so a decode step, with one
  /// query per head, still spreads over the device): the scores of every (row, key) pair, the softmax of
  /// every row, then every (row, dim) output value. Each value is computed with exactly the operations, in
  /// the order, of kernels::AttentionRow (the CPU's reference row functor), so the results are identical.
  /// A fused CUDA kernel (shared-memory tiles, online softmax) is the faster path still to come.
  template <class Window>
  static void attention(const Vector& q, const Vector& k, const Vector& v, const AttentionShape& s,
                        const kernels::MaskSpec<Window>& mask, Vector& out, Vector* weights) {
    out.resize(static_cast<size_t>(s.batch * s.q_len * s.heads * s.head_dim));
    const int64_t rows = s.batch * s.heads * s.q_len;
    T* scores = grow(scratch().scores, rows * s.kv_len);
    if (weights) weights->resize(static_cast<size_t>(rows * s.kv_len));
    const kernels::AttentionGeometry<T> g{s.q_len, s.kv_len, s.capacity, s.heads, s.kv_heads, s.head_dim, static_cast<T>(s.scaling)};
    for_n(rows * s.kv_len, kernels::AttentionScores<T, Window>{raw(q), raw(k), scores, g, mask});
    for_n(rows, kernels::AttentionSoftmax<T>{scores, weights ? raw(*weights) : nullptr, s.kv_len});
    for_n(rows * s.head_dim, kernels::AttentionOutput<T>{raw(v), scores, raw(out), g});
  }

  /// f(i) for every i in [0, n): a portable functor (DOTS1_HD) on the device system.
  template <class F>
  static void for_each_index(int64_t n, const F& f) {
    for_n(n, f);
  }

  static void route(const Vector& logits, const Vector& bias, int64_t tokens, const RouterShape& r, IndexVector& indices, Vector& weights) {
    indices.resize(static_cast<size_t>(tokens * r.top_k));
    weights.resize(static_cast<size_t>(tokens * r.top_k));
    T* work = grow(scratch().router, tokens * (r.experts + r.n_group));
    for_n(tokens, kernels::RouteToken<T>{raw(logits), raw(bias), raw(indices), raw(weights), work, r.experts, r.top_k, r.n_group,
                                         r.topk_group, r.norm_topk_prob, static_cast<T>(static_cast<float>(r.routed_scaling_factor))});
  }

  /// out[t] = sum_k w[t,k] * Expert_{idx[t,k]}(x[t]), every output value summing its token's top_k
  /// expert rows in ascending expert order. Few slots (decode, float compute): moe_grouped. Otherwise the
  /// tokens*top_k (token, k) slots are sorted by expert (stable: ascending slot within an expert) and each
  /// non-empty expert runs its three projections as GEMMs over its contiguous block of gathered rows.
  static void moe_experts(const Vector& x, int64_t tokens, int64_t hidden, const IndexVector& indices, const Vector& weights,
                          int64_t top_k, const std::vector<ExpertMatrices>& experts, int64_t inter, kernels::Activation act, Vector& out) {
    const int64_t slots = tokens * top_k;
    const auto n_experts = static_cast<int64_t>(experts.size());
    out.resize(static_cast<size_t>(tokens * hidden));
    if (slots == 0) return;
    if constexpr (std::is_same_v<T, float>) {
      if (slots <= grouped_max_slots && same_dtype(experts)) {
        moe_grouped(x, tokens, hidden, indices, weights, top_k, experts, inter, act, out);
        return;
      }
    }
    // 1. group the slots by expert
    IndexVector expert_of(indices);
    IndexVector slot(static_cast<size_t>(slots));
    thrust::sequence(thrust::device, slot.begin(), slot.end());
    thrust::stable_sort_by_key(thrust::device, expert_of.begin(), expert_of.end(), slot.begin());
    // 2. expert e owns sorted rows [begin[e], begin[e+1]); the host needs the sizes to issue the GEMMs
    Int64Vector begin_d(static_cast<size_t>(n_experts + 1));
    thrust::lower_bound(thrust::device, expert_of.begin(), expert_of.end(), thrust::counting_iterator<int32_t>(0),
                        thrust::counting_iterator<int32_t>(static_cast<int32_t>(n_experts + 1)), begin_d.begin());
    const std::vector<int64_t> begin = to_host(begin_d);
    // 3. the routed rows, in sorted order, through the experts
    Vector xs(static_cast<size_t>(slots * hidden)), gate(static_cast<size_t>(slots * inter)), up(static_cast<size_t>(slots * inter)),
        y(static_cast<size_t>(slots * hidden));
    for_n(slots * hidden, thrust_detail::GatherRows<T, int32_t>{raw(x), raw(slot), top_k, raw(xs), hidden});
    for (int64_t e = 0; e < n_experts; ++e) {
      const int64_t b = begin[static_cast<size_t>(e)], n = begin[static_cast<size_t>(e) + 1] - b;
      if (n == 0) continue;
      const auto& ex = experts[static_cast<size_t>(e)];
      gemm(ex.gate, raw(xs) + b * hidden, n, raw(gate) + b * inter);
      gemm(ex.up, raw(xs) + b * hidden, n, raw(up) + b * inter);
    }
    for_n(slots * inter, kernels::ActMul<T>{raw(gate), raw(up), raw(gate), act});
    for (int64_t e = 0; e < n_experts; ++e) {
      const int64_t b = begin[static_cast<size_t>(e)], n = begin[static_cast<size_t>(e) + 1] - b;
      if (n == 0) continue;
      gemm(experts[static_cast<size_t>(e)].down, raw(gate) + b * inter, n, raw(y) + b * hidden);
    }
    // 4. per token, the sorted positions of its slots in ascending order (= ascending expert, since a
    //    token's experts are distinct): a stable sort of the positions by token id
    IndexVector token_of(static_cast<size_t>(slots)), order(static_cast<size_t>(slots));
    thrust::transform(thrust::device, slot.begin(), slot.end(), token_of.begin(), thrust_detail::DivideBy{static_cast<int32_t>(top_k)});
    thrust::sequence(thrust::device, order.begin(), order.end());
    thrust::stable_sort_by_key(thrust::device, token_of.begin(), token_of.end(), order.begin());
    Vector w_sorted(static_cast<size_t>(slots));
    thrust::gather(thrust::device, slot.begin(), slot.end(), weights.begin(), w_sorted.begin());
    for_n(tokens * hidden, thrust_detail::CombineSlots<T>{raw(y), raw(w_sorted), raw(order), raw(out), hidden, top_k});
  }

 private:
  template <class V>
  static auto raw(V& v) {
    return v.empty() ? nullptr : thrust::raw_pointer_cast(v.data());
  }
  template <class U>
  static std::vector<U> to_host(const thrust::device_vector<U>& v) {
    std::vector<U> h(v.size());
    thrust::copy(v.begin(), v.end(), h.begin());
    return h;
  }

  /// f(i) for i in [0, n) on the device system.
  template <class F>
  static void for_n(int64_t n, const F& f) {
    if (n > 0) thrust::for_each(thrust::device, thrust::counting_iterator<int64_t>(0), thrust::counting_iterator<int64_t>(n), f);
  }

  /// Per-thread device scratch, grown on demand and never shrunk. Deliberately never freed: destroying
  /// device vectors at thread exit could run after the CUDA runtime has shut down; the driver releases
  /// the memory with the process.
  struct Scratch {
    Vector scores, router;                   // attention scores, router work
    thrust::device_vector<uint16_t> hi, lo;  // split activations
    thrust::device_vector<float> wide, xh, xl, gate, up, y;
  };
  static Scratch& scratch() {
    thread_local Scratch* s = new Scratch();
    return *s;
  }
  template <class U>
  static U* grow(thrust::device_vector<U>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) {
      thrust::device_vector<U>().swap(v);  // no copy of the old contents
      v.resize(static_cast<size_t>(n));
    }
    return thrust::raw_pointer_cast(v.data());
  }
  static bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

  static bool same_dtype(const std::vector<ExpertMatrices>& experts) {
    for (const auto& e : experts)
      if (e.gate.dtype != experts[0].gate.dtype || e.up.dtype != experts[0].gate.dtype || e.down.dtype != experts[0].gate.dtype) return false;
    return !experts.empty();
  }

  /// The device table of an expert list's weight pointers: gate [E], up [E], down [E], cached per list
  /// and per thread (re-uploaded when the list's pointers change).
  struct ExpertTable {
    std::vector<const void*> host;
    thrust::device_vector<const void*> device;
    bool aligned = false;  // every matrix 16-byte aligned
  };
  static const ExpertTable& expert_table(const std::vector<ExpertMatrices>& experts) {
    thread_local auto* cache = new std::map<const void*, ExpertTable>();  // never freed, as Scratch
    std::vector<const void*> want;
    want.reserve(3 * experts.size());
    for (const auto& e : experts) want.push_back(e.gate.data);
    for (const auto& e : experts) want.push_back(e.up.data);
    for (const auto& e : experts) want.push_back(e.down.data);
    ExpertTable& t = (*cache)[static_cast<const void*>(experts.data())];
    if (t.host != want) {
      t.host = want;
      t.device = thrust::device_vector<const void*>(want.begin(), want.end());
      t.aligned = true;
      for (const void* p : want) t.aligned = t.aligned && aligned16(p);
    }
    return t;
  }

  /// y[p, :] = x[p / div] . W_{expert_of[p]}^T for every slot p, W from `table` (E pointers).
  template <class W>
  static void grouped(const float* x, int64_t div, const int32_t* expert_of, const void* const* table, bool aligned, int64_t slots, int64_t out,
                      int64_t in, float* y) {
    const auto* t = reinterpret_cast<const W* const*>(table);
#if DOTS1_THRUST_CUDA
    thrust_detail::cuda::grouped_gemv<W>(x, div, expert_of, t, slots, out, in, y, aligned && in % 8 == 0 && aligned16(x));
#else
    (void)aligned;
    for_n(slots * out, thrust_detail::GroupedRowDot<W>{x, div, expert_of, t, y, out, in});
#endif
  }

  /// The decode path of moe_experts: gate and up of every slot in one grouped launch each, act * up, down
  /// in one more, then each token sums its slots in ascending expert order. No sort, no host round trip.
  static void moe_grouped(const Vector& x, int64_t tokens, int64_t hidden, const IndexVector& indices, const Vector& weights, int64_t top_k,
                          const std::vector<ExpertMatrices>& experts, int64_t inter, kernels::Activation act, Vector& out)
    requires std::is_same_v<T, float>
  {
    const int64_t slots = tokens * top_k;
    const auto n = static_cast<size_t>(experts.size());
    const ExpertTable& table = expert_table(experts);
    const void* const* ptrs = thrust::raw_pointer_cast(table.device.data());
    Scratch& s = scratch();
    float* gate = grow(s.gate, slots * inter);
    float* up = grow(s.up, slots * inter);
    float* y = grow(s.y, slots * hidden);
    auto run = [&](const float* in_rows, int64_t div, const void* const* which, int64_t o, int64_t i, float* dst) {
      if (experts[0].gate.is_bf16())
        grouped<uint16_t>(in_rows, div, raw(indices), which, table.aligned, slots, o, i, dst);
      else
        grouped<float>(in_rows, div, raw(indices), which, table.aligned, slots, o, i, dst);
    };
    run(raw(x), top_k, ptrs, inter, hidden, gate);
    run(raw(x), top_k, ptrs + n, inter, hidden, up);
    for_n(slots * inter, kernels::ActMul<T>{gate, up, gate, act});
    run(gate, 1, ptrs + 2 * n, hidden, inter, y);
    for_n(tokens * hidden, thrust_detail::CombineByExpert<T>{y, raw(weights), raw(indices), raw(out), hidden, top_k});
  }

  /// y[rows, out] = x[rows, in] . W^T for a weight matrix of either storage dtype.
  static void gemm(const Matrix& w, const T* x, int64_t rows, T* y) {
    if (rows <= 0 || w.rows <= 0) return;
    if constexpr (keeps_bf16) {
      if (w.is_bf16()) {
        gemm_bf16(w, x, rows, y);
        return;
      }
    }
    gemm_xwt(x, rows, w.values(), w.rows, w.cols, y);
  }

  /// bf16 weights, float32 activations and output (see the header comment for the two regimes).
  static void gemm_bf16(const Matrix& w, const float* x, int64_t rows, float* y)
    requires std::is_same_v<T, float>
  {
    const int64_t out = w.rows, in = w.cols;
    Scratch& s = scratch();
#if DOTS1_THRUST_CUDA
    if (rows <= std::min<int64_t>(gemv_max_rows, thrust_detail::cuda::kMaxGemvRows)) {
      thrust_detail::cuda::gemv(x, rows, w.bf16(), out, in, y, in % 8 == 0 && aligned16(x) && aligned16(w.data));
      return;
    }
    const bool split = bf16_activations == Bf16Activations::split;
    uint16_t* hi = grow(s.hi, rows * in);
    uint16_t* lo = split ? grow(s.lo, rows * in) : nullptr;
    for_n(rows * in, thrust_detail::SplitBf16{x, hi, lo});
    gemm_bf16_tensor_cores(w.bf16(), hi, rows, out, in, y, 0.0f);
    if (lo) gemm_bf16_tensor_cores(w.bf16(), lo, rows, out, in, y, 1.0f);
#else
    // OMP/CPP: the same products on the host-resident "device" memory, W widened (exact) for Eigen.
    using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    float* wide = grow(s.wide, out * in);
    for_n(out * in, thrust_detail::WidenBf16{w.bf16(), wide});
    Eigen::Map<const RowMajor> W(wide, out, in);
    Eigen::Map<RowMajor> Y(y, rows, out);
    if (rows <= gemv_max_rows) {
      Y.noalias() = Eigen::Map<const RowMajor>(x, rows, in) * W.transpose();
      return;
    }
    const bool split = bf16_activations == Bf16Activations::split;
    uint16_t* hi = grow(s.hi, rows * in);
    uint16_t* lo = split ? grow(s.lo, rows * in) : nullptr;
    for_n(rows * in, thrust_detail::SplitBf16{x, hi, lo});
    float* xh = grow(s.xh, rows * in);
    for_n(rows * in, thrust_detail::WidenBf16{hi, xh});
    Y.noalias() = Eigen::Map<const RowMajor>(xh, rows, in) * W.transpose();
    if (lo) {
      float* xl = grow(s.xl, rows * in);
      for_n(rows * in, thrust_detail::WidenBf16{lo, xl});
      Y.noalias() += Eigen::Map<const RowMajor>(xl, rows, in) * W.transpose();
    }
#endif
  }

#if DOTS1_THRUST_CUDA
  /// y[rows, out] = xb[rows, in] . W^T + beta * y on bf16 tensor cores, float32 accumulation and output
  /// (the same column-major reading as gemm_xwt).
  static void gemm_bf16_tensor_cores(const uint16_t* w, const uint16_t* xb, int64_t rows, int64_t out, int64_t in, float* y, float beta) {
    const float one = 1;
    const int m = static_cast<int>(out), n = static_cast<int>(rows), k = static_cast<int>(in);
    thrust_detail::check_cublas(cublasGemmEx(thrust_detail::CublasContext::handle(), CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, w, CUDA_R_16BF, k, xb,
                                             CUDA_R_16BF, k, &beta, y, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                                "cublasGemmEx (bf16 x bf16 -> f32)");
  }
#endif

  /// y[rows, out] = x[rows, in] . W^T with W [out, in]; all row-major device pointers.
  static void gemm_xwt(const T* x, int64_t rows, const T* w, int64_t out, int64_t in, T* y) {
#if DOTS1_THRUST_CUDA
    // cuBLAS is column-major: the row-major Y[rows, out] is Y^T[out, rows] column-major (ld out), and
    // Y^T = W . X^T, where W read column-major is W^T[in, out] (ld in), hence op(A) = T, and X read
    // column-major is already X^T[in, rows] (ld in).
    const T one = 1, zero = 0;
    const int m = static_cast<int>(out), n = static_cast<int>(rows), k = static_cast<int>(in);
    if constexpr (std::is_same_v<T, float>)
      thrust_detail::check_cublas(cublasSgemm(thrust_detail::CublasContext::handle(), CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, w, k, x, k,
                                              &zero, y, m),
                                  "cublasSgemm");
    else
      thrust_detail::check_cublas(cublasDgemm(thrust_detail::CublasContext::handle(), CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, w, k, x, k,
                                              &zero, y, m),
                                  "cublasDgemm");
#else
    // OMP/CPP device systems keep "device" memory on the host: the Eigen backend's GEMM on the raw pointers.
    using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMajor> X(x, rows, in), W(w, out, in);
    Eigen::Map<RowMajor> Y(y, rows, out);
    Y.noalias() = X * W.transpose();
#endif
  }
};

static_assert(Backend<ThrustBackend<float>>);
static_assert(Backend<ThrustBackend<double>>);

}  // namespace dots1
