// dots1/backend/eigen/eigen_backend.hpp — the CPU backend: storage in host vectors; for float compute the
// hand-written kernels of cpu_kernels.hpp (AVX2/FMA GEMV/GEMM on f32 or bf16 weights, attention, MoE),
// spread over the cores by a small thread pool (thread_pool.hpp); for double compute Eigen GEMMs and the
// portable functors.
//
// A backend is a type with storage types (Vector, IndexVector, Int64Vector, Matrix) and the few operations
// the model needs (see the Backend concept in backend/backend_concept.hpp). Nothing in the model touches
// memory except through these.
//
// Weight storage (float compute): a Matrix keeps the dtype its tensor arrives in when the kernels read it
// directly — F32 and BF16, used in place (memory-mapped checkpoints are not copied) — and converts anything
// else (F16, F64, misaligned data) to an owned float32 copy. bf16 -> f32 is exact, so a bf16 checkpoint
// gives the same numbers as its float32 conversion (up to summation order) at half the memory traffic.
// Which dtype the weights arrive in is the caller's choice: Dots1ForCausalLM::from_pretrained(dir, format)
// and ::random(config, seed, format) take a WeightFormat (as stored / f32 / bf16), see io/checkpoint.hpp.
// Accumulation is always float32.
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

#include "dots1/backend/backend_concept.hpp"
#include "dots1/backend/eigen/cpu_kernels.hpp"
#include "dots1/base/tensor.hpp"
#include "dots1/kernels/expert_groups.hpp"
#include "dots1/kernels/portable.hpp"

namespace dots1 {

template <class T = float>
struct EigenBackend {
  static_assert(std::is_floating_point_v<T>, "EigenBackend computes in float or double");
  using Scalar = T;
  using Vector = std::vector<T>;
  using IndexVector = std::vector<int32_t>;
  using Int64Vector = std::vector<int64_t>;
  static constexpr const char* name = "eigen";
  /// float compute runs the kernels of cpu_kernels.hpp; double compute the Eigen/portable reference path.
  static constexpr bool fast = std::is_same_v<T, float>;
  /// Weights and activations in host memory: loads are checked against it (io/memory_plan.hpp).
  static constexpr MemorySpace memory = MemorySpace::host;
  /// matrix() uses F32 and BF16 tensors in place (float compute; double compute converts everything).
  static bool keeps_in_place(DType d) { return fast && (d == DType::F32 || d == DType::BF16); }

  /// A weight matrix [rows, cols], row-major: a view into the checkpoint (or generated tensor) when the
  /// kernels can read its dtype in place, else an owned float copy. `dtype` is F32 or BF16 for float
  /// compute, F64 for double compute.
  struct Matrix {
    const void* data = nullptr;
    DType dtype = fast ? DType::F32 : DType::F64;
    int64_t rows = 0, cols = 0;
    std::shared_ptr<const void> owner;

    const T* values() const { return static_cast<const T*>(data); }  // when dtype is the compute dtype
    size_t element_bytes() const { return dtype == DType::BF16 ? 2 : sizeof(T); }
    cpu::WeightRef ref() const {
      return {data, dtype == DType::BF16 ? cpu::WType::bf16 : cpu::WType::f32, rows, cols, cols};
    }
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
    const auto addr = reinterpret_cast<uintptr_t>(t.data);
    if (fast && t.dtype == DType::F32 && addr % alignof(float) == 0) {
      m.data = t.data;
      m.dtype = DType::F32;
      m.owner = t.keepalive;
    } else if (fast && t.dtype == DType::BF16 && addr % alignof(uint16_t) == 0) {
      m.data = t.data;
      m.dtype = DType::BF16;
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
  static void resize(IndexVector& v, size_t n) { v.resize(n); }
  static size_t size(const Vector& v) { return v.size(); }
  static T* ptr(Vector& v) { return v.data(); }
  static const T* ptr(const Vector& v) { return v.data(); }
  static int32_t* ptr(IndexVector& v) { return v.data(); }
  static const int32_t* ptr(const IndexVector& v) { return v.empty() ? nullptr : v.data(); }
  static const int64_t* ptr(const Int64Vector& v) { return v.empty() ? nullptr : v.data(); }
  static size_t bytes(const Matrix& m) { return static_cast<size_t>(m.rows * m.cols) * m.element_bytes(); }

  // ---------------------------------------------------------------- ops
  /// out[t] = table[ids[t]]
  static void embedding(const Matrix& table, const Int64Vector& ids, Vector& out) {
    out.resize(ids.size() * static_cast<size_t>(table.cols));
    for (size_t t = 0; t < ids.size(); ++t) {
      T* o = out.data() + t * table.cols;
      if constexpr (fast) {
        if (table.dtype == DType::BF16) {
          cpu::convert_row(static_cast<const uint16_t*>(table.data) + ids[t] * table.cols, table.cols, o);
          continue;
        }
      }
      std::memcpy(o, table.values() + ids[t] * table.cols, sizeof(T) * table.cols);
    }
  }

  /// y[rows, out] = x[rows, in] . W^T (+ bias)
  static void linear(const Matrix& w, const Vector* bias, const Vector& x, int64_t rows, Vector& y) {
    y.resize(static_cast<size_t>(rows * w.rows));
    if constexpr (fast) {
      cpu::matmul(x.data(), rows, w.cols, w.ref(), y.data(), w.rows);
      if (bias)
        for (int64_t r = 0; r < rows; ++r) cpu::add_into(y.data() + r * w.rows, bias->data(), w.rows);
    } else {
      ConstMap W(w.values(), w.rows, w.cols), X(x.data(), rows, w.cols);
      MutMap Y(y.data(), rows, w.rows);
      Y.noalias() = X * W.transpose();
      if (bias) Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias->data(), w.rows);
    }
  }

  static void rms_norm(const Vector& x, const Vector& w, int64_t rows, int64_t dim, double eps, Vector& y) {
    y.resize(x.size());
    if constexpr (fast) {
      const float e = static_cast<float>(eps);
      parallel_for(rows, rows * dim, [&](int64_t r) { cpu::rms_norm_row(x.data() + r * dim, w.data(), y.data() + r * dim, dim, e); });
    } else {
      kernels::RmsNormRow<T> f{x.data(), w.data(), y.data(), dim, static_cast<T>(static_cast<float>(eps))};
      parallel_for(rows, rows * dim, f);
    }
  }

  static void rope(Vector& x, int64_t tokens, int64_t heads, int64_t head_dim, const Vector& cos, const Vector& sin) {
    kernels::RopeHead<T> f{x.data(), cos.data(), sin.data(), heads, head_dim};
    parallel_for(tokens * heads, tokens * heads * head_dim, f);
  }

  static void act_mul(const Vector& gate, const Vector& up, kernels::Activation act, Vector& out) {
    out.resize(gate.size());
    const auto n = static_cast<int64_t>(gate.size());
    if constexpr (fast) {
      constexpr int64_t chunk = 4096;
      parallel_for((n + chunk - 1) / chunk, n, [&](int64_t c) {
        const int64_t b = c * chunk;
        cpu::act_mul(gate.data() + b, up.data() + b, out.data() + b, std::min(chunk, n - b), act);
      });
    } else {
      kernels::ActMul<T> f{gate.data(), up.data(), out.data(), act};
      parallel_for(n, n, f);
    }
  }

  static void add(Vector& acc, const Vector& x) {
    const auto n = static_cast<int64_t>(acc.size());
    if constexpr (fast) {
      constexpr int64_t chunk = 8192;
      parallel_for((n + chunk - 1) / chunk, n, [&](int64_t c) { cpu::add_into(acc.data() + c * chunk, x.data() + c * chunk, std::min(chunk, n - c * chunk)); });
    } else {
      for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
    }
  }

  /// out = x[rows[i]] for each i, rows of `width`.
  static void gather_rows(const Vector& x, int64_t width, const Int64Vector& rows, Vector& out) {
    out.resize(rows.size() * static_cast<size_t>(width));
    for (size_t i = 0; i < rows.size(); ++i) std::memcpy(out.data() + i * width, x.data() + rows[i] * width, sizeof(T) * width);
  }

  // KV storage: [batch, capacity, kv_heads * head_dim]: a decode step reads every cache row once, all the
  // heads of a row together (see cpu::attention_row).
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

  template <class Window>
  static void attention(const Vector& q, const Vector& k, const Vector& v, const AttentionShape& s,
                        const kernels::MaskSpec<Window>& mask, Vector& out, Vector* weights) {
    out.resize(static_cast<size_t>(s.batch * s.q_len * s.heads * s.head_dim));
    const int64_t rows = s.batch * s.heads * s.q_len;
    if (weights) weights->resize(static_cast<size_t>(rows * s.kv_len));
    if constexpr (fast) {
      cpu::attention(cpu::AttentionArgs<Window>{q.data(), k.data(), v.data(), out.data(), weights ? weights->data() : nullptr, s.batch, s.q_len,
                                                s.kv_len, s.capacity, s.heads, s.kv_heads, s.head_dim, static_cast<float>(s.scaling), mask});
    } else {
      Vector scratch(static_cast<size_t>(rows * s.kv_len));
      kernels::AttentionRow<T, Window> f{q.data(), k.data(), v.data(), out.data(), weights ? weights->data() : nullptr, scratch.data(),
                                         {s.q_len, s.kv_len, s.capacity, s.heads, s.kv_heads, s.head_dim, static_cast<T>(s.scaling)}, mask};
      parallel_for(rows, rows * s.kv_len * s.head_dim, f);
    }
  }

  static void route(const Vector& logits, const Vector& bias, int64_t tokens, const RouterShape& r, IndexVector& indices, Vector& weights) {
    indices.resize(static_cast<size_t>(tokens * r.top_k));
    weights.resize(static_cast<size_t>(tokens * r.top_k));
    thread_local Vector scratch;
    scratch.resize(std::max(scratch.size(), static_cast<size_t>(tokens * (r.experts + r.n_group))));
    kernels::RouteToken<T> f{logits.data(), bias.data(), indices.data(), weights.data(), scratch.data(), r.experts, r.top_k,
                             r.n_group, r.topk_group, r.norm_topk_prob, static_cast<T>(static_cast<float>(r.routed_scaling_factor))};
    parallel_for(tokens, tokens * r.experts * r.top_k, f);
  }

  /// f(i) for every i in [0, n): a portable functor (kernels/portable.hpp style) on the host's threads.
  template <class F>
  static void for_each_index(int64_t n, const F& f) {
    parallel_for(n, n * 64, f);
  }

  /// out[t] = sum_k w[t,k] * Expert_{idx[t,k]}(x[t]). The (token, k) slots are grouped by expert, so each
  /// expert's weights are read once per call; every token then sums its experts' outputs in ascending
  /// expert order (HF's per-expert loop). Float compute: with many active experts (prefill) whole experts
  /// go to the threads; with few (decode) the rows of each expert's projections are split over them.
  static void moe_experts(const Vector& x, int64_t tokens, int64_t hidden, const IndexVector& indices, const Vector& weights,
                          int64_t top_k, const std::vector<ExpertMatrices>& experts, int64_t inter, kernels::Activation act, Vector& out) {
    if constexpr (fast) {
      moe_experts_fast(x, tokens, hidden, indices, weights, top_k, experts, inter, act, out);
    } else {
      moe_experts_reference(x, tokens, hidden, indices, weights, top_k, experts, inter, act, out);
    }
  }

 private:
  /// f(i) for i in [0, n), in parallel when the work (`cost`, in elements) is worth a parallel region.
  template <class F>
  static void parallel_for(int64_t n, int64_t cost, const F& f) {
    cpu::parallel_for(n, cost >= 32768 ? cpu::threads_here() : 1, f);
  }

  static void moe_experts_fast(const Vector& x, int64_t tokens, int64_t hidden, const IndexVector& indices, const Vector& weights,
                               int64_t top_k, const std::vector<ExpertMatrices>& experts, int64_t inter, kernels::Activation act,
                               Vector& out) {
    const int64_t slots = tokens * top_k;
    const auto n_experts = static_cast<int64_t>(experts.size());
    out.resize(static_cast<size_t>(tokens * hidden));
    // The slots grouped by expert (this thread's buffers, named through references: the parallel region
    // below shares them).
    thread_local kernels::ExpertGroups groups;
    groups.assign(std::span<const int32_t>(indices), n_experts);
    const auto& begin = groups.begin;
    const auto& order = groups.order;
    const auto& position = groups.position;
    const auto& active = groups.active;
    // Shared buffers, rows in sorted order: the routed inputs, the gate/up activations and the outputs.
    float* xs = cpu::scratch(cpu::kScratchGather, static_cast<size_t>(slots * hidden));
    float* gate = cpu::scratch(cpu::kScratchGate, static_cast<size_t>(slots * inter));
    float* up = cpu::scratch(cpu::kScratchUp, static_cast<size_t>(slots * inter));
    float* ys = cpu::scratch(cpu::kScratchMisc, static_cast<size_t>(slots * hidden));
    const auto n_active = static_cast<int64_t>(active.size());
    // one thread unless the expert work (3 * slots * inter * hidden multiply-adds) is worth waking another
    const int threads = 3 * slots * inter * hidden >= 262144 ? cpu::threads_here() : 1;
    const bool whole_experts = threads == 1 || n_active >= 4 * threads;
    // 1. the routed rows of x, in sorted order
    cpu::parallel_for(slots, slots * hidden >= 32768 ? threads : 1, [&](int64_t p) {
      std::memcpy(xs + p * hidden, x.data() + (order[static_cast<size_t>(p)] / top_k) * hidden, sizeof(float) * static_cast<size_t>(hidden));
    });
    if (whole_experts) {
      // 2. prefill: one expert per task, all three projections on one thread
      cpu::parallel_for(n_active, threads, [&](int64_t a) {
        const int64_t e = active[static_cast<size_t>(a)], b = begin[static_cast<size_t>(e)], n = begin[static_cast<size_t>(e) + 1] - b;
        const auto& ex = experts[static_cast<size_t>(e)];
        if (n > 3) {  // the expert's rows packed once for gate and up
          const cpu::PackedX px = cpu::pack_x(xs + b * hidden, n, hidden, hidden, cpu::scratch(cpu::kScratchPanel, cpu::PackedX::floats(n, hidden)));
          cpu::matmul_packed(px, ex.gate.ref(), 0, inter, gate + b * inter, inter);
          cpu::matmul_packed(px, ex.up.ref(), 0, inter, up + b * inter, inter);
        } else {
          cpu::matmul_rows(xs + b * hidden, n, hidden, ex.gate.ref(), 0, inter, gate + b * inter, inter);
          cpu::matmul_rows(xs + b * hidden, n, hidden, ex.up.ref(), 0, inter, up + b * inter, inter);
        }
        cpu::act_mul(gate + b * inter, up + b * inter, gate + b * inter, n * inter, act);
        cpu::matmul_rows(gate + b * inter, n, inter, ex.down.ref(), 0, hidden, ys + b * hidden, hidden);
      });
    } else {
      // 2. decode: every expert's gate/up rows split over the threads, then its down rows, in parts of
      //    ~128 KiB per matrix so that the threads finish together (cpu::matmul's decode chunks)
      const int64_t expert_bytes = active.empty() ? 0 : static_cast<int64_t>(experts[static_cast<size_t>(active[0])].gate.element_bytes()) * inter * hidden;
      const int64_t parts = std::max<int64_t>(2 * threads, std::min<int64_t>(inter / 4, expert_bytes / 131072));
      cpu::parallel_for(n_active * parts, threads, [&](int64_t item) {
        const int64_t e = active[static_cast<size_t>(item / parts)], b = begin[static_cast<size_t>(e)], n = begin[static_cast<size_t>(e) + 1] - b;
        int64_t r0, r1;
        cpu::split_range(inter, static_cast<int>(parts), static_cast<int>(item % parts), cpu::decode_row_align(experts[static_cast<size_t>(e)].gate.ref()), r0, r1);
        if (r0 >= r1) return;
        const auto& ex = experts[static_cast<size_t>(e)];
        cpu::matmul_rows(xs + b * hidden, n, hidden, ex.gate.ref(), r0, r1, gate + b * inter, inter);
        cpu::matmul_rows(xs + b * hidden, n, hidden, ex.up.ref(), r0, r1, up + b * inter, inter);
        for (int64_t m = b; m < b + n; ++m) cpu::act_mul(gate + m * inter + r0, up + m * inter + r0, gate + m * inter + r0, r1 - r0, act);
      });
      cpu::parallel_for(n_active * parts, threads, [&](int64_t item) {
        const int64_t e = active[static_cast<size_t>(item / parts)], b = begin[static_cast<size_t>(e)], n = begin[static_cast<size_t>(e) + 1] - b;
        int64_t c0, c1;
        cpu::split_range(hidden, static_cast<int>(parts), static_cast<int>(item % parts), cpu::decode_row_align(experts[static_cast<size_t>(e)].down.ref()), c0, c1);
        if (c0 >= c1) return;
        cpu::matmul_rows(gate + b * inter, n, inter, experts[static_cast<size_t>(e)].down.ref(), c0, c1, ys + b * hidden, hidden);
      });
    }
    // 3. each token sums w * y over its experts in ascending expert id (= ascending sorted position)
    cpu::parallel_for(tokens, tokens * hidden * top_k >= 32768 ? threads : 1, [&](int64_t t) {
      int64_t local[16];
      std::vector<int64_t> heap;  // only for top_k > 16
      int64_t* pos = local;
      if (top_k > 16) {
        heap.resize(static_cast<size_t>(top_k));
        pos = heap.data();
      }
      for (int64_t k = 0; k < top_k; ++k) pos[k] = position[static_cast<size_t>(t * top_k + k)];
      std::sort(pos, pos + top_k);
      float* o = out.data() + t * hidden;
      std::fill(o, o + hidden, 0.0f);
      for (int64_t k = 0; k < top_k; ++k)
        cpu::add_scaled(o, ys + pos[k] * hidden, weights[static_cast<size_t>(order[static_cast<size_t>(pos[k])])], hidden);
    });
  }

  /// The double-precision path: Eigen GEMMs per expert, experts visited in ascending order.
  static void moe_experts_reference(const Vector& x, int64_t tokens, int64_t hidden, const IndexVector& indices, const Vector& weights,
                                    int64_t top_k, const std::vector<ExpertMatrices>& experts, int64_t inter, kernels::Activation act,
                                    Vector& out) {
    out.assign(static_cast<size_t>(tokens * hidden), T(0));
    const auto n_experts = static_cast<int64_t>(experts.size());
    kernels::ExpertGroups groups;
    groups.assign(std::span<const int32_t>(indices), n_experts);
    const auto& count = groups.begin;
    const auto& slot_of = groups.order;
    RowMajor xe, g, u, h, y;
    for (int64_t e = 0; e < n_experts; ++e) {
      const int64_t b = count[static_cast<size_t>(e)], n = count[static_cast<size_t>(e) + 1] - b;
      if (n == 0) continue;
      xe.resize(n, hidden);
      for (int64_t r = 0; r < n; ++r) xe.row(r) = ConstMap(x.data() + (slot_of[static_cast<size_t>(b + r)] / top_k) * hidden, 1, hidden);
      const auto& ex = experts[static_cast<size_t>(e)];
      g.noalias() = xe * ConstMap(ex.gate.values(), inter, hidden).transpose();
      u.noalias() = xe * ConstMap(ex.up.values(), inter, hidden).transpose();
      h.resize(n, inter);
      for (int64_t i = 0; i < n * inter; ++i) h.data()[i] = kernels::activate(act, g.data()[i]) * u.data()[i];
      y.noalias() = h * ConstMap(ex.down.values(), hidden, inter).transpose();
      for (int64_t r = 0; r < n; ++r) {
        const int64_t slot = slot_of[static_cast<size_t>(b + r)];
        const T w = weights[static_cast<size_t>(slot)];
        T* o = out.data() + (slot / top_k) * hidden;
        const T* yr = y.data() + r * hidden;
        for (int64_t c = 0; c < hidden; ++c) o[c] += yr[c] * w;
      }
    }
  }
};

static_assert(Backend<EigenBackend<float>>);
static_assert(Backend<EigenBackend<double>>);

}  // namespace dots1
