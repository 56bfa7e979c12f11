// dots1/backend/eigen/eigen_backend.hpp — the CPU backend: storage in host vectors, projections as Eigen
// GEMMs, everything else as the portable functors of kernels/portable.hpp in OpenMP loops.
//
// A backend is a type with storage types (Vector, IndexVector, Int64Vector, Matrix) and the few operations
// the model needs (see the Backend concept in model/backend_concept.hpp). Nothing in the model touches
// memory except through these.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <span>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "dots1/io/safetensors.hpp"
#include "dots1/kernels/portable.hpp"
#include "dots1/model/backend_concept.hpp"

namespace dots1 {

template <class T = float>
struct EigenBackend {
  static_assert(std::is_floating_point_v<T>, "EigenBackend computes in float or double");
  using Scalar = T;
  using Vector = std::vector<T>;
  using IndexVector = std::vector<int32_t>;
  using Int64Vector = std::vector<int64_t>;
  static constexpr const char* name = "eigen";

  /// A weight matrix [rows, cols], row-major: a view into the memory-mapped checkpoint when the stored
  /// dtype is the compute dtype (and aligned), else an owned converted copy.
  struct Matrix {
    const T* data = nullptr;
    int64_t rows = 0, cols = 0;
    std::shared_ptr<const void> owner;
  };
  struct ExpertMatrices {
    Matrix gate, up, down;  // [inter, hidden], [inter, hidden], [hidden, inter]
  };

  using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ConstMap = Eigen::Map<const RowMajor>;
  using MutMap = Eigen::Map<RowMajor>;

  // ---------------------------------------------------------------- storage
  static Matrix matrix(const TensorView& t) {
    Matrix m;
    m.rows = t.shape.size() >= 2 ? t.shape[0] : 1;  // [out, in] (a 1-D tensor is one row)
    m.cols = m.rows ? t.numel() / m.rows : 0;
    const bool in_place = std::is_same_v<T, float> && t.dtype == DType::F32 &&
                          reinterpret_cast<uintptr_t>(t.data) % alignof(T) == 0;
    if (in_place) {
      m.data = reinterpret_cast<const T*>(t.data);
      m.owner = t.keepalive;
    } else {
      auto v = std::make_shared<std::vector<T>>(t.to_vector<T>());
      m.data = v->data();
      m.owner = v;
    }
    return m;
  }
  static Vector vector(const TensorView& t) { return t.to_vector<T>(); }
  static Vector upload(std::span<const T> v) { return Vector(v.begin(), v.end()); }
  static IndexVector upload(std::span<const int32_t> v) { return IndexVector(v.begin(), v.end()); }
  static Int64Vector upload(std::span<const int64_t> v) { return Int64Vector(v.begin(), v.end()); }
  static std::vector<T> download(const Vector& v) { return v; }
  static std::vector<int32_t> download(const IndexVector& v) { return v; }
  static void resize(Vector& v, size_t n) { v.resize(n); }
  static size_t size(const Vector& v) { return v.size(); }
  static T* ptr(Vector& v) { return v.data(); }
  static const T* ptr(const Vector& v) { return v.data(); }
  static const int32_t* ptr(const IndexVector& v) { return v.empty() ? nullptr : v.data(); }
  static const int64_t* ptr(const Int64Vector& v) { return v.empty() ? nullptr : v.data(); }
  static size_t bytes(const Matrix& m) { return static_cast<size_t>(m.rows * m.cols) * sizeof(T); }

  // ---------------------------------------------------------------- ops
  /// out[t] = table[ids[t]]
  static void embedding(const Matrix& table, const Int64Vector& ids, Vector& out) {
    out.resize(ids.size() * static_cast<size_t>(table.cols));
    for (size_t t = 0; t < ids.size(); ++t)
      std::memcpy(out.data() + t * table.cols, table.data + ids[t] * table.cols, sizeof(T) * table.cols);
  }

  /// y[rows, out] = x[rows, in] . W^T (+ bias)
  static void linear(const Matrix& w, const Vector* bias, const Vector& x, int64_t rows, Vector& y) {
    y.resize(static_cast<size_t>(rows * w.rows));
    ConstMap W(w.data, w.rows, w.cols), X(x.data(), rows, w.cols);
    MutMap Y(y.data(), rows, w.rows);
    Y.noalias() = X * W.transpose();
    if (bias) Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias->data(), w.rows);
  }

  static void rms_norm(const Vector& x, const Vector& w, int64_t rows, int64_t dim, double eps, Vector& y) {
    y.resize(x.size());
    kernels::RmsNormRow<T> f{x.data(), w.data(), y.data(), dim, static_cast<T>(static_cast<float>(eps))};
    parallel_for(rows, f);
  }

  static void rope(Vector& x, int64_t tokens, int64_t heads, int64_t head_dim, const Vector& cos, const Vector& sin) {
    kernels::RopeHead<T> f{x.data(), cos.data(), sin.data(), heads, head_dim};
    parallel_for(tokens * heads, f);
  }

  static void act_mul(const Vector& gate, const Vector& up, kernels::Activation act, Vector& out) {
    out.resize(gate.size());
    kernels::ActMul<T> f{gate.data(), up.data(), out.data(), act};
    parallel_for(static_cast<int64_t>(gate.size()), f);
  }

  static void add(Vector& acc, const Vector& x) {
    for (size_t i = 0; i < acc.size(); ++i) acc[i] += x[i];
  }

  /// out = x[rows[i]] for each i, rows of `width`.
  static void gather_rows(const Vector& x, int64_t width, const Int64Vector& rows, Vector& out) {
    out.resize(rows.size() * static_cast<size_t>(width));
    for (size_t i = 0; i < rows.size(); ++i) std::memcpy(out.data() + i * width, x.data() + rows[i] * width, sizeof(T) * width);
  }

  // KV storage: [batch, capacity, row]
  static void kv_reserve(Vector& cache, int64_t batch, int64_t old_capacity, int64_t new_capacity, int64_t row, int64_t stored) {
    Vector grown(static_cast<size_t>(batch * new_capacity * row));
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(cache.data() + b * old_capacity * row, stored * row, grown.data() + b * new_capacity * row);
    cache.swap(grown);
  }
  static void kv_write(Vector& cache, int64_t batch, int64_t capacity, int64_t row, int64_t at, const Vector& rows, int64_t count) {
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(rows.data() + b * count * row, count * row, cache.data() + (b * capacity + at) * row);
  }
  static void kv_drop_front(Vector& cache, int64_t batch, int64_t capacity, int64_t row, int64_t stored, int64_t drop) {
    for (int64_t b = 0; b < batch; ++b) {
      T* base = cache.data() + b * capacity * row;
      std::memmove(base, base + drop * row, sizeof(T) * static_cast<size_t>((stored - drop) * row));
    }
  }

  static void attention(const Vector& q, const Vector& k, const Vector& v, const AttentionShape& s,
                        const kernels::MaskSpec& mask, Vector& out, Vector* weights) {
    out.resize(static_cast<size_t>(s.batch * s.q_len * s.heads * s.head_dim));
    const int64_t rows = s.batch * s.heads * s.q_len;
    Vector scratch(static_cast<size_t>(rows * s.kv_len));
    if (weights) weights->resize(static_cast<size_t>(rows * s.kv_len));
    kernels::AttentionRow<T> f{q.data(), k.data(), v.data(), out.data(), weights ? weights->data() : nullptr, scratch.data(),
                               s.q_len, s.kv_len, s.capacity, s.heads, s.kv_heads, s.head_dim, static_cast<T>(s.scaling), mask};
    parallel_for(rows, f);
  }

  static void route(const Vector& logits, const Vector& bias, int64_t tokens, const RouterShape& r, IndexVector& indices, Vector& weights) {
    indices.resize(static_cast<size_t>(tokens * r.top_k));
    weights.resize(static_cast<size_t>(tokens * r.top_k));
    Vector scratch(static_cast<size_t>(tokens * (r.experts + r.n_group)));
    kernels::RouteToken<T> f{logits.data(), bias.data(), indices.data(), weights.data(), scratch.data(), r.experts, r.top_k,
                             r.n_group, r.topk_group, r.norm_topk_prob, static_cast<T>(static_cast<float>(r.routed_scaling_factor))};
    parallel_for(tokens, f);
  }

  /// out[t] = sum_k w[t,k] * Expert_{idx[t,k]}(x[t]). Tokens are grouped by expert so that each expert's
  /// weights are read once; experts are visited in ascending order (HF's per-expert loop).
  static void moe_experts(const Vector& x, int64_t tokens, int64_t hidden, const IndexVector& indices, const Vector& weights,
                          int64_t top_k, const std::vector<ExpertMatrices>& experts, int64_t inter, kernels::Activation act, Vector& out) {
    out.assign(static_cast<size_t>(tokens * hidden), T(0));
    const auto n_experts = static_cast<int64_t>(experts.size());
    std::vector<int64_t> count(static_cast<size_t>(n_experts + 1), 0);
    for (int32_t e : indices) ++count[static_cast<size_t>(e) + 1];
    std::partial_sum(count.begin(), count.end(), count.begin());
    std::vector<int64_t> slot_of(indices.size());  // (token*top_k + k), grouped by expert
    {
      std::vector<int64_t> fill(count.begin(), count.end() - 1);
      for (size_t s = 0; s < indices.size(); ++s) slot_of[static_cast<size_t>(fill[static_cast<size_t>(indices[s])]++)] = static_cast<int64_t>(s);
    }
    RowMajor xe, gate, up, h, y;
    for (int64_t e = 0; e < n_experts; ++e) {
      const int64_t begin = count[static_cast<size_t>(e)], n = count[static_cast<size_t>(e) + 1] - begin;
      if (n == 0) continue;
      xe.resize(n, hidden);
      for (int64_t r = 0; r < n; ++r) xe.row(r) = ConstMap(x.data() + (slot_of[static_cast<size_t>(begin + r)] / top_k) * hidden, 1, hidden);
      const auto& ex = experts[static_cast<size_t>(e)];
      gate.noalias() = xe * ConstMap(ex.gate.data, inter, hidden).transpose();
      up.noalias() = xe * ConstMap(ex.up.data, inter, hidden).transpose();
      h.resize(n, inter);
      for (int64_t i = 0; i < n * inter; ++i) h.data()[i] = kernels::activate(act, gate.data()[i]) * up.data()[i];
      y.noalias() = h * ConstMap(ex.down.data, hidden, inter).transpose();
      for (int64_t r = 0; r < n; ++r) {
        const int64_t slot = slot_of[static_cast<size_t>(begin + r)];
        const T w = weights[static_cast<size_t>(slot)];
        T* o = out.data() + (slot / top_k) * hidden;
        const T* yr = y.data() + r * hidden;
        for (int64_t c = 0; c < hidden; ++c) o[c] += yr[c] * w;
      }
    }
  }

 private:
  template <class F>
  static void parallel_for(int64_t n, const F& f) {
#pragma omp parallel for schedule(static) if (n > 64)
    for (int64_t i = 0; i < n; ++i) f(i);
  }
};

static_assert(Backend<EigenBackend<float>>);
static_assert(Backend<EigenBackend<double>>);

}  // namespace dots1
