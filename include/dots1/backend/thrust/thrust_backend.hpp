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
// Determinism: no atomics anywhere; the MoE scatter sums each token's expert outputs in a fixed order
// (ascending expert id, as HF's per-expert loop and the Eigen backend do).
#pragma once

#include <cstdint>
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
#include "dots1/io/safetensors.hpp"
#include "dots1/kernels/portable.hpp"
#include "dots1/model/backend_concept.hpp"

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#define DOTS1_THRUST_CUDA 1
#include <cublas_v2.h>
#include <cuda_runtime.h>
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
#ifdef CUDA_API_PER_THREAD_DEFAULT_STREAM
    check_cublas(cublasSetStream(handle_, cudaStreamPerThread), "cublasSetStream");
#else
    check_cublas(cublasSetStream(handle_, cudaStreamLegacy), "cublasSetStream");
#endif
    // Plain FP32 math: no TF32 tensor-op shortcuts, the results must stay within fp32 rounding of HF.
    check_cublas(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  }
  ~CublasContext() {
    if (handle_) cublasDestroy(handle_);  // at thread exit; a failure there cannot be reported
  }
  cublasHandle_t handle_ = nullptr;
};
#endif

}  // namespace thrust_detail

template <class T = float>
struct ThrustBackend {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "ThrustBackend computes in float or double");
  using Scalar = T;
  using Vector = thrust::device_vector<T>;
  using IndexVector = thrust::device_vector<int32_t>;
  using Int64Vector = thrust::device_vector<int64_t>;
  static constexpr const char* name = DOTS1_THRUST_CUDA ? "thrust-cuda" : "thrust";

  /// A weight matrix [rows, cols], row-major, uploaded to device memory in the compute dtype. Copies
  /// share the storage (a tied LM head is the embedding matrix).
  struct Matrix {
    const T* data = nullptr;  // device pointer
    int64_t rows = 0, cols = 0;
    std::shared_ptr<const thrust::device_vector<T>> owner;
  };
  struct ExpertMatrices {
    Matrix gate, up, down;  // [inter, hidden], [inter, hidden], [hidden, inter]
  };

  // ---------------------------------------------------------------- storage
  static Matrix matrix(const TensorView& t) {
    Matrix m;
    m.rows = t.shape.size() >= 2 ? t.shape[0] : 1;  // [out, in] (a 1-D tensor is one row)
    m.cols = m.rows ? t.numel() / m.rows : 0;
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
  static size_t size(const Vector& v) { return v.size(); }
  static T* ptr(Vector& v) { return raw(v); }
  static const T* ptr(const Vector& v) { return raw(v); }
  static const int32_t* ptr(const IndexVector& v) { return raw(v); }  // null when empty: "no mask"
  static const int64_t* ptr(const Int64Vector& v) { return raw(v); }
  static size_t bytes(const Matrix& m) { return static_cast<size_t>(m.rows * m.cols) * sizeof(T); }

  // ---------------------------------------------------------------- ops
  /// out[t] = table[ids[t]]
  static void embedding(const Matrix& table, const Int64Vector& ids, Vector& out) {
    out.resize(ids.size() * static_cast<size_t>(table.cols));
    for_n(static_cast<int64_t>(out.size()), thrust_detail::GatherRows<T, int64_t>{table.data, raw(ids), 1, raw(out), table.cols});
  }

  /// y[rows, out] = x[rows, in] . W^T (+ bias)
  static void linear(const Matrix& w, const Vector* bias, const Vector& x, int64_t rows, Vector& y) {
    y.resize(static_cast<size_t>(rows * w.rows));
    gemm_xwt(raw(x), rows, w.data, w.rows, w.cols, raw(y));
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

  /// One AttentionRow per (batch, head, query): correct on every device system; a fused CUDA kernel
  /// (shared-memory tiles, online softmax) is the performance path still to come.
  static void attention(const Vector& q, const Vector& k, const Vector& v, const AttentionShape& s,
                        const kernels::MaskSpec& mask, Vector& out, Vector* weights) {
    out.resize(static_cast<size_t>(s.batch * s.q_len * s.heads * s.head_dim));
    const int64_t rows = s.batch * s.heads * s.q_len;
    Vector scratch(static_cast<size_t>(rows * s.kv_len));
    if (weights) weights->resize(static_cast<size_t>(rows * s.kv_len));
    for_n(rows, kernels::AttentionRow<T>{raw(q), raw(k), raw(v), raw(out), weights ? raw(*weights) : nullptr, raw(scratch), s.q_len,
                                         s.kv_len, s.capacity, s.heads, s.kv_heads, s.head_dim, static_cast<T>(s.scaling), mask});
  }

  static void route(const Vector& logits, const Vector& bias, int64_t tokens, const RouterShape& r, IndexVector& indices, Vector& weights) {
    indices.resize(static_cast<size_t>(tokens * r.top_k));
    weights.resize(static_cast<size_t>(tokens * r.top_k));
    Vector scratch(static_cast<size_t>(tokens * (r.experts + r.n_group)));
    for_n(tokens, kernels::RouteToken<T>{raw(logits), raw(bias), raw(indices), raw(weights), raw(scratch), r.experts, r.top_k, r.n_group,
                                         r.topk_group, r.norm_topk_prob, static_cast<T>(static_cast<float>(r.routed_scaling_factor))});
  }

  /// out[t] = sum_k w[t,k] * Expert_{idx[t,k]}(x[t]). The tokens*top_k (token, k) slots are sorted by
  /// expert (stable: ascending slot within an expert); each expert then runs its three projections as
  /// GEMMs over its contiguous block of gathered rows, and every output value sums its token's top_k
  /// expert rows in ascending expert order.
  static void moe_experts(const Vector& x, int64_t tokens, int64_t hidden, const IndexVector& indices, const Vector& weights,
                          int64_t top_k, const std::vector<ExpertMatrices>& experts, int64_t inter, kernels::Activation act, Vector& out) {
    const int64_t slots = tokens * top_k;
    const auto n_experts = static_cast<int64_t>(experts.size());
    out.resize(static_cast<size_t>(tokens * hidden));
    if (slots == 0) return;
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
      gemm_xwt(raw(xs) + b * hidden, n, ex.gate.data, inter, hidden, raw(gate) + b * inter);
      gemm_xwt(raw(xs) + b * hidden, n, ex.up.data, inter, hidden, raw(up) + b * inter);
    }
    for_n(slots * inter, kernels::ActMul<T>{raw(gate), raw(up), raw(gate), act});
    for (int64_t e = 0; e < n_experts; ++e) {
      const int64_t b = begin[static_cast<size_t>(e)], n = begin[static_cast<size_t>(e) + 1] - b;
      if (n == 0) continue;
      gemm_xwt(raw(gate) + b * inter, n, experts[static_cast<size_t>(e)].down.data, hidden, inter, raw(y) + b * hidden);
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
