// dots1/backend/eigen/cpu_kernels.hpp — the CPU backend's hand-written kernels (float compute).
//
// Weights are read where they lie, as float32 or bfloat16, and accumulated in float32. bf16 -> f32 is a
// 16-bit shift: done in registers while streaming (decode), or once per 4-row group into an L1 scratch when
// the group feeds many activation rows (prefill). With AVX2+FMA (x86-64-v3) the kernels use intrinsics;
// without, the same loops in plain C++.
//
//   matmul        y[M, N] = x[M, K] . W[N, K]^T: dot-product register tiles of up to 3 activation rows x
//                 4 weight rows (12 accumulators). Decode (M <= 3) streams the weights once, bf16 through
//                 an even/odd split that needs no shuffles. Prefill (M > 3) packs x once into K blocks of
//                 ~512 with rows padded off the 4 KiB stride, keeps ~96 rows of it in L2 and streams the
//                 weights past it 4 rows at a time (copied/converted to a padded L1 scratch, next group
//                 prefetched). The weight rows are split over the threads in chunks claimed one at a time.
//   attention     prefill: blocks of 16 query rows, each row over the span of keys its mask allows, keys
//                 and values of one head copied contiguous; decode: the cache rows split over the threads
//                 (flash-decoding) with every cache row read once, all heads together.
//   rms_norm_row, act_mul (vectorised SiLU), exp8, softmax_row, add_into, add_scaled.
//
// Every function is exact for float32 up to the order of summation: tests/unit/test_cpu_kernels.cpp checks
// them against naive loops (matmul within the float32 summation error bound).
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

#include <omp.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DOTS1_CPU_AVX2 1
#else
#define DOTS1_CPU_AVX2 0
#endif

#include "dots1/backend/eigen/thread_pool.hpp"
#include "dots1/base/tensor.hpp"
#include "dots1/kernels/portable.hpp"

namespace dots1::cpu {

/// Whether the SIMD kernels were compiled in (needs -mavx2 -mfma, e.g. -march=x86-64-v3).
inline constexpr bool simd = DOTS1_CPU_AVX2 != 0;

// ------------------------------------------------------------------------------------------------ operands

enum class WType : uint8_t { f32, bf16 };

/// A row-major weight operand [rows, cols] with row stride `ld` (elements), stored as f32 or bf16.
struct WeightRef {
  const void* data = nullptr;
  WType type = WType::f32;
  int64_t rows = 0, cols = 0, ld = 0;
  const float* f32() const { return static_cast<const float*>(data); }
  const uint16_t* bf16() const { return static_cast<const uint16_t*>(data); }
};

inline float to_float(float x) { return x; }
inline float to_float(uint16_t x) { return bf16_to_float(x); }

// ------------------------------------------------------------------------------------------------ threads, scratch

/// A grow-only, 64-byte aligned float buffer; one per (thread, slot), so steady-state calls allocate nothing.
class ScratchBuffer {
 public:
  float* get(size_t n) {
    if (n > size_) {
      data_.reset(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t{64})));
      size_ = n;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<float, Free> data_;
  size_t size_ = 0;
};

enum ScratchSlot : int { kScratchConvert = 0, kScratchPanel, kScratchGather, kScratchGate, kScratchUp, kScratchAttn, kScratchParts, kScratchMisc, kScratchSlots };

/// This thread's buffer for `slot`, at least n floats.
inline float* scratch(int slot, size_t n) {
  thread_local ScratchBuffer buffers[kScratchSlots];
  return buffers[slot].get(std::max<size_t>(n, 16));
}

/// Splits [0, n) into `parts` contiguous ranges whose boundaries are multiples of `align`; range i.
inline void split_range(int64_t n, int parts, int i, int64_t align, int64_t& begin, int64_t& end) {
  const int64_t units = (n + align - 1) / align;
  const int64_t per = units / parts, extra = units % parts;
  const int64_t ub = i * per + std::min<int64_t>(i, extra), ue = ub + per + (i < extra ? 1 : 0);
  begin = std::min(n, ub * align);
  end = std::min(n, ue * align);
}

// ------------------------------------------------------------------------------------------------ SIMD helpers

#if DOTS1_CPU_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
/// [sum(a), sum(b), sum(c), sum(d)]
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/// exp(x) for 8 floats: Cephes' range reduction and degree-5 polynomial (about 1 ulp on [-87, 88]);
/// 0 below -87.3 (where float32 exp becomes subnormal), clamped at 88.
inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3365447505531f);
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
  x = _mm256_max_ps(x, lo);
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, z, x);
  y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(under, y);
}
#endif

/// Scalar exp with the same edge behaviour as exp8 (0 below the float32 normal range).
inline float exp1(float x) { return x < -87.3365447505531f ? 0.0f : std::exp(std::min(x, 88.0f)); }

// ------------------------------------------------------------------------------------------------ bf16 conversion

/// dst[i] = float(src[i]) for n values.
inline void convert_row(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
#if DOTS1_CPU_AVX2
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_ps(dst + i, load8(src + i));
    _mm256_storeu_ps(dst + i + 8, load8(src + i + 8));
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8(src + i));
#endif
  for (; i < n; ++i) dst[i] = bf16_to_float(src[i]);
}
inline void convert_row(const float* src, int64_t n, float* dst) { std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(n)); }

/// float -> bf16 (round to nearest even) for n values.
inline void round_row_bf16(const float* src, int64_t n, uint16_t* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
}

// ------------------------------------------------------------------------------------------------ dot tiles

/// y[m*ldy + r] = sum_k x[m*ldx + k] * w[r*ldw + k] for m < MR, r < NR (a register tile over all of K).
template <int MR, int NR, class W>
inline void dot_tile(const float* x, int64_t ldx, const W* w, int64_t ldw, int64_t K, float* y, int64_t ldy, bool accumulate, int64_t ycs = 1) {
  int64_t k = 0;
#if DOTS1_CPU_AVX2
  __m256 acc[MR][NR];
  for (int m = 0; m < MR; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = _mm256_setzero_ps();
  for (; k + 8 <= K; k += 8) {
    __m256 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = load8(w + r * ldw + k);
    for (int m = 0; m < MR; ++m) {
      const __m256 xv = _mm256_loadu_ps(x + m * ldx + k);
      for (int r = 0; r < NR; ++r) acc[m][r] = _mm256_fmadd_ps(xv, wv[r], acc[m][r]);
    }
  }
  float out[MR][NR];
  for (int m = 0; m < MR; ++m) {
    if constexpr (NR == 4) {
      _mm_storeu_ps(out[m], hsum4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]));
    } else {
      for (int r = 0; r < NR; ++r) out[m][r] = hsum(acc[m][r]);
    }
  }
#else
  float out[MR][NR] = {};
#endif
  for (; k < K; ++k)
    for (int m = 0; m < MR; ++m)
      for (int r = 0; r < NR; ++r) out[m][r] += x[m * ldx + k] * to_float(w[r * ldw + k]);
  if (accumulate) {
    for (int m = 0; m < MR; ++m)
      for (int r = 0; r < NR; ++r) y[m * ldy + r * ycs] += out[m][r];
  } else {
    for (int m = 0; m < MR; ++m)
      for (int r = 0; r < NR; ++r) y[m * ldy + r * ycs] = out[m][r];
  }
}

/// The weight rows to fetch into cache while the current ones are in use: `rows` rows of `row_bytes`
/// bytes, `ld_bytes` apart (null base: nothing to fetch).
struct Prefetch {
  const char* base = nullptr;
  int64_t ld_bytes = 0, row_bytes = 0;
  int rows = 0;
  /// Touches part `part` of `parts` of every row (cache lines of 64 bytes).
  void part(int64_t part, int64_t parts) const {
    if (!base) return;
    const int64_t lines = (row_bytes + 63) / 64;
    const int64_t l0 = lines * part / parts, l1 = lines * (part + 1) / parts;
    for (int r = 0; r < rows; ++r)
      for (int64_t l = l0; l < l1; ++l) __builtin_prefetch(base + r * ld_bytes + l * 64, 0, 3);
  }
};

/// bf16 decode tile: y[m*ldy + r] = sum_k x[m, k] * w[r*ldw + k] for k < K16 (a multiple of 16), with x
/// given pre-permuted per 16 values (evens then odds, see permute_even_odd): one 256-bit load of 16 bf16
/// weights gives the even ones by a shift and the odd ones by a mask, no shuffles.
template <int MR, int NR>
inline void dot_tile_bf16_eo(const float* xp, int64_t ldx, const uint16_t* w, int64_t ldw, int64_t K16, float* y, int64_t ldy, int64_t ycs = 1) {
#if DOTS1_CPU_AVX2
  const __m256i odd = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  __m256 acc[MR][NR];
  for (int m = 0; m < MR; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K16; k += 16) {
    __m256 we[NR], wo[NR];
    for (int r = 0; r < NR; ++r) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * ldw + k));
      we[r] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
      wo[r] = _mm256_castsi256_ps(_mm256_and_si256(v, odd));
    }
    for (int m = 0; m < MR; ++m) {
      const __m256 xe = _mm256_loadu_ps(xp + m * ldx + k), xo = _mm256_loadu_ps(xp + m * ldx + k + 8);
      for (int r = 0; r < NR; ++r) acc[m][r] = _mm256_fmadd_ps(xo, wo[r], _mm256_fmadd_ps(xe, we[r], acc[m][r]));
    }
  }
  for (int m = 0; m < MR; ++m) {
    if constexpr (NR == 4) {
      if (ycs == 1) {
        _mm_storeu_ps(y + m * ldy, hsum4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]));
      } else {
        float o[4];
        _mm_storeu_ps(o, hsum4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]));
        for (int r = 0; r < 4; ++r) y[m * ldy + r * ycs] = o[r];
      }
    } else {
      for (int r = 0; r < NR; ++r) y[m * ldy + r * ycs] = hsum(acc[m][r]);
    }
  }
#else
  for (int m = 0; m < MR; ++m)
    for (int r = 0; r < NR; ++r) {
      float s = 0;
      for (int64_t k = 0; k < K16; k += 16)
        for (int j = 0; j < 8; ++j)
          s += xp[m * ldx + k + j] * bf16_to_float(w[r * ldw + k + 2 * j]) + xp[m * ldx + k + 8 + j] * bf16_to_float(w[r * ldw + k + 2 * j + 1]);
      y[m * ldy + r * ycs] = s;
    }
#endif
}

/// xp = x with each block of 16 values reordered as [x0, x2, ..., x14, x1, x3, ..., x15] (first K16 values).
inline void permute_even_odd(const float* x, int64_t K16, float* xp) {
  for (int64_t k = 0; k < K16; k += 16)
    for (int j = 0; j < 8; ++j) {
      xp[k + j] = x[k + 2 * j];
      xp[k + 8 + j] = x[k + 2 * j + 1];
    }
}

/// Rows [m0, m1) of x against 4 (or NR) weight rows starting at w: 3-row tiles, then the 1-2 left over.
/// The next weight rows (`next`) are fetched a slice per tile, so that they arrive before they are needed
/// (streaming weights from DRAM would otherwise stall the first tile of every row group).
template <int NR, class W>
inline void dot_rows(const float* x, int64_t ldx, int64_t m0, int64_t m1, const W* w, int64_t ldw, int64_t K, float* y, int64_t ldy,
                     bool accumulate, const Prefetch& next = {}) {
  const int64_t tiles = (m1 - m0 + 2) / 3;
  int64_t m = m0, t = 0;
  for (; m + 3 <= m1; m += 3, ++t) {
    next.part(t, tiles);
    dot_tile<3, NR>(x + m * ldx, ldx, w, ldw, K, y + m * ldy, ldy, accumulate);
  }
  next.part(t, tiles);
  if (m1 - m == 2) dot_tile<2, NR>(x + m * ldx, ldx, w, ldw, K, y + m * ldy, ldy, accumulate);
  else if (m1 - m == 1) dot_tile<1, NR>(x + m * ldx, ldx, w, ldw, K, y + m * ldy, ldy, accumulate);
}

/// The activations of a multi-row matmul, copied once into K blocks of at most ~512 columns with rows
/// padded off the 4 KiB stride: block kb holds rows [M, ld] of columns [kb*kc_max, ...).
struct PackedX {
  const float* data = nullptr;
  int64_t M = 0, K = 0, kc_max = 0, ld = 0;
  static int64_t kc_for(int64_t K) {
    const int64_t k_blocks = std::max<int64_t>(1, (K + 575) / 512);
    return ((K + k_blocks - 1) / k_blocks + 7) / 8 * 8;
  }
  static size_t floats(int64_t M, int64_t K) {
    const int64_t kc = kc_for(K);
    return static_cast<size_t>(M * ((K + kc - 1) / kc) * (kc + 16));
  }
  const float* block(int64_t k0) const { return data + (k0 / kc_max) * M * ld; }
};

inline PackedX pack_x(const float* x, int64_t M, int64_t ldx, int64_t K, float* out) {
  PackedX p{out, M, K, PackedX::kc_for(K), PackedX::kc_for(K) + 16};
  for (int64_t k0 = 0; k0 < K; k0 += p.kc_max) {
    const int64_t kc = std::min(p.kc_max, K - k0);
    float* blk = out + (k0 / p.kc_max) * M * p.ld;
    for (int64_t m = 0; m < M; ++m) std::memcpy(blk + m * p.ld, x + m * ldx + k0, sizeof(float) * static_cast<size_t>(kc));
  }
  return p;
}

/// y[m, n] = x[m, :] . W[n, :] for the packed rows of x and weight rows n in [n0, n1), on this thread:
/// rows of x in chunks of ~96 per K block (~192 KiB, stays in L2) while the weight rows stream past 4 at a
/// time (copied, bf16 converted, into an L1 scratch padded off the tensor's stride), so every weight byte
/// fetched from memory serves ~96 rows.
inline void matmul_packed(const PackedX& px, const WeightRef& w, int64_t n0, int64_t n1, float* y, int64_t ldy) {
  const int64_t M = px.M, K = px.K, kc_max = px.kc_max, ld = px.ld;
  const int64_t chunk = std::min<int64_t>(M, std::max<int64_t>(3, (49152 / kc_max) / 3 * 3));
  float* wbuf = scratch(kScratchConvert, static_cast<size_t>(4 * ld));
  const int64_t esize = w.type == WType::bf16 ? 2 : 4;
  for (int64_t mc = 0; mc < M; mc += chunk) {
    const int64_t rows = std::min(M, mc + chunk) - mc;
    for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
      const int64_t kc = std::min(kc_max, K - k0);
      const bool acc = k0 > 0;
      const float* xbuf = px.block(k0) + mc * ld;
      float* yc = y + mc * ldy;
      int64_t n = n0;
      for (; n + 4 <= n1; n += 4) {
        Prefetch next;
        if (n + 8 <= n1) next = {static_cast<const char*>(w.data) + ((n + 4) * w.ld + k0) * esize, w.ld * esize, kc * esize, 4};
        for (int r = 0; r < 4; ++r) {
          if (w.type == WType::f32) convert_row(w.f32() + (n + r) * w.ld + k0, kc, wbuf + r * ld);
          else convert_row(w.bf16() + (n + r) * w.ld + k0, kc, wbuf + r * ld);
        }
        dot_rows<4>(xbuf, ld, 0, rows, static_cast<const float*>(wbuf), ld, kc, yc + n, ldy, acc, next);
      }
      for (; n < n1; ++n) {
        if (w.type == WType::f32) dot_rows<1>(xbuf, ld, 0, rows, w.f32() + n * w.ld + k0, w.ld, kc, yc + n, ldy, acc);
        else dot_rows<1>(xbuf, ld, 0, rows, w.bf16() + n * w.ld + k0, w.ld, kc, yc + n, ldy, acc);
      }
    }
  }
}

/// Rows apart at which weight rows of `row_bytes` (their stride) lie in different 4 KiB pages (1..16).
inline int64_t page_stride(int64_t row_bytes) { return std::clamp<int64_t>((4096 + row_bytes - 1) / std::max<int64_t>(row_bytes, 1), 1, 16); }

/// Alignment of decode row ranges (chunks of a matmul, parts of an expert): whole page-strided tile groups.
inline int64_t decode_row_align(const WeightRef& w) { return 4 * page_stride(w.ld * (w.type == WType::bf16 ? 2 : 4)); }

/// y[m, n] = x[m, :] . W[n, :] for all M rows of x and weight rows n in [n0, n1), on this thread.
/// Decode (1-3 rows): one pass over the weights, 4 rows at a time, bf16 widened in registers.
/// More rows: K in blocks of at most ~512 and the rows of x in chunks of ~96, so that a chunk's block of x
/// (~192 KiB) stays in L2 while the weight rows stream past 4 at a time, and every weight byte fetched from
/// memory serves ~96 rows. The x block and each 4-row weight block are copied (bf16: converted) into
/// scratch rows padded off the 4 KiB stride of the tensors, which would otherwise put all 7 streams of a
/// tile in the same L1 sets.
inline void matmul_rows(const float* x, int64_t M, int64_t ldx, const WeightRef& w, int64_t n0, int64_t n1, float* y, int64_t ldy) {
  const int64_t K = w.cols;
  if (M <= 0 || n1 <= n0) return;
  if (M <= 3) {
    // Decode: the range is read as 4 concurrent sequential streams, one per quarter of the rows: tile t takes
    // rows n0 + t, n0 + t + L, n0 + t + 2L, n0 + t + 3L (L = a quarter). One core keeps ~4 streams in flight
    // (measured here: 19 GB/s from one stream, 24 from four); and each stream has its pages to itself (two
    // streams interleaved in one 4 KiB page defeat the prefetcher: 2 KiB bf16 rows read 4 consecutive at a
    // time streamed at ~2/3 of the rate).
    const int64_t esize = w.type == WType::bf16 ? 2 : 4;
    const int64_t stride = std::max(page_stride(w.ld * esize), (n1 - n0) / 4);
    const int64_t K16 = K / 16 * 16;
    float* xp = nullptr;
    if (w.type == WType::bf16) {  // bf16: the first K16 columns through the even/odd tile on a permuted x
      xp = scratch(kScratchPanel, static_cast<size_t>(M * std::max<int64_t>(K16, 1)));
      for (int64_t m = 0; m < M; ++m) permute_even_odd(x + m * ldx, K16, xp + m * K16);
    }
    // NR rows from row n, `step` rows apart, outputs y[., n + r * step]
    auto tile = [&](auto nr, int64_t n, int64_t step) {
      constexpr int NR = decltype(nr)::value;
      const int64_t ldw = step * w.ld;
      if (w.type == WType::f32) {
        const float* wn = w.f32() + n * w.ld;
        if (M == 3) dot_tile<3, NR>(x, ldx, wn, ldw, K, y + n, ldy, false, step);
        else if (M == 2) dot_tile<2, NR>(x, ldx, wn, ldw, K, y + n, ldy, false, step);
        else dot_tile<1, NR>(x, ldx, wn, ldw, K, y + n, ldy, false, step);
        return;
      }
      const uint16_t* wn = w.bf16() + n * w.ld;
      if (M == 3) dot_tile_bf16_eo<3, NR>(xp, K16, wn, ldw, K16, y + n, ldy, step);
      else if (M == 2) dot_tile_bf16_eo<2, NR>(xp, K16, wn, ldw, K16, y + n, ldy, step);
      else dot_tile_bf16_eo<1, NR>(xp, K16, wn, ldw, K16, y + n, ldy, step);
      if (K16 < K) {
        float tail[3][NR];
        if (M == 3) dot_tile<3, NR>(x + K16, ldx, wn + K16, ldw, K - K16, &tail[0][0], NR, false);
        else if (M == 2) dot_tile<2, NR>(x + K16, ldx, wn + K16, ldw, K - K16, &tail[0][0], NR, false);
        else dot_tile<1, NR>(x + K16, ldx, wn + K16, ldw, K - K16, &tail[0][0], NR, false);
        for (int64_t m = 0; m < M; ++m)
          for (int r = 0; r < NR; ++r) y[m * ldy + n + r * step] += tail[m][r];
      }
    };
    int64_t n = n0;
    for (; n + 4 * stride <= n1; n += 4 * stride)
      for (int64_t t = 0; t < stride; ++t) tile(std::integral_constant<int, 4>{}, n + t, stride);
    for (; n + 4 <= n1; n += 4) tile(std::integral_constant<int, 4>{}, n, 1);
    for (; n < n1; ++n) tile(std::integral_constant<int, 1>{}, n, 1);
    return;
  }
  const PackedX px = pack_x(x, M, ldx, K, scratch(kScratchPanel, PackedX::floats(M, K)));
  matmul_packed(px, w, n0, n1, y, ldy);
}

/// y[M, N] = x[M, K] . W[N, K]^T, the N weight rows split over the threads (chunks of whole 4-row groups
/// claimed one at a time, so a core slowed by another process takes fewer). Serial inside a parallel loop.
inline void matmul(const float* x, int64_t M, int64_t ldx, const WeightRef& w, float* y, int64_t ldy) {
  const int64_t N = w.rows;
  const int threads = threads_here();
  // Decode: chunks of ~128 KiB of weights (~10 us each, 4 streams of 32 KiB), so that the threads finish a
  // loop within a few microseconds of each other (a decode step runs ~100 loops). Prefill: ~8 chunks per
  // thread, each re-reads the packed activations.
  const int64_t row_bytes = w.cols * (w.type == WType::bf16 ? 2 : 4);
  const int64_t align = M <= 3 ? decode_row_align(w) : 4;
  const int64_t min_rows = std::max<int64_t>(align, ((131072 / std::max<int64_t>(row_bytes, 1)) + align - 1) / align * align);
  int64_t rows_per = M <= 3 ? min_rows : std::max(min_rows, ((N + threads * 8 - 1) / (threads * 8) + 3) / 4 * 4);
  const int64_t chunks = (N + rows_per - 1) / rows_per;
  if (threads <= 1 || chunks <= 1 || static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(w.cols) < 65536.0) {
    matmul_rows(x, M, ldx, w, 0, N, y, ldy);
    return;
  }
  if (M > 3) {  // pack x once for all the chunks
    const PackedX px = pack_x(x, M, ldx, w.cols, scratch(kScratchPanel, PackedX::floats(M, w.cols)));
    parallel_for(chunks, threads, [&](int64_t c) { matmul_packed(px, w, c * rows_per, std::min(N, (c + 1) * rows_per), y, ldy); });
    return;
  }
  // Decode: the last 2 x threads big chunks' worth of rows go in chunks of a quarter of the size, claimed
  // last (the pool hands out indices from the top), so that the threads run out of work together.
  const int64_t small = std::max(align, (rows_per / 4 + align - 1) / align * align);
  const int64_t head = (N - std::min(N, 2 * threads * rows_per)) / align * align, tail = N - head;
  const int64_t n_big = (head + rows_per - 1) / rows_per, n_small = (tail + small - 1) / small;
  parallel_for(n_big + n_small, threads, [&](int64_t c) {
    if (c >= n_small) {
      const int64_t b = (c - n_small) * rows_per;
      matmul_rows(x, M, ldx, w, b, std::min(head, b + rows_per), y, ldy);
    } else {
      const int64_t b = head + c * small;
      matmul_rows(x, M, ldx, w, b, std::min(N, b + small), y, ldy);
    }
  });
}

// ------------------------------------------------------------------------------------------------ element-wise rows

/// y = w * (x * rsqrt(mean(x^2) + eps)) for one row (HF Dots1RMSNorm in float32).
inline void rms_norm_row(const float* x, const float* w, float* y, int64_t dim, float eps) {
  int64_t i = 0;
  float sum = 0;
#if DOTS1_CPU_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; i + 16 <= dim; i += 16) {
    const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
    a1 = _mm256_fmadd_ps(v1, v1, a1);
  }
  for (; i + 8 <= dim; i += 8) {
    const __m256 v0 = _mm256_loadu_ps(x + i);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
  }
  sum = hsum(_mm256_add_ps(a0, a1));
#endif
  for (; i < dim; ++i) sum += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(sum / static_cast<float>(dim) + eps);
  i = 0;
#if DOTS1_CPU_AVX2
  const __m256 vinv = _mm256_set1_ps(inv);
  for (; i + 8 <= dim; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv)));
#endif
  for (; i < dim; ++i) y[i] = w[i] * (x[i] * inv);
}

/// out[i] = act(gate[i]) * up[i]; SiLU vectorised (x / (1 + exp(-x))), the other activations scalar.
inline void act_mul(const float* gate, const float* up, float* out, int64_t n, kernels::Activation act) {
  int64_t i = 0;
  if (act == kernels::Activation::silu) {
#if DOTS1_CPU_AVX2
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
      const __m256 g = _mm256_loadu_ps(gate + i);
      const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, g))));
      _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
#endif
    for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
    return;
  }
  for (; i < n; ++i) out[i] = kernels::activate(act, gate[i]) * up[i];
}

/// acc[i] += x[i]
inline void add_into(float* acc, const float* x, int64_t n) {
  int64_t i = 0;
#if DOTS1_CPU_AVX2
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_loadu_ps(x + i)));
#endif
  for (; i < n; ++i) acc[i] += x[i];
}

/// acc[i] += w * x[i]  (one rounding for the product and one for the sum, as `acc += x * w` in HF)
inline void add_scaled(float* acc, const float* x, float w, int64_t n) {
  int64_t i = 0;
#if DOTS1_CPU_AVX2
  const __m256 vw = _mm256_set1_ps(w);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), vw)));
#endif
  for (; i < n; ++i) acc[i] += x[i] * w;
}

/// acc[i] += w * x[i] with one rounding (fused multiply-add).
inline void add_scaled_fma(float* acc, const float* x, float w, int64_t n) {
  int64_t i = 0;
#if DOTS1_CPU_AVX2
  const __m256 vw = _mm256_set1_ps(w);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + i), _mm256_loadu_ps(acc + i)));
#endif
  for (; i < n; ++i) acc[i] = std::fma(w, x[i], acc[i]);
}

// ------------------------------------------------------------------------------------------------ attention

/// Geometry and operands of one attention call (see AttentionShape / kernels::AttentionRow); the mask's
/// window is the attention policy's (a type: full attention tests no window).
template <class Window>
struct AttentionArgs {
  const float* q;   // [batch, q_len, heads, head_dim]
  const float* k;   // [batch, capacity, kv_heads, head_dim]
  const float* v;
  float* out;       // [batch, q_len, heads, head_dim]
  float* weights;   // [batch, heads, q_len, kv_len] or null
  int64_t batch, q_len, kv_len, capacity, heads, kv_heads, head_dim;
  float scaling;
  kernels::MaskSpec<Window> mask;
};

inline float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float s = 0;
#if DOTS1_CPU_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
  s = hsum(_mm256_add_ps(a0, a1));
#endif
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

/// Softmax of one row in place: p = exp(s - max) / sum. Returns nothing; fully masked rows (all -FLT_MAX)
/// become uniform, as HF's.
inline void softmax_row(float* s, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
  int64_t j = 0;
  float total = 0;
#if DOTS1_CPU_AVX2
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx));
    _mm256_storeu_ps(s + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  total = hsum(acc);
#endif
  for (; j < n; ++j) {
    s[j] = exp1(s[j] - mx);
    total += s[j];
  }
  const float inv = 1.0f / total;
  j = 0;
#if DOTS1_CPU_AVX2
  const __m256 vinv = _mm256_set1_ps(inv);
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), vinv));
#endif
  for (; j < n; ++j) s[j] *= inv;
}

/// Attention of query row (b, i) for heads [h0, h1): scores over the cache rows (masked ones at
/// -FLT_MAX, their dot products skipped), softmax, then out = p . V. Keys and values are read one cache
/// row at a time for all the heads of the range, in blocks of rows that stay in L2 while each head passes
/// over them. `s` holds (h1 - h0) * kv_len scores, `bias` kv_len values.
template <class Window>
inline void attention_row(const AttentionArgs<Window>& a, int64_t b, int64_t i, int64_t h0, int64_t h1, float* s, float* bias) {
  const int64_t kv = a.kv_len, d = a.head_dim, group = a.heads / a.kv_heads, kv_row = a.kv_heads * d;
  const float masked = -FLT_MAX;
  for (int64_t j = 0; j < kv; ++j) bias[j] = a.mask.allowed(b, i, j) ? 0.0f : masked;
  const float* kbase = a.k + b * a.capacity * kv_row;
  const float* vbase = a.v + b * a.capacity * kv_row;
  constexpr int64_t block = 32;
  for (int64_t j0 = 0; j0 < kv; j0 += block) {
    const int64_t j1 = std::min(kv, j0 + block);
    for (int64_t h = h0; h < h1; ++h) {
      const float* qh = a.q + ((b * a.q_len + i) * a.heads + h) * d;
      const float* kh = kbase + (h / group) * d;
      float* sh = s + (h - h0) * kv;
      for (int64_t j = j0; j < j1; ++j) sh[j] = bias[j] == 0.0f ? dot(qh, kh + j * kv_row, d) * a.scaling : masked;
    }
  }
  for (int64_t h = h0; h < h1; ++h) {
    float* sh = s + (h - h0) * kv;
    softmax_row(sh, kv);
    if (a.weights) std::memcpy(a.weights + ((b * a.heads + h) * a.q_len + i) * kv, sh, sizeof(float) * static_cast<size_t>(kv));
    float* o = a.out + ((b * a.q_len + i) * a.heads + h) * d;
    std::fill(o, o + d, 0.0f);
  }
  for (int64_t j0 = 0; j0 < kv; j0 += block) {
    const int64_t j1 = std::min(kv, j0 + block);
    for (int64_t h = h0; h < h1; ++h) {
      const float* sh = s + (h - h0) * kv;
      const float* vh = vbase + (h / group) * d;
      float* o = a.out + ((b * a.q_len + i) * a.heads + h) * d;
      int64_t c = 0;
#if DOTS1_CPU_AVX2
      for (; c + 8 <= d; c += 8) {
        __m256 acc = _mm256_loadu_ps(o + c);
        for (int64_t j = j0; j < j1; ++j) {
          const float p = sh[j];
          if (p == 0.0f) continue;
          acc = _mm256_fmadd_ps(_mm256_set1_ps(p), _mm256_loadu_ps(vh + j * kv_row + c), acc);
        }
        _mm256_storeu_ps(o + c, acc);
      }
#endif
      for (; c < d; ++c) {
        float acc = o[c];
        for (int64_t j = j0; j < j1; ++j) {
          const float p = sh[j];
          if (p == 0.0f) continue;
          acc += p * vh[j * kv_row + c];
        }
        o[c] = acc;
      }
    }
  }
}

/// out[c] = sum_{j in [j0, j1)} p[j] * v[j * ldv + c] for c < 8*NV, accumulated in registers (skips p == 0).
template <int NV>
inline void pv_chunk(const float* p, const float* v, int64_t ldv, int64_t j0, int64_t j1, float* out) {
#if DOTS1_CPU_AVX2
  __m256 acc[NV];
  for (int c = 0; c < NV; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t j = j0; j < j1; ++j) {
    if (p[j] == 0.0f) continue;
    const __m256 pj = _mm256_set1_ps(p[j]);
    const float* vj = v + j * ldv;
    for (int c = 0; c < NV; ++c) acc[c] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * c), acc[c]);
  }
  for (int c = 0; c < NV; ++c) _mm256_storeu_ps(out + 8 * c, acc[c]);
#else
  for (int c = 0; c < 8 * NV; ++c) {
    float acc = 0;
    for (int64_t j = j0; j < j1; ++j)
      if (p[j] != 0.0f) acc += p[j] * v[j * ldv + c];
    out[c] = acc;
  }
#endif
}

/// out[c] = sum_j p[j] v[j, c] for c < d (d a multiple of 8), 64 columns at a time in registers.
inline void pv_row(const float* p, const float* v, int64_t ldv, int64_t d, int64_t j0, int64_t j1, float* out) {
  for (int64_t c0 = 0; c0 < d; c0 += 64) {
    switch (std::min<int64_t>(8, (d - c0) / 8)) {
      case 8: pv_chunk<8>(p, v + c0, ldv, j0, j1, out + c0); break;
      case 7: pv_chunk<7>(p, v + c0, ldv, j0, j1, out + c0); break;
      case 6: pv_chunk<6>(p, v + c0, ldv, j0, j1, out + c0); break;
      case 5: pv_chunk<5>(p, v + c0, ldv, j0, j1, out + c0); break;
      case 4: pv_chunk<4>(p, v + c0, ldv, j0, j1, out + c0); break;
      case 3: pv_chunk<3>(p, v + c0, ldv, j0, j1, out + c0); break;
      case 2: pv_chunk<2>(p, v + c0, ldv, j0, j1, out + c0); break;
      default: pv_chunk<1>(p, v + c0, ldv, j0, j1, out + c0); break;
    }
  }
}

/// Prefill attention for query rows [i0, i1) of batch entry b, all heads: each row attends only over the
/// span of keys its mask allows (the causal half and padding are skipped, not computed and zeroed). Per
/// head, the keys and values of the block's span are first copied into contiguous scratch (rows of
/// head_dim floats instead of the cache's 4 KiB stride), then every query row takes scores (masked ones
/// at -FLT_MAX inside the span), the softmax over its span and p . V with the output in registers.
/// Entries outside a row's span are exactly 0 after the softmax (HF: exp(-FLT_MAX - max) underflows to 0),
/// so the result is the full-row computation's. Needs head_dim % 8 == 0; rows with no allowed key at all
/// (uniform weights in HF) go through attention_row. `work` holds (i1 - i0) * kv + 2 * kv * head_dim + kv floats.
template <class Window>
inline void attention_block(const AttentionArgs<Window>& a, int64_t b, int64_t i0, int64_t i1, float* work) {
  const int64_t kv = a.kv_len, d = a.head_dim, group = a.heads / a.kv_heads, kv_row = a.kv_heads * d, rows = i1 - i0;
  const float masked = -FLT_MAX;
  float* bias = work;                    // [rows, kv]
  float* kc = bias + rows * kv;          // [span, d]
  float* vc = kc + kv * d;               // [span, d]
  float* sc = vc + kv * d;               // [kv] scores of one row
  int64_t lo[64], hi[64];
  int64_t span_lo = kv, span_hi = 0;
  for (int64_t r = 0; r < rows; ++r) {
    lo[r] = kv;
    hi[r] = 0;
    float* br = bias + r * kv;
    for (int64_t j = 0; j < kv; ++j) {
      const bool ok = a.mask.allowed(b, i0 + r, j);
      br[j] = ok ? 0.0f : masked;
      if (ok) {
        lo[r] = std::min(lo[r], j);
        hi[r] = j + 1;
      }
    }
    if (lo[r] < hi[r]) {
      span_lo = std::min(span_lo, lo[r]);
      span_hi = std::max(span_hi, hi[r]);
    }
  }
  for (int64_t h = 0; h < a.heads; ++h) {
    const int64_t kvh = h / group;
    if (span_lo < span_hi) {
      for (int64_t j = span_lo; j < span_hi; ++j) {
        std::memcpy(kc + (j - span_lo) * d, a.k + ((b * a.capacity + j) * kv_row) + kvh * d, sizeof(float) * static_cast<size_t>(d));
        std::memcpy(vc + (j - span_lo) * d, a.v + ((b * a.capacity + j) * kv_row) + kvh * d, sizeof(float) * static_cast<size_t>(d));
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + r;
      float* o = a.out + ((b * a.q_len + i) * a.heads + h) * d;
      if (lo[r] >= hi[r]) {  // nothing allowed: HF's uniform row
        attention_row(a, b, i, h, h + 1, sc, sc + kv);
        continue;
      }
      const float* qh = a.q + ((b * a.q_len + i) * a.heads + h) * d;
      const float* br = bias + r * kv;
      const int64_t j0 = lo[r], j1 = hi[r];
      for (int64_t j = j0; j < j1; ++j) sc[j] = br[j] == 0.0f ? dot(qh, kc + (j - span_lo) * d, d) * a.scaling : masked;
      softmax_row(sc + j0, j1 - j0);
      if (a.weights) {
        float* w = a.weights + ((b * a.heads + h) * a.q_len + i) * kv;
        std::fill(w, w + kv, 0.0f);
        std::memcpy(w + j0, sc + j0, sizeof(float) * static_cast<size_t>(j1 - j0));
      }
      pv_row(sc + span_lo, vc, d, d, j0 - span_lo, j1 - span_lo, o);
    }
  }
}

#if DOTS1_CPU_AVX2
/// out[r] = q . k_r for the 4 key rows k_r (8*NV floats each): q loaded once for the 4, one horizontal sum.
template <int NV>
inline void dot4(const float* q, const float* k0, const float* k1, const float* k2, const float* k3, float* out) {
  __m256 qc = _mm256_loadu_ps(q);
  __m256 a0 = _mm256_mul_ps(qc, _mm256_loadu_ps(k0)), a1 = _mm256_mul_ps(qc, _mm256_loadu_ps(k1));
  __m256 a2 = _mm256_mul_ps(qc, _mm256_loadu_ps(k2)), a3 = _mm256_mul_ps(qc, _mm256_loadu_ps(k3));
  for (int c = 1; c < NV; ++c) {
    qc = _mm256_loadu_ps(q + 8 * c);
    a0 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k0 + 8 * c), a0);
    a1 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k1 + 8 * c), a1);
    a2 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k2 + 8 * c), a2);
    a3 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k3 + 8 * c), a3);
  }
  _mm_storeu_ps(out, hsum4(a0, a1, a2, a3));
}

/// o (8*NV floats) += p[0] v0 + p[1] v1 + p[2] v2 + p[3] v3, in that order (o loaded and stored once).
template <int NV>
inline void pv4(const float* p, const float* v0, const float* v1, const float* v2, const float* v3, float* o) {
  const __m256 p0 = _mm256_set1_ps(p[0]), p1 = _mm256_set1_ps(p[1]), p2 = _mm256_set1_ps(p[2]), p3 = _mm256_set1_ps(p[3]);
  for (int c = 0; c < NV; ++c) {
    __m256 acc = _mm256_loadu_ps(o + 8 * c);
    acc = _mm256_fmadd_ps(p0, _mm256_loadu_ps(v0 + 8 * c), acc);
    acc = _mm256_fmadd_ps(p1, _mm256_loadu_ps(v1 + 8 * c), acc);
    acc = _mm256_fmadd_ps(p2, _mm256_loadu_ps(v2 + 8 * c), acc);
    acc = _mm256_fmadd_ps(p3, _mm256_loadu_ps(v3 + 8 * c), acc);
    _mm256_storeu_ps(o + 8 * c, acc);
  }
}
#endif

/// Cache rows are a page (4 KiB for the bench shape) or so each, and the 4 rows read together lie in 4
/// different pages: the hardware prefetchers, which stop at page boundaries, start cold on every row. So the
/// kernel asks for the rows `ahead` steps on explicitly, each head its own slice [off, off + d) as it goes.
inline constexpr int64_t kPrefetchRows = 2;
inline void prefetch_rows(const float* base, int64_t row, const int64_t (&r)[4], int64_t ahead, int64_t off, int64_t d) {
#if DOTS1_CPU_AVX2
  for (int u = 0; u < 4; ++u) {
    const char* p = reinterpret_cast<const char*>(base + (r[u] + ahead) * row + off);
    for (int64_t c = 0; c < d * static_cast<int64_t>(sizeof(float)); c += 64) _mm_prefetch(p + c, _MM_HINT_T0);
  }
#else
  (void)base, (void)row, (void)r, (void)ahead, (void)off, (void)d;
#endif
}

/// Decode attention split over the cache rows (flash-decoding): part p of the rows of query row (b, i)
/// gives, for every head, the partial max m_p, sum l_p = sum exp(s - m_p) and unnormalised output
/// o_p = sum exp(s - m_p) v; `combine_parts` merges the parts: o = sum o_p e^(m_p - m) / sum l_p e^(m_p - m).
/// Memory: every cache row (all heads, 4 KiB contiguous for the bench shape) is read once for the keys and
/// once for the values, 4 rows at a time, one from each quarter of the part: 4 concurrent sequential
/// streams (see matmul_rows), and each head's query (output) is applied to the 4 rows at once while they
/// sit in L1. (Passing each head over a larger block of rows instead reads them at a 4 KiB stride, all in
/// the same L1 sets: measured 2.5x slower.)
/// `part` holds heads * (head_dim + 2) floats, `s` heads * (j1 - j0) scores, `bias` (j1 - j0) values.
template <class Window>
inline void attention_part(const AttentionArgs<Window>& a, int64_t b, int64_t i, int64_t j0, int64_t j1, float* part, float* s, float* bias) {
  const int64_t d = a.head_dim, group = a.heads / a.kv_heads, kv_row = a.kv_heads * d, n = j1 - j0;
  const float masked = -FLT_MAX;
  for (int64_t j = j0; j < j1; ++j) bias[j - j0] = a.mask.allowed(b, i, j) ? 0.0f : masked;
  const float* q = a.q + (b * a.q_len + i) * a.heads * d;
  const float* kbase = a.k + (b * a.capacity + j0) * kv_row;
  const float* vbase = a.v + (b * a.capacity + j0) * kv_row;
  const int64_t L = n / 4;  // rows t, L + t, 2L + t, 3L + t together; rows from 4L on one at a time
  [[maybe_unused]] const int nv = (d % 8 == 0 && d <= 64) ? static_cast<int>(d / 8) : 0;
  for (int64_t h = 0; h < a.heads; ++h) std::fill(part + h * (d + 2) + 2, part + h * (d + 2) + 2 + d, 0.0f);
  // 1. scores
  for (int64_t t = 0; t < L; ++t) {
    const int64_t r[4] = {t, L + t, 2 * L + t, 3 * L + t};
    for (int64_t h = 0; h < a.heads; ++h) {
      const float* qh = q + h * d;
      const int64_t kh = (h / group) * d;
      if (h % group == 0 && t + kPrefetchRows < L) prefetch_rows(kbase, kv_row, r, kPrefetchRows, kh, d);
      float o[4];
#if DOTS1_CPU_AVX2
      const float *k0 = kbase + r[0] * kv_row + kh, *k1 = kbase + r[1] * kv_row + kh, *k2 = kbase + r[2] * kv_row + kh,
                  *k3 = kbase + r[3] * kv_row + kh;
      switch (nv) {
        case 8: dot4<8>(qh, k0, k1, k2, k3, o); break;
        case 7: dot4<7>(qh, k0, k1, k2, k3, o); break;
        case 6: dot4<6>(qh, k0, k1, k2, k3, o); break;
        case 5: dot4<5>(qh, k0, k1, k2, k3, o); break;
        case 4: dot4<4>(qh, k0, k1, k2, k3, o); break;
        case 3: dot4<3>(qh, k0, k1, k2, k3, o); break;
        case 2: dot4<2>(qh, k0, k1, k2, k3, o); break;
        case 1: dot4<1>(qh, k0, k1, k2, k3, o); break;
        default:
          for (int u = 0; u < 4; ++u) o[u] = dot(qh, kbase + r[u] * kv_row + kh, d);
      }
#else
      for (int u = 0; u < 4; ++u) o[u] = dot(qh, kbase + r[u] * kv_row + kh, d);
#endif
      float* sh = s + h * n;
      for (int u = 0; u < 4; ++u) sh[r[u]] = bias[r[u]] == 0.0f ? o[u] * a.scaling : masked;
    }
  }
  for (int64_t j = 4 * L; j < n; ++j)
    for (int64_t h = 0; h < a.heads; ++h)
      s[h * n + j] = bias[j] == 0.0f ? dot(q + h * d, kbase + j * kv_row + (h / group) * d, d) * a.scaling : masked;
  // 2. per head: max, exp, sum
  for (int64_t h = 0; h < a.heads; ++h) {
    float* sh = s + h * n;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) mx = sh[j] > mx ? sh[j] : mx;
    float total = 0;
    int64_t j = 0;
#if DOTS1_CPU_AVX2
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
      const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sh + j), vmx));
      _mm256_storeu_ps(sh + j, e);
      acc = _mm256_add_ps(acc, e);
    }
    total = hsum(acc);
#endif
    for (; j < n; ++j) {
      sh[j] = exp1(sh[j] - mx);
      total += sh[j];
    }
    part[h * (d + 2)] = mx;
    part[h * (d + 2) + 1] = total;
  }
  // 3. o += p . V
  for (int64_t t = 0; t < L; ++t) {
    const int64_t r[4] = {t, L + t, 2 * L + t, 3 * L + t};
    for (int64_t h = 0; h < a.heads; ++h) {
      const float* sh = s + h * n;
      const float p[4] = {sh[r[0]], sh[r[1]], sh[r[2]], sh[r[3]]};
      if (p[0] == 0.0f && p[1] == 0.0f && p[2] == 0.0f && p[3] == 0.0f) continue;
      const int64_t vh = (h / group) * d;
      if (h % group == 0 && t + kPrefetchRows < L) prefetch_rows(vbase, kv_row, r, kPrefetchRows, vh, d);
      float* o = part + h * (d + 2) + 2;
#if DOTS1_CPU_AVX2
      const float *v0 = vbase + r[0] * kv_row + vh, *v1 = vbase + r[1] * kv_row + vh, *v2 = vbase + r[2] * kv_row + vh,
                  *v3 = vbase + r[3] * kv_row + vh;
      switch (nv) {
        case 8: pv4<8>(p, v0, v1, v2, v3, o); continue;
        case 7: pv4<7>(p, v0, v1, v2, v3, o); continue;
        case 6: pv4<6>(p, v0, v1, v2, v3, o); continue;
        case 5: pv4<5>(p, v0, v1, v2, v3, o); continue;
        case 4: pv4<4>(p, v0, v1, v2, v3, o); continue;
        case 3: pv4<3>(p, v0, v1, v2, v3, o); continue;
        case 2: pv4<2>(p, v0, v1, v2, v3, o); continue;
        case 1: pv4<1>(p, v0, v1, v2, v3, o); continue;
        default: break;
      }
#endif
      for (int u = 0; u < 4; ++u) {
        const float* v = vbase + r[u] * kv_row + vh;
        for (int64_t c = 0; c < d; ++c) o[c] += p[u] * v[c];
      }
    }
  }
  for (int64_t j = 4 * L; j < n; ++j)
    for (int64_t h = 0; h < a.heads; ++h) {
      const float p = s[h * n + j];
      if (p == 0.0f) continue;
      add_scaled_fma(part + h * (d + 2) + 2, vbase + j * kv_row + (h / group) * d, p, d);
    }
}

/// Merges the `parts` partial results of query row (b, i) (see attention_part) into the output.
template <class Window>
inline void combine_parts(const AttentionArgs<Window>& a, int64_t b, int64_t i, const float* parts, int64_t n_parts) {
  const int64_t d = a.head_dim, stride = a.heads * (d + 2);
  for (int64_t h = 0; h < a.heads; ++h) {
    float m = -INFINITY;
    for (int64_t p = 0; p < n_parts; ++p) m = std::max(m, parts[p * stride + h * (d + 2)]);
    float* o = a.out + ((b * a.q_len + i) * a.heads + h) * d;
    std::fill(o, o + d, 0.0f);
    float total = 0;
    for (int64_t p = 0; p < n_parts; ++p) {
      const float* ph = parts + p * stride + h * (d + 2);
      const float f = exp1(ph[0] - m);
      if (f == 0.0f) continue;
      total += ph[1] * f;
      add_scaled(o, ph + 2, f, d);
    }
    const float inv = 1.0f / total;
    for (int64_t c = 0; c < d; ++c) o[c] *= inv;
  }
}

/// The whole attention call: query rows in parallel when there are enough of them (prefill); for decode
/// (few query rows) each row's cache split into parts over the threads (attention_part), or, when the
/// attention weights are requested, the heads of each row split over the threads.
template <class Window>
inline void attention(const AttentionArgs<Window>& a) {
  const int64_t rows = a.batch * a.q_len, kv = a.kv_len;
  const int threads = threads_here();
  if (rows < 2 * threads && !a.weights) {
    // parts of >= 32 cache rows: one for short contexts (serial), up to 4 per thread for long ones
    const int64_t n_parts = std::clamp<int64_t>(kv / 32, 1, 4 * threads);
    const int64_t stride = a.heads * (a.head_dim + 2);
    float* parts = scratch(kScratchParts, static_cast<size_t>(rows * n_parts * stride));
    parallel_for(rows * n_parts, threads, [&](int64_t task) {
      const int64_t row = task / n_parts, p = task % n_parts;
      int64_t j0, j1;
      split_range(kv, static_cast<int>(n_parts), static_cast<int>(p), 8, j0, j1);
      float* s = scratch(kScratchAttn, static_cast<size_t>((a.heads + 1) * (j1 - j0 + 1)));
      if (j0 >= j1) {  // an empty part: contributes nothing
        for (int64_t h = 0; h < a.heads; ++h) {
          parts[task * stride + h * (a.head_dim + 2)] = -INFINITY;
          parts[task * stride + h * (a.head_dim + 2) + 1] = 0.0f;
        }
        return;
      }
      attention_part(a, row / a.q_len, row % a.q_len, j0, j1, parts + task * stride, s, s + a.heads * (j1 - j0));
    });
    for (int64_t row = 0; row < rows; ++row) combine_parts(a, row / a.q_len, row % a.q_len, parts + row * n_parts * stride, n_parts);
    return;
  }
  if (rows >= 2 * threads && a.head_dim % 8 == 0) {
    // prefill: blocks of query rows (the last, longest causal rows are claimed first)
    constexpr int64_t block = 16;
    const int64_t blocks_per_b = (a.q_len + block - 1) / block;
    const bool worth = rows * kv * a.heads * a.head_dim >= 65536;
    parallel_for(a.batch * blocks_per_b, worth ? threads : 1, [&](int64_t task) {
      const int64_t b = task / blocks_per_b, i0 = (task % blocks_per_b) * block, i1 = std::min(a.q_len, i0 + block);
      float* work = scratch(kScratchAttn, static_cast<size_t>((i1 - i0) * kv + 2 * kv * a.head_dim + 2 * kv));
      attention_block(a, b, i0, i1, work);
    });
    return;
  }
  const int64_t groups = rows >= 2 * threads ? 1 : std::min<int64_t>(a.heads, threads);
  const int64_t tasks = rows * groups;
  const bool worth = rows * kv * a.heads * a.head_dim >= 32768;  // else one thread is faster than waking another
  parallel_for(tasks, worth ? threads : 1, [&](int64_t task) {
    const int64_t row = task / groups, g = task % groups;
    int64_t h0, h1;
    split_range(a.heads, static_cast<int>(groups), static_cast<int>(g), 1, h0, h1);
    if (h0 >= h1) return;
    float* s = scratch(kScratchAttn, static_cast<size_t>((h1 - h0 + 1) * kv));
    attention_row(a, row / a.q_len, row % a.q_len, h0, h1, s, s + (h1 - h0) * kv);
  });
}

}  // namespace dots1::cpu
