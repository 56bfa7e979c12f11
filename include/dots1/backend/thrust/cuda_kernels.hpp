// dots1/backend/thrust/cuda_kernels.hpp — the Thrust backend's hand-written CUDA kernels (nvcc only;
// included by thrust_backend.hpp on the CUDA device system). The OMP/CPP device systems run the portable
// functors of thrust_backend.hpp that compute the same values (same products, float32 accumulation; only
// the summation order differs), which is how the logic around these kernels is tested without a GPU.
//
//   gemv        y[r, o] = sum_k x[r, k] * W[o, k] for up to kMaxGemvRows rows of float32 activations and
//               float32 or bf16 weights (widened exactly): one warp per output row, so each weight row is
//               read once for all the activation rows, with 16-byte loads when the rows are aligned. This
//               is the decode path (batch-1 decode reads every weight exactly once).
//   grouped     the routed experts of a decode step in one launch: one warp per (slot, output row), the
//               slot's expert weights found through a device table of expert pointers, the slot's input row
//               through slot / div (div = top_k: the token of a (token, k) slot; 1: the slot's own row).
#pragma once

#include <cstdint>
#include <string>

#include <cuda_runtime.h>

#include "dots1/error.hpp"

namespace dots1::thrust_detail::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(e));
}

/// The stream Thrust's default policy and the backend's cuBLAS handles use.
inline cudaStream_t stream() {
#ifdef CUDA_API_PER_THREAD_DEFAULT_STREAM
  return cudaStreamPerThread;
#else
  return cudaStreamLegacy;
#endif
}

inline constexpr int kMaxGemvRows = 8;
inline constexpr int kWarpsPerBlock = 8;

__device__ inline float widen(float v) { return v; }
__device__ inline float widen(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }

/// Eight consecutive weights as floats (16-byte aligned): one uint4 of bf16, or two float4.
__device__ inline void load8(const uint16_t* p, float* v) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = __uint_as_float(words[i] << 16);
    v[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}
__device__ inline void load8(const float* p, float* v) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// R activation rows against weight row `o`; `vec`: in % 8 == 0 and every row 16-byte aligned.
template <int R, class W>
__device__ inline void dot_rows(const float* __restrict__ x, int64_t ldx, const W* __restrict__ wr, int64_t in, bool vec, float* acc) {
  const int lane = static_cast<int>(threadIdx.x % 32);
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  if (vec) {
    for (int64_t k = static_cast<int64_t>(lane) * 8; k < in; k += 32 * 8) {
      float wv[8];
      load8(wr + k, wv);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float xv[8];
        load8(x + r * ldx + k, xv);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r] = fmaf(xv[i], wv[i], acc[r]);
      }
    }
  } else {
    for (int64_t k = lane; k < in; k += 32) {
      const float wv = widen(wr[k]);
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] = fmaf(x[r * ldx + k], wv, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = warp_sum(acc[r]);
}

template <int R, class W>
__global__ void gemv_kernel(const float* __restrict__ x, const W* __restrict__ w, int64_t out, int64_t in, float* __restrict__ y, bool vec) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (o >= out) return;  // the whole warp leaves together
  float acc[R];
  dot_rows<R>(x, in, w + o * in, in, vec, acc);
  if (threadIdx.x % 32 == 0)
#pragma unroll
    for (int r = 0; r < R; ++r) y[r * out + o] = acc[r];
}

template <class W>
__global__ void grouped_gemv_kernel(const float* __restrict__ x, int64_t div, const int32_t* __restrict__ expert_of, const W* const* __restrict__ table,
                                    int64_t slots, int64_t out, int64_t in, float* __restrict__ y, bool vec) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int64_t p = g / out, o = g % out;
  if (p >= slots) return;
  float acc[1];
  dot_rows<1>(x + (p / div) * in, in, table[expert_of[p]] + o * in, in, vec, acc);
  if (threadIdx.x % 32 == 0) y[p * out + o] = acc[0];
}

inline unsigned blocks_for(int64_t warps) { return static_cast<unsigned>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock); }

/// y[rows, out] = x[rows, in] . W^T for rows <= kMaxGemvRows.
template <class W>
void gemv(const float* x, int64_t rows, const W* w, int64_t out, int64_t in, float* y, bool vec) {
  if (rows <= 0 || out <= 0) return;
  const dim3 grid(blocks_for(out)), block(32 * kWarpsPerBlock);
  switch (rows) {
    case 1: gemv_kernel<1><<<grid, block, 0, stream()>>>(x, w, out, in, y, vec); break;
    case 2: gemv_kernel<2><<<grid, block, 0, stream()>>>(x, w, out, in, y, vec); break;
    case 3: gemv_kernel<3><<<grid, block, 0, stream()>>>(x, w, out, in, y, vec); break;
    case 4: gemv_kernel<4><<<grid, block, 0, stream()>>>(x, w, out, in, y, vec); break;
    case 5: gemv_kernel<5><<<grid, block, 0, stream()>>>(x, w, out, in, y, vec); break;
    case 6: gemv_kernel<6><<<grid, block, 0, stream()>>>(x, w, out, in, y, vec); break;
    case 7: gemv_kernel<7><<<grid, block, 0, stream()>>>(x, w, out, in, y, vec); break;
    default: gemv_kernel<8><<<grid, block, 0, stream()>>>(x, w, out, in, y, vec); break;
  }
  check(cudaGetLastError(), "gemv kernel launch");
}

/// y[p, :] = x[p / div] . W_{expert_of[p]}^T for every slot p (see grouped_gemv_kernel).
template <class W>
void grouped_gemv(const float* x, int64_t div, const int32_t* expert_of, const W* const* table, int64_t slots, int64_t out, int64_t in, float* y,
                  bool vec) {
  if (slots <= 0 || out <= 0) return;
  grouped_gemv_kernel<W><<<blocks_for(slots * out), 32 * kWarpsPerBlock, 0, stream()>>>(x, div, expert_of, table, slots, out, in, y, vec);
  check(cudaGetLastError(), "grouped gemv kernel launch");
}

}  // namespace dots1::thrust_detail::cuda
