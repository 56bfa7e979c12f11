// dots1/generation/logits_process.hpp — HF's logits processors (transformers/generation/logits_process.py,
// 5.24) on one row of next-token scores, and the pipeline generate() applies in HF's order
// (GenerationMixin._get_logits_processor):
//
//   repetition_penalty -> min_length (min_new_tokens folded in)          always
//   temperature -> top_k -> top_p -> min_p                                only when sampling
//
// Scores are float32, as HF's (logits[:, -1].float()). Arithmetic follows torch's: a Python float argument
// is rounded to float32 before it meets the scores; softmax probabilities are float32; cumsum accumulates
// in double (torch's CPU accumulator for float). Filtered scores become -inf.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "dots1/generation/generation_config.hpp"

namespace dots1 {

namespace logits {

inline constexpr float kFiltered = -std::numeric_limits<float>::infinity();

/// softmax(scores) in float32 (computed in double, then rounded: within an ulp of torch's).
inline std::vector<float> softmax(std::span<const float> scores) {
  float mx = -std::numeric_limits<float>::infinity();
  for (float s : scores) mx = std::max(mx, s);
  std::vector<double> e(scores.size());
  double sum = 0;
  for (size_t i = 0; i < scores.size(); ++i) sum += e[i] = std::isinf(scores[i]) && scores[i] < 0 ? 0.0 : std::exp(double(scores[i]) - double(mx));
  std::vector<float> p(scores.size(), 0.0f);
  if (!(sum > 0)) return p;  // every score -inf (or NaN): nothing is probable
  for (size_t i = 0; i < scores.size(); ++i) p[i] = static_cast<float>(e[i] / sum);
  return p;
}

/// RepetitionPenaltyLogitsProcessor: each distinct token of `ids` (the row's prompt after its left padding,
/// plus what was generated) gets score * p when negative, score / p otherwise; once per token.
inline void repetition_penalty(std::span<float> scores, std::span<const int64_t> ids, double penalty) {
  const auto p = static_cast<float>(penalty);
  const auto V = static_cast<int64_t>(scores.size());
  std::vector<char> seen(scores.size(), 0);
  for (int64_t t : ids) {
    if (t < 0 || t >= V || seen[static_cast<size_t>(t)]) continue;  // HF drops ids beyond the head's vocabulary
    seen[static_cast<size_t>(t)] = 1;
    float& s = scores[static_cast<size_t>(t)];
    s = s < 0 ? s * p : s / p;
  }
}

/// MinLengthLogitsProcessor: eos scores -> -inf while the sequence (prompt included) is shorter than min_length.
inline void min_length(std::span<float> scores, int64_t current_length, int64_t min_length, std::span<const int64_t> eos) {
  if (current_length >= min_length) return;
  for (int64_t e : eos)
    if (e >= 0 && e < static_cast<int64_t>(scores.size())) scores[static_cast<size_t>(e)] = kFiltered;
}

/// MinNewTokensLengthLogitsProcessor: the same, counting only tokens after the prompt.
inline void min_new_tokens(std::span<float> scores, int64_t current_length, int64_t prompt_length, int64_t min_new,
                           std::span<const int64_t> eos) {
  min_length(scores, current_length - prompt_length, min_new, eos);
}

/// TemperatureLogitsWarper: scores / t.
inline void temperature(std::span<float> scores, double t) {
  const auto tf = static_cast<float>(t);
  for (float& s : scores) s = s / tf;
}

/// TopKLogitsWarper: keeps scores >= the k-th largest (ties with it are kept); k is raised to min_keep and
/// capped at the vocabulary.
inline void top_k(std::span<float> scores, int64_t k, int64_t min_keep = 1) {
  k = std::min<int64_t>(std::max(k, min_keep), static_cast<int64_t>(scores.size()));
  if (k <= 0) return;
  std::vector<float> sorted(scores.begin(), scores.end());
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
  const float kth = sorted[static_cast<size_t>(k - 1)];
  for (float& s : scores)
    if (s < kth) s = kFiltered;
}

/// TopPLogitsWarper: sorts ascending, removes tokens whose cumulative probability is <= 1 - top_p, always
/// keeps the min_keep largest.
inline void top_p(std::span<float> scores, double p, int64_t min_keep = 1) {
  // Tokens already at -inf (after top-k: most of the vocabulary) sort first with probability 0, so their
  // cumulative sum is 0 and they stay removed: leaving them out of the sort changes nothing.
  std::vector<size_t> order;
  order.reserve(scores.size());
  for (size_t i = 0; i < scores.size(); ++i)
    if (scores[i] != kFiltered) order.push_back(i);
  const size_t V = order.size();
  // torch.sort on CPU is stable: equal scores keep their index order
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  std::vector<float> sorted(V);
  for (size_t i = 0; i < V; ++i) sorted[i] = scores[order[i]];
  const std::vector<float> probs = softmax(sorted);
  const auto threshold = static_cast<float>(1.0 - p);
  const size_t protected_from = V - std::min<size_t>(V, static_cast<size_t>(std::max<int64_t>(min_keep, 0)));
  double cum = 0;
  std::vector<char> remove(V, 0);
  for (size_t i = 0; i < V; ++i) {
    cum += probs[i];
    remove[i] = i < protected_from && static_cast<float>(cum) <= threshold;
  }
  for (size_t i = 0; i < V; ++i)
    if (remove[i]) scores[order[i]] = kFiltered;
}

/// MinPLogitsWarper: removes tokens whose probability is below min_p times the top probability; the
/// min_keep most probable stay.
inline void min_p(std::span<float> scores, double p, int64_t min_keep = 1) {
  const std::vector<float> probs = softmax(scores);
  const float top = *std::max_element(probs.begin(), probs.end());
  const float cut = static_cast<float>(p) * top;
  std::vector<char> remove(scores.size(), 0);
  for (size_t i = 0; i < scores.size(); ++i) remove[i] = probs[i] < cut;
  // torch.topk(probs, min_keep): the most probable first, lower index first among equals
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  const size_t keep = std::min<size_t>(scores.size(), static_cast<size_t>(std::max<int64_t>(min_keep, 0)));
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                    [&](size_t a, size_t b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); });
  for (size_t i = 0; i < keep; ++i) remove[order[i]] = 0;
  for (size_t i = 0; i < scores.size(); ++i)
    if (remove[i]) scores[i] = kFiltered;
}

}  // namespace logits

/// The processors one generate() call applies, built from its resolved options in HF's order.
class LogitsPipeline {
 public:
  explicit LogitsPipeline(const ResolvedGenerationConfig& c) : c_(c) {}

  /// Processes one row's scores. `ids` is the row so far (padded prompt + generated), `ignore` its number
  /// of leading pads (HF skips them for the repetition penalty when an attention mask is in play).
  void operator()(std::span<float> scores, std::span<const int64_t> ids, int64_t ignore) const {
    if (c_.repetition_penalty != 1.0) logits::repetition_penalty(scores, ids.subspan(static_cast<size_t>(ignore)), c_.repetition_penalty);
    // HF turns min_new_tokens into min_length = prompt + min_new_tokens and also adds
    // MinNewTokensLengthLogitsProcessor, which then masks exactly the same steps: one pass is enough.
    if (!c_.eos.empty() && c_.min_length > 0) logits::min_length(scores, static_cast<int64_t>(ids.size()), c_.min_length, c_.eos);
    if (!c_.do_sample) return;
    if (c_.temperature != 1.0) logits::temperature(scores, c_.temperature);
    if (c_.top_k != 0) logits::top_k(scores, c_.top_k);
    if (c_.top_p < 1.0) logits::top_p(scores, c_.top_p);
    if (c_.min_p) logits::min_p(scores, *c_.min_p);
  }

 private:
  ResolvedGenerationConfig c_;
};

}  // namespace dots1
