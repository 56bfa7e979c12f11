// dots1/generation/sampling.hpp — token selection: greedy argmax (torch.argmax: the first maximum) and
// multinomial sampling from softmax(scores) with a seeded, portable generator.
//
// The sampler does not reproduce torch's random stream (torch.multinomial's draws are an implementation
// detail of its CPU/CUDA kernels); it is reproducible on its own terms: the same seed, options and model
// give the same tokens on every platform, because std::mt19937_64's output sequence is fixed by the C++
// standard and the conversion to [0, 1) below is our own (std::uniform_real_distribution is not portable).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>

#include "dots1/error.hpp"

namespace dots1 {

class SamplingRng {
 public:
  explicit SamplingRng(uint64_t seed) : engine_(seed) {}
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 engine_;
};

/// torch.argmax over one row: the index of the first largest score (NaN never wins).
inline int64_t argmax_token(std::span<const float> scores) {
  int64_t best = -1;
  for (size_t i = 0; i < scores.size(); ++i)
    if (!std::isnan(scores[i]) && (best < 0 || scores[i] > scores[static_cast<size_t>(best)])) best = static_cast<int64_t>(i);
  if (best < 0) throw GenerationError("greedy selection: every next-token score is NaN");
  return best;
}

/// One draw from softmax(scores); -inf scores (filtered tokens) have probability 0 and are never drawn.
inline int64_t sample_token(std::span<const float> scores, SamplingRng& rng) {
  double mx = -std::numeric_limits<double>::infinity();
  for (float s : scores)
    if (!std::isnan(s)) mx = std::max(mx, static_cast<double>(s));
  if (!std::isfinite(mx)) throw GenerationError("sampling: no token has a finite score (all filtered or NaN)");
  double total = 0;
  for (float s : scores)
    if (!std::isnan(s)) total += std::exp(static_cast<double>(s) - mx);
  // inverse CDF: the first token whose cumulative weight exceeds u * total
  const double target = rng.uniform() * total;
  double cum = 0;
  int64_t last_possible = -1;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (std::isnan(scores[i])) continue;
    const double w = std::exp(static_cast<double>(scores[i]) - mx);
    if (w <= 0) continue;
    cum += w;
    last_possible = static_cast<int64_t>(i);
    if (target < cum) return last_possible;
  }
  return last_possible;  // rounding left `target` at the very end of the range
}

}  // namespace dots1
