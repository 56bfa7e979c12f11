// dots1/kernels/portable.hpp — the model's element-wise and per-row math as portable functors.
//
// Each functor works on raw pointers for one index (a row, a token, a (batch, head, query) triple) and is
// `__host__ __device__` under nvcc, so the Eigen backend runs it in an OpenMP loop and the Thrust backend
// runs the same code through thrust::for_each on any device system (CUDA, OMP, CPP). The arithmetic order
// follows HF's float32 eager path.
#pragma once

#include <cmath>
#include <cstdint>
#include <cfloat>
#include <cstring>

#if defined(__CUDACC__)
#define DOTS1_HD __host__ __device__
#else
#define DOTS1_HD
#endif

namespace dots1::kernels {

/// bfloat16 <-> float32 on raw bits, usable in device code (the same rounding as dots1::float_to_bf16:
/// round to nearest even, NaN kept quiet). Widening is exact.
DOTS1_HD inline float bf16_to_f32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
DOTS1_HD inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

/// HF's ACT2FN entries that Dots1 configs use.
enum class Activation : int { silu, gelu, gelu_tanh, relu };

template <class T>
DOTS1_HD inline T activate(Activation a, T x) {
  switch (a) {
    case Activation::silu: return x / (T(1) + std::exp(-x));
    case Activation::gelu: return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
    case Activation::gelu_tanh: {
      const T c = T(0.79788456080286535588);  // sqrt(2/pi)
      return T(0.5) * x * (T(1) + std::tanh(c * (x + T(0.044715) * x * x * x)));
    }
    case Activation::relu: return x > T(0) ? x : T(0);
  }
  return x;
}

/// RMSNorm of one row: y = w * (x * rsqrt(mean(x^2) + eps)), statistics in float32 (HF Dots1RMSNorm).
template <class T>
struct RmsNormRow {
  const T* x;
  const T* w;
  T* y;
  int64_t dim;
  T eps;
  DOTS1_HD void operator()(int64_t row) const {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    T sum = 0;
    for (int64_t i = 0; i < dim; ++i) sum += xr[i] * xr[i];
    const T inv = T(1) / std::sqrt(sum / static_cast<T>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * inv);
  }
};

/// Rotary embedding (half-split "rotate_half" layout) applied in place to one (token, head) vector:
/// x' = x * cos + rotate_half(x) * sin, with cos/sin rows [tokens, head_dim].
template <class T>
struct RopeHead {
  T* x;           // [tokens, heads, head_dim]
  const T* cos;   // [tokens, head_dim]
  const T* sin;
  int64_t heads, head_dim;
  DOTS1_HD void operator()(int64_t token_head) const {
    const int64_t token = token_head / heads;
    T* v = x + token_head * head_dim;
    const T* c = cos + token * head_dim;
    const T* s = sin + token * head_dim;
    const int64_t half = head_dim / 2;
    for (int64_t i = 0; i < half; ++i) {
      const T x1 = v[i], x2 = v[i + half];
      v[i] = x1 * c[i] + (-x2) * s[i];
      v[i + half] = x2 * c[i + half] + x1 * s[i + half];
    }
  }
};

/// out[i] = act(gate[i]) * up[i]
template <class T>
struct ActMul {
  const T* gate;
  const T* up;
  T* out;
  Activation act;
  DOTS1_HD void operator()(int64_t i) const { out[i] = activate(act, gate[i]) * up[i]; }
};

/// The attention policies' windows (model/dots1.hpp): which keys a query may attend to besides
/// causality, as a type, so that full attention compiles no window test at all.
struct NoWindow {
  DOTS1_HD bool allows(int64_t /*query*/, int64_t /*key*/) const { return true; }
};
/// The last `size` positions, the query's own included (HF's sliding_window).
struct SlidingWindow {
  int64_t size = 0;
  DOTS1_HD bool allows(int64_t query, int64_t key) const { return key > query - size; }
};

/// Which keys a query may attend to (spec 4.1): causal over absolute cache slots, the window, the 2-D
/// padding mask indexed by key slot (right-padded with 0), and packed sequences.
template <class Window = NoWindow>
struct MaskSpec {
  int64_t q_offset = 0;        // absolute slot of query row 0
  int64_t kv_offset = 0;       // absolute slot of key row 0
  Window window{};
  const int32_t* key_mask = nullptr;  // [batch, key_mask_len], 1 = attend, or null
  int64_t key_mask_len = 0;
  const int64_t* packed_positions = nullptr;  // [batch, q_len] when packed sequences were detected, else null
  const int32_t* packed_ids = nullptr;        // [batch, q_len] sequence id per token (packed only)
  int64_t q_len = 0;

  DOTS1_HD bool allowed(int64_t b, int64_t i, int64_t j) const {
    int64_t q = q_offset + i, kv = kv_offset + j;
    if (packed_positions) {
      // HF remaps slot indices to position ids and requires the same packed sequence.
      if (packed_ids[b * q_len + i] != packed_ids[b * q_len + j]) return false;
      q = packed_positions[b * q_len + i];
      kv = packed_positions[b * q_len + j];
    }
    if (kv > q || !window.allows(q, kv)) return false;
    const int64_t slot = kv_offset + j;
    if (key_mask && (slot >= key_mask_len || key_mask[b * key_mask_len + slot] == 0)) return false;
    return true;
  }
};

/// Eager attention (spec 4.1) for rows (batch, head, query) = (b * heads + h) * q_len + i over the cached
/// keys: p = softmax(q.K^T * scaling + mask), masked entries at -FLT_MAX (HF's finfo.min, not -inf, so a
/// fully masked row becomes uniform, as in HF), out = p.V. Three steps, each a function of one output
/// value, so that a row functor (AttentionRow, the CPU's reference path) and one pass per step over many
/// indices (the Thrust backend) compute the same numbers in the same order.
/// Queries [batch, q_len, heads, head_dim]; keys and values [batch, capacity, kv_heads, head_dim].
template <class T>
struct AttentionGeometry {
  int64_t q_len, kv_len, capacity, heads, kv_heads, head_dim;
  T scaling;
  DOTS1_HD void split(int64_t row, int64_t& b, int64_t& h, int64_t& i, int64_t& kvh) const {
    i = row % q_len;
    h = (row / q_len) % heads;
    b = row / (q_len * heads);
    kvh = h / (heads / kv_heads);
  }
};

/// Step 1: the score of row `row` for key j.
template <class T, class Window>
DOTS1_HD inline T attention_score(const T* q, const T* k, const AttentionGeometry<T>& g, const MaskSpec<Window>& mask, int64_t row, int64_t j) {
  int64_t b, h, i, kvh;
  g.split(row, b, h, i, kvh);
  const T* qv = q + ((b * g.q_len + i) * g.heads + h) * g.head_dim;
  const T* kj = k + ((b * g.capacity + j) * g.kv_heads + kvh) * g.head_dim;
  T dot = 0;
  for (int64_t d = 0; d < g.head_dim; ++d) dot += qv[d] * kj[d];
  return dot * g.scaling + (mask.allowed(b, i, j) ? T(0) : -static_cast<T>(FLT_MAX));
}

/// Step 2: one row's softmax in place (scores become probabilities), copied to `weights` when non-null.
template <class T>
DOTS1_HD inline void softmax_row(T* s, int64_t n, T* weights) {
  T max_score = -INFINITY;
  for (int64_t j = 0; j < n; ++j) max_score = s[j] > max_score ? s[j] : max_score;
  T total = 0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - max_score);
    total += s[j];
  }
  const T inv_total = T(1) / total;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = s[j] * inv_total;
    if (weights) weights[j] = s[j];
  }
}

/// Step 3: output value d of row `row`: sum_j p[j] * v_j[d] (zero probabilities skipped: masked keys).
template <class T>
DOTS1_HD inline T attention_value(const T* v, const T* p, const AttentionGeometry<T>& g, int64_t row, int64_t d) {
  int64_t b, h, i, kvh;
  g.split(row, b, h, i, kvh);
  T o = 0;
  for (int64_t j = 0; j < g.kv_len; ++j) {
    const T pj = p[j];
    if (pj == T(0)) continue;
    o += pj * v[((b * g.capacity + j) * g.kv_heads + kvh) * g.head_dim + d];
  }
  return o;
}

/// The three steps for one row (the reference path of the CPU backend).
template <class T, class Window>
struct AttentionRow {
  const T* q;
  const T* k;
  const T* v;
  T* out;              // [batch, q_len, heads, head_dim]
  T* weights;          // [batch, heads, q_len, kv_len] (= [rows, kv_len]) or null
  T* scratch;          // [rows, kv_len] scores
  AttentionGeometry<T> g;
  MaskSpec<Window> mask;

  DOTS1_HD void operator()(int64_t row) const {
    T* s = scratch + row * g.kv_len;
    for (int64_t j = 0; j < g.kv_len; ++j) s[j] = attention_score(q, k, g, mask, row, j);
    softmax_row(s, g.kv_len, weights ? weights + row * g.kv_len : nullptr);
    int64_t b, h, i, kvh;
    g.split(row, b, h, i, kvh);
    T* o = out + ((b * g.q_len + i) * g.heads + h) * g.head_dim;
    for (int64_t d = 0; d < g.head_dim; ++d) o[d] = attention_value(v, s, g, row, d);
  }
};

/// The steps as one pass each over many indices (the Thrust backend: a decode step, with one query per
/// head, still spreads over the device). Scores: index = row * kv_len + j.
template <class T, class Window>
struct AttentionScores {
  const T* q;
  const T* k;
  T* scores;  // [rows, kv_len]
  AttentionGeometry<T> g;
  MaskSpec<Window> mask;
  DOTS1_HD void operator()(int64_t idx) const { scores[idx] = attention_score(q, k, g, mask, idx / g.kv_len, idx % g.kv_len); }
};
/// Softmax: index = row.
template <class T>
struct AttentionSoftmax {
  T* scores;
  T* weights;  // [rows, kv_len] or null
  int64_t kv_len;
  DOTS1_HD void operator()(int64_t row) const { softmax_row(scores + row * kv_len, kv_len, weights ? weights + row * kv_len : nullptr); }
};
/// Output: index = row * head_dim + d.
template <class T>
struct AttentionOutput {
  const T* v;
  const T* p;  // [rows, kv_len]
  T* out;      // [batch, q_len, heads, head_dim]
  AttentionGeometry<T> g;
  DOTS1_HD void operator()(int64_t idx) const {
    const int64_t row = idx / g.head_dim, d = idx % g.head_dim;
    int64_t b, h, i, kvh;
    g.split(row, b, h, i, kvh);
    out[((b * g.q_len + i) * g.heads + h) * g.head_dim + d] = attention_value(v, p + row * g.kv_len, g, row, d);
  }
};

/// Router for one token (HF Dots1TopkRouter): sigmoid scores, + e_score_correction_bias for the choice
/// only, group-limited selection (top-2 sum per group, keep topk_group groups, others at -inf), top-k,
/// weights = unbiased scores of the chosen experts, optional renormalisation (+1e-20), times the scale.
template <class T>
struct RouteToken {
  const T* logits;   // [tokens, experts] (float32 router logits)
  const T* bias;     // [experts]
  int32_t* indices;  // [tokens, top_k]
  T* weights;        // [tokens, top_k]
  T* scratch;        // [tokens, experts + n_group]
  int64_t experts, top_k, n_group, topk_group;
  bool norm_topk_prob;
  T scaling;

  DOTS1_HD void operator()(int64_t t) const {
    const T* l = logits + t * experts;
    T* choice = scratch + t * (experts + n_group);
    T* group_score = choice + experts;
    for (int64_t e = 0; e < experts; ++e) choice[e] = T(1) / (T(1) + std::exp(-l[e])) + bias[e];
    const int64_t per_group = experts / n_group;
    if (n_group > 1) {
      for (int64_t g = 0; g < n_group; ++g) {
        T a = -INFINITY, b2 = -INFINITY;  // top-2 of the group
        for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) {
          const T c = choice[e];
          if (c > a) { b2 = a; a = c; } else if (c > b2) { b2 = c; }
        }
        group_score[g] = a + b2;
      }
      // keep the topk_group best groups; mark dropped groups' experts with -inf
      for (int64_t kept = 0; kept < topk_group; ++kept) {
        int64_t best = -1;
        for (int64_t g = 0; g < n_group; ++g)
          if (group_score[g] != INFINITY && (best < 0 || group_score[g] > group_score[best])) best = g;
        group_score[best] = INFINITY;  // marks "kept"
      }
      for (int64_t g = 0; g < n_group; ++g)
        if (group_score[g] != INFINITY)
          for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) choice[e] = -INFINITY;
    }
    int32_t* idx = indices + t * top_k;
    T* w = weights + t * top_k;
    T sum = 0;
    for (int64_t k = 0; k < top_k; ++k) {
      int64_t best = -1;
      for (int64_t e = 0; e < experts; ++e) {
        bool taken = false;
        for (int64_t p = 0; p < k; ++p) taken = taken || idx[p] == e;
        if (!taken && (best < 0 || choice[e] > choice[best])) best = e;
      }
      idx[k] = static_cast<int32_t>(best);
      w[k] = T(1) / (T(1) + std::exp(-l[best]));
      sum += w[k];
    }
    const T denominator = sum + T(1e-20);
    for (int64_t k = 0; k < top_k; ++k) {
      if (norm_topk_prob) w[k] = w[k] / denominator;
      w[k] = w[k] * scaling;
    }
  }
};

}  // namespace dots1::kernels
