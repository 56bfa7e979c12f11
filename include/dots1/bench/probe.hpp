// dots1/bench/probe.hpp — what this machine can do, measured in the calling process (so that a benchmark's
// ratios to the machine's limits come from one run, under one load): read bandwidth from DRAM, the FMA
// peak of the cores, and the fp32 GEMM rate of the CPU backend's own kernel.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include <omp.h>

#include "dots1/backend/eigen/cpu_kernels.hpp"
#include "dots1/bench/stats.hpp"

namespace dots1::bench {

inline double seconds_now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct ProbeResult {
  Summary read_gbs;      // GB/s (1e9 bytes) reading a buffer far larger than the caches, all threads, 4 streams each
  Summary fma_gflops;    // GFLOP/s of independent register FMAs on all threads (the cores' peak)
  Summary sgemm_gflops;  // GFLOP/s of cpu::matmul on f32 [gemm_n x gemm_n] x [gemm_n x gemm_n]
  int threads = 0;
  int64_t buffer_bytes = 0, gemm_n = 0;
};

/// Read bandwidth: the buffer (far larger than the caches, first touched by all threads) is cut into 256 KiB
/// blocks dealt round-robin to the threads; each thread reads a block as 4 concurrent sequential streams
/// (one core keeps several streams in flight: 4 streams read ~25% faster than 1 here). `reps` passes, one
/// GB/s figure each: the best read rate this machine's cores reach, the limit decode is measured against.
inline Summary probe_read_bandwidth(int threads, int64_t bytes, int reps) {
  constexpr size_t block_words = (256 << 10) / 8, streams = 4, stream_words = block_words / streams;
  const auto blocks = static_cast<size_t>(bytes) / (block_words * 8);
  const size_t words = blocks * block_words;
  struct Free {
    void operator()(uint64_t* q) const { ::operator delete[](q, std::align_val_t{64}); }
  };
  std::unique_ptr<uint64_t, Free> buf(static_cast<uint64_t*>(::operator new[](words * 8, std::align_val_t{64})));
  uint64_t* p = buf.get();
#pragma omp parallel for schedule(static) num_threads(threads)
  for (size_t i = 0; i < words; ++i) p[i] = i * 0x9E3779B97F4A7C15ull;
  std::vector<double> rates;
  volatile uint64_t sink = 0;
  for (int r = 0; r < reps + 1; ++r) {
    uint64_t total = 0;
    const double t0 = seconds_now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const auto t = static_cast<size_t>(omp_get_thread_num()), nt = static_cast<size_t>(omp_get_num_threads());
#if DOTS1_CPU_AVX2
      __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
      for (size_t b = t; b < blocks; b += nt) {
        const uint64_t* q = p + b * block_words;
        for (size_t i = 0; i < stream_words; i += 8) {
          a0 = _mm256_add_epi64(a0, _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(q + i)),
                                                     _mm256_load_si256(reinterpret_cast<const __m256i*>(q + i + 4))));
          a1 = _mm256_add_epi64(a1, _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(q + stream_words + i)),
                                                     _mm256_load_si256(reinterpret_cast<const __m256i*>(q + stream_words + i + 4))));
          a2 = _mm256_add_epi64(a2, _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(q + 2 * stream_words + i)),
                                                     _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 2 * stream_words + i + 4))));
          a3 = _mm256_add_epi64(a3, _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(q + 3 * stream_words + i)),
                                                     _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 3 * stream_words + i + 4))));
        }
      }
      alignas(32) uint64_t lanes[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
      total += lanes[0] + lanes[1] + lanes[2] + lanes[3];
#else
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (size_t b = t; b < blocks; b += nt) {
        const uint64_t* q = p + b * block_words;
        for (size_t i = 0; i < stream_words; ++i) {
          s0 += q[i];
          s1 += q[stream_words + i];
          s2 += q[2 * stream_words + i];
          s3 += q[3 * stream_words + i];
        }
      }
      total += s0 + s1 + s2 + s3;
#endif
    }
    const double t = seconds_now() - t0;
    sink = sink + total;
    if (r > 0) rates.push_back(static_cast<double>(words * 8) / t / 1e9);  // the first pass warms the TLBs
  }
  (void)streams;
  return summarize(rates);
}

/// The cores' FMA peak: 12 independent 8-wide FMA chains per thread, no memory traffic.
inline Summary probe_fma_peak(int threads, int reps) {
  std::vector<double> rates;
  constexpr int64_t iters = 20'000'000;
  for (int r = 0; r < reps; ++r) {
    float sink = 0;
    const double t0 = seconds_now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
#if DOTS1_CPU_AVX2
      __m256 acc[12];
      for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(0.001f * static_cast<float>(j + omp_get_thread_num()));
      const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
      for (int64_t i = 0; i < iters; ++i)
        for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], m, c);
      __m256 s = acc[0];
      for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, acc[j]);
      sink += cpu::hsum(s);
#else
      float acc[12];
      for (int j = 0; j < 12; ++j) acc[j] = 0.001f * static_cast<float>(j);
      for (int64_t i = 0; i < iters; ++i)
        for (int j = 0; j < 12; ++j) acc[j] = acc[j] * 0.999999f + 1e-7f;
      for (float a : acc) sink += a;
#endif
    }
    const double t = seconds_now() - t0;
    const double flops = static_cast<double>(threads) * static_cast<double>(iters) * 12.0 * (cpu::simd ? 16.0 : 2.0);
    rates.push_back(flops / t / 1e9 + 0.0 * static_cast<double>(sink));
  }
  return summarize(rates);
}

/// fp32 GEMM rate of the backend's kernel (cpu::matmul) on square n x n x n, with `threads` threads.
inline Summary probe_sgemm(int threads, int64_t n, int reps) {
  std::vector<float> a(static_cast<size_t>(n * n)), w(static_cast<size_t>(n * n)), c(static_cast<size_t>(n * n));
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>((i * 7) % 13) * 0.01f;
    w[i] = static_cast<float>((i * 5) % 11) * 0.01f;
  }
  const cpu::WeightRef ref{w.data(), cpu::WType::f32, n, n, n};
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  std::vector<double> rates;
  for (int r = 0; r < reps + 1; ++r) {
    const double t0 = seconds_now();
    cpu::matmul(a.data(), n, n, ref, c.data(), n);
    const double t = seconds_now() - t0;
    if (r > 0) rates.push_back(2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / t / 1e9);
  }
  omp_set_num_threads(saved);
  return summarize(rates);
}

inline ProbeResult probe_machine(int threads, int64_t buffer_bytes = int64_t(512) << 20, int64_t gemm_n = 1024, int reps = 5) {
  ProbeResult p;
  p.threads = threads;
  p.buffer_bytes = buffer_bytes;
  p.gemm_n = gemm_n;
  p.read_gbs = probe_read_bandwidth(threads, buffer_bytes, reps);
  p.fma_gflops = probe_fma_peak(threads, reps);
  p.sgemm_gflops = probe_sgemm(threads, gemm_n, reps);
  return p;
}

}  // namespace dots1::bench
