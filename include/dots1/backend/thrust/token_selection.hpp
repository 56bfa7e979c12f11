// dots1/backend/thrust/token_selection.hpp — generate()'s token selection on the Thrust device: HF's logits
// processors (the host versions are in generation/logits_process.hpp), greedy argmax and the inverse-CDF
// draw of generation/sampling.hpp, as Thrust algorithms over portable functors, run on the logits where the
// forward left them. Per step only the chosen ids (8 bytes a row) come back to the host instead of the
// [rows, vocab] logits (600 KB a row for dots.llm1's 152064 tokens).
//
// The numbers are the host pipeline's: float32 scores (HF's logits.float()), softmax probabilities computed
// in double and rounded to float32, cumulative sums in double, the same comparisons against the same
// float32 thresholds. Parallel sums associate differently from the host's left-to-right loops, so a double
// may differ in its last bit or two; a kept/filtered decision or a drawn token can then differ only when a
// value lies within ~1e-16 (relative) of its threshold. Greedy selection is exact (a comparison reduce).
// The random numbers are drawn on the host (SamplingRng, one per row and step, in row order, exactly as the
// host path draws them), so a seed gives the same stream on every backend.
//
// Rows are processed one after another; each processor is one or a few Thrust algorithms over the row.
// Filtering to the tokens still in play before sorting (top-p after top-k sorts ~top_k values, not the
// vocabulary) keeps the sort small in the usual sampling set-ups.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <thrust/binary_search.h>
#include <thrust/copy.h>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/iterator/zip_iterator.h>
#include <thrust/reduce.h>
#include <thrust/scan.h>
#include <thrust/sort.h>
#include <thrust/transform_reduce.h>
#include <thrust/transform_scan.h>
#include <thrust/tuple.h>

#include "dots1/error.hpp"
#include "dots1/generation/generation_config.hpp"
#include "dots1/generation/sampling.hpp"
#include "dots1/kernels/portable.hpp"

namespace dots1 {

namespace thrust_selection {

// NaN tests written as comparisons: the same code on host and device compilers.
DOTS1_HD inline bool is_nan(float x) { return x != x; }
DOTS1_HD inline float minus_inf() { return -INFINITY; }  // a filtered score (logits::kFiltered)
DOTS1_HD inline bool is_minus_inf(float x) { return x == minus_inf(); }

template <class T>
struct ToFloat {
  const T* in;
  float* out;
  DOTS1_HD void operator()(int64_t i) const { out[i] = static_cast<float>(in[i]); }
};

/// RepetitionPenaltyLogitsProcessor on a list of distinct token ids.
struct Penalize {
  float* scores;
  const int64_t* ids;
  float penalty;
  DOTS1_HD void operator()(int64_t i) const {
    float& s = scores[ids[i]];
    s = s < 0 ? s * penalty : s / penalty;
  }
};

/// scores[ids[i]] = -inf (MinLengthLogitsProcessor's eos mask).
struct FilterIds {
  float* scores;
  const int64_t* ids;
  DOTS1_HD void operator()(int64_t i) const { scores[ids[i]] = minus_inf(); }
};

/// TemperatureLogitsWarper: scores / t.
struct Divide {
  float* scores;
  float t;
  DOTS1_HD void operator()(int64_t i) const { scores[i] = scores[i] / t; }
};

/// scores[i] < *threshold -> -inf (TopKLogitsWarper with the k-th largest score read from device memory).
struct FilterBelow {
  float* scores;
  const float* threshold;
  DOTS1_HD void operator()(int64_t i) const {
    if (scores[i] < *threshold) scores[i] = minus_inf();
  }
};

/// Whether a score is still in play (not filtered to -inf).
struct IsKept {
  DOTS1_HD bool operator()(float s) const { return !is_minus_inf(s); }
};

/// dst[i] = src[idx[i]]
struct GatherScores {
  const float* src;
  const int64_t* idx;
  float* dst;
  DOTS1_HD void operator()(int64_t i) const { dst[i] = src[idx[i]]; }
};

/// e[i] = exp(s[i] - max) in double, 0 for -inf (the host softmax's numerator).
struct SoftmaxNumerator {
  const float* s;
  const float* max;  // device scalar
  double* e;
  DOTS1_HD void operator()(int64_t i) const {
    e[i] = is_minus_inf(s[i]) ? 0.0 : std::exp(static_cast<double>(s[i]) - static_cast<double>(*max));
  }
};

/// p[i] = float(e[i] / sum) (zero when the sum is not positive, as the host softmax).
struct SoftmaxProbability {
  const double* e;
  const double* sum;  // device scalar
  float* p;
  DOTS1_HD void operator()(int64_t i) const { p[i] = *sum > 0 ? static_cast<float>(e[i] / *sum) : 0.0f; }
};

/// float -> double, for the cumulative sum of float32 probabilities in double.
struct Widen {
  DOTS1_HD double operator()(float p) const { return static_cast<double>(p); }
};

/// TopPLogitsWarper's removal over the ascending-sorted kept tokens: remove position i when it is not one
/// of the protected largest and float(cum[i]) <= 1 - top_p.
struct RemoveLowCumulative {
  const double* cum;
  const int64_t* idx;
  float* scores;
  float threshold;
  int64_t protected_from;
  DOTS1_HD void operator()(int64_t i) const {
    if (i < protected_from && static_cast<float>(cum[i]) <= threshold) scores[idx[i]] = minus_inf();
  }
};

/// MinPLogitsWarper's removal: probability below the cut, except the most probable token.
struct RemoveImprobable {
  const float* p;
  float* scores;
  float cut;
  int64_t keep;
  DOTS1_HD void operator()(int64_t i) const {
    if (i != keep && p[i] < cut) scores[i] = minus_inf();
  }
};

/// The sampler's weights: exp(s - max) in double, 0 for NaN.
struct SampleWeight {
  const float* s;
  double max;
  DOTS1_HD double operator()(int64_t i) const { return is_nan(s[i]) ? 0.0 : std::exp(static_cast<double>(s[i]) - max); }
};

/// The index when the weight is positive, -1 otherwise (the last drawable token by a max-reduce).
struct IndexIfPositive {
  const double* w;
  DOTS1_HD int64_t operator()(int64_t i) const { return w[i] > 0 ? i : -1; }
};

/// NaN -> -inf, for a max-reduce that ignores NaN.
struct NanToMinusInf {
  DOTS1_HD float operator()(float s) const { return is_nan(s) ? minus_inf() : s; }
};

struct Max {
  DOTS1_HD float operator()(float a, float b) const { return a < b ? b : a; }
};
struct MaxIndex {
  DOTS1_HD int64_t operator()(int64_t a, int64_t b) const { return a < b ? b : a; }
};

/// torch.argmax as a reduce over (index, value): NaN never wins, the larger value wins, the lower index
/// among equals. Associative and commutative, so any reduction order gives the host's answer.
using IndexedScore = thrust::tuple<int64_t, float>;
struct FirstMaximum {
  DOTS1_HD IndexedScore operator()(const IndexedScore& a, const IndexedScore& b) const {
    const int64_t ai = thrust::get<0>(a), bi = thrust::get<0>(b);
    const float av = thrust::get<1>(a), bv = thrust::get<1>(b);
    const bool a_ok = ai >= 0 && !is_nan(av), b_ok = bi >= 0 && !is_nan(bv);
    if (!a_ok) return b_ok ? b : IndexedScore(-1, 0.0f);
    if (!b_ok) return a;
    if (av != bv) return av > bv ? a : b;
    return ai < bi ? a : b;
  }
};

}  // namespace thrust_selection

/// Token selection for one generate() call on the Thrust device system: construct it with the call's
/// resolved options and vocabulary, then per step hand it the forward's logits [rows, vocab] (device memory,
/// the backend's scalar type) with the rows' token histories; it returns each row's next token.
class ThrustTokenSelector {
 public:
  ThrustTokenSelector(const ResolvedGenerationConfig& config, int64_t vocab) : c_(config), V_(vocab) {
    if (V_ <= 0) throw InputError("token selection: vocabulary size must be positive, got " + std::to_string(V_));
  }

  /// The next token of each of `rows` rows. `sequences[r]` is row r so far (padded prompt + generated; read
  /// for the repetition penalty and min_length), `ignore[r]` its number of leading pads, `rng` the call's
  /// generator (one uniform a row when sampling, drawn in row order as the host path does).
  template <class T>
  std::vector<int64_t> select(const thrust::device_vector<T>& logits, int64_t rows, std::span<const std::vector<int64_t>> sequences,
                              std::span<const int64_t> ignore, SamplingRng& rng) {
    if (static_cast<int64_t>(logits.size()) != rows * V_)
      throw InputError("token selection: logits hold " + std::to_string(logits.size()) + " values, expected rows x vocab = " +
                       std::to_string(rows) + " x " + std::to_string(V_));
    if (static_cast<int64_t>(sequences.size()) < rows || static_cast<int64_t>(ignore.size()) < rows)
      throw InputError("token selection: " + std::to_string(rows) + " rows need as many histories and pad counts, got " +
                       std::to_string(sequences.size()) + " and " + std::to_string(ignore.size()));
    load(logits);
    std::vector<int64_t> out(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      const auto& ids = sequences[static_cast<size_t>(r)];
      process(r, std::span<const int64_t>(ids).subspan(static_cast<size_t>(ignore[static_cast<size_t>(r)])),
              static_cast<int64_t>(ids.size()));
      out[static_cast<size_t>(r)] = c_.do_sample ? sample(r, rng.uniform()) : argmax(r);
    }
    return out;
  }

  // ---- the pieces, on row r of the loaded scores (public for tests and for researchers' own pipelines)

  /// Copies logits [rows, vocab] into the float32 score rows.
  template <class T>
  void load(const thrust::device_vector<T>& logits) {
    scores_.resize(logits.size());
    for_n(static_cast<int64_t>(logits.size()), thrust_selection::ToFloat<T>{raw(logits), raw(scores_)});
  }
  /// HF's pipeline in HF's order (LogitsPipeline): `penalized` = the row's ids after its leading pads,
  /// `length` = the row's whole length (pads included).
  void process(int64_t r, std::span<const int64_t> penalized, int64_t length) {
    if (c_.repetition_penalty != 1.0) repetition_penalty(r, penalized, c_.repetition_penalty);
    if (!c_.eos.empty() && c_.min_length > 0 && length < c_.min_length) filter_ids(r, c_.eos);
    if (!c_.do_sample) return;
    if (c_.temperature != 1.0) temperature(r, c_.temperature);
    if (c_.top_k != 0) top_k(r, c_.top_k);
    if (c_.top_p < 1.0) top_p(r, c_.top_p);
    if (c_.min_p) min_p(r, *c_.min_p);
  }

  void repetition_penalty(int64_t r, std::span<const int64_t> ids, double penalty) {
    // the distinct in-vocabulary ids, found on the host where the history is
    seen_.assign(static_cast<size_t>(V_), 0);
    host_ids_.clear();
    for (int64_t t : ids)
      if (t >= 0 && t < V_ && !seen_[static_cast<size_t>(t)]) {
        seen_[static_cast<size_t>(t)] = 1;
        host_ids_.push_back(t);
      }
    if (host_ids_.empty()) return;
    ids_.assign(host_ids_.begin(), host_ids_.end());
    for_n(static_cast<int64_t>(host_ids_.size()), thrust_selection::Penalize{row(r), raw(ids_), static_cast<float>(penalty)});
  }
  /// Sets the scores of `ids` (those inside the vocabulary) to -inf.
  void filter_ids(int64_t r, std::span<const int64_t> ids) {
    host_ids_.clear();
    for (int64_t t : ids)
      if (t >= 0 && t < V_) host_ids_.push_back(t);
    if (host_ids_.empty()) return;
    ids_.assign(host_ids_.begin(), host_ids_.end());
    for_n(static_cast<int64_t>(host_ids_.size()), thrust_selection::FilterIds{row(r), raw(ids_)});
  }
  void temperature(int64_t r, double t) { for_n(V_, thrust_selection::Divide{row(r), static_cast<float>(t)}); }
  void top_k(int64_t r, int64_t k, int64_t min_keep = 1) {
    k = std::min<int64_t>(std::max(k, min_keep), V_);
    if (k <= 0) return;
    sorted_.resize(static_cast<size_t>(V_));
    thrust::copy(thrust::device, row(r), row(r) + V_, sorted_.begin());
    thrust::sort(thrust::device, sorted_.begin(), sorted_.end(), thrust::greater<float>());
    for_n(V_, thrust_selection::FilterBelow{row(r), raw(sorted_) + (k - 1)});
  }
  void top_p(int64_t r, double p, int64_t min_keep = 1) {
    float* s = row(r);
    index_.resize(static_cast<size_t>(V_));
    sorted_.resize(static_cast<size_t>(V_));
    // the kept tokens in index order, then sorted ascending by score; stable, so equal scores keep index
    // order as torch.sort on the CPU does
    const auto end = thrust::copy_if(thrust::device, thrust::counting_iterator<int64_t>(0), thrust::counting_iterator<int64_t>(V_), s,
                                     index_.begin(), thrust_selection::IsKept{});
    const int64_t n = end - index_.begin();
    if (n == 0) return;
    for_n(n, thrust_selection::GatherScores{s, raw(index_), raw(sorted_)});
    thrust::stable_sort_by_key(thrust::device, sorted_.begin(), sorted_.begin() + n, index_.begin());
    softmax(raw(sorted_), n, raw(sorted_) + (n - 1));  // ascending: the last is the largest
    thrust::transform_inclusive_scan(thrust::device, probs_.begin(), probs_.begin() + n, cum_.begin(), thrust_selection::Widen{},
                                     thrust::plus<double>());
    const int64_t protected_from = n - std::min<int64_t>(n, std::max<int64_t>(min_keep, 0));
    for_n(n, thrust_selection::RemoveLowCumulative{raw(cum_), raw(index_), s, static_cast<float>(1.0 - p), protected_from});
  }
  void min_p(int64_t r, double p, int64_t /*min_keep*/ = 1) {
    float* s = row(r);
    max_.resize(1);
    max_[0] = thrust::transform_reduce(thrust::device, s, s + V_, thrust_selection::NanToMinusInf{}, -std::numeric_limits<float>::infinity(),
                                       thrust_selection::Max{});
    softmax(s, V_, raw(max_));
    const auto best = first_maximum(raw(probs_), V_);  // torch.topk(probs, 1): the most probable, lowest index
    const float top = thrust::get<1>(best);
    for_n(V_, thrust_selection::RemoveImprobable{raw(probs_), s, static_cast<float>(p) * top, thrust::get<0>(best)});
  }

  /// torch.argmax: the first largest score (NaN never wins).
  int64_t argmax(int64_t r) {
    const int64_t best = thrust::get<0>(first_maximum(row(r), V_));
    if (best < 0) throw GenerationError("greedy selection: every next-token score is NaN");
    return best;
  }
  /// One draw from softmax(scores) at uniform `u` in [0, 1): the first token whose cumulative weight
  /// exceeds u * total (-inf and NaN scores weigh 0 and are never drawn).
  int64_t sample(int64_t r, double u) {
    const float* s = row(r);
    const float mx = thrust::transform_reduce(thrust::device, s, s + V_, thrust_selection::NanToMinusInf{},
                                              -std::numeric_limits<float>::infinity(), thrust_selection::Max{});
    if (!std::isfinite(mx)) throw GenerationError("sampling: no token has a finite score (all filtered or NaN)");
    weights_.resize(static_cast<size_t>(V_));
    cum_.resize(static_cast<size_t>(V_));
    const auto w = thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0), thrust_selection::SampleWeight{s, static_cast<double>(mx)});
    thrust::copy(thrust::device, w, w + V_, weights_.begin());
    thrust::inclusive_scan(thrust::device, weights_.begin(), weights_.end(), cum_.begin());
    const double total = cum_[static_cast<size_t>(V_ - 1)];
    const double target = u * total;
    const int64_t at = thrust::upper_bound(thrust::device, cum_.begin(), cum_.end(), target) - cum_.begin();
    if (at < V_) return at;
    // rounding left `target` at the very end of the range: the last token with a positive weight
    return thrust::transform_reduce(thrust::device, thrust::counting_iterator<int64_t>(0), thrust::counting_iterator<int64_t>(V_),
                                    thrust_selection::IndexIfPositive{raw(weights_)}, int64_t{-1}, thrust_selection::MaxIndex{});
  }

  /// Row r's processed scores, copied to the host (tests).
  std::vector<float> scores(int64_t r) const {
    std::vector<float> out(static_cast<size_t>(V_));
    thrust::copy(scores_.begin() + r * V_, scores_.begin() + (r + 1) * V_, out.begin());
    return out;
  }

 private:
  template <class F>
  static void for_n(int64_t n, const F& f) {
    if (n > 0) thrust::for_each(thrust::device, thrust::counting_iterator<int64_t>(0), thrust::counting_iterator<int64_t>(n), f);
  }
  template <class E>
  static E* raw(thrust::device_vector<E>& v) {
    return thrust::raw_pointer_cast(v.data());
  }
  template <class E>
  static const E* raw(const thrust::device_vector<E>& v) {
    return thrust::raw_pointer_cast(v.data());
  }
  float* row(int64_t r) { return raw(scores_) + r * V_; }

  /// probs_[0, n) = softmax(s[0, n)) as the host's logits::softmax, given the row's largest score at `max`
  /// (device memory).
  void softmax(const float* s, int64_t n, const float* max) {
    exps_.resize(static_cast<size_t>(n));
    probs_.resize(static_cast<size_t>(std::max<int64_t>(n, V_)));
    cum_.resize(static_cast<size_t>(std::max<int64_t>(n, V_)));
    sum_.resize(1);
    for_n(n, thrust_selection::SoftmaxNumerator{s, max, raw(exps_)});
    sum_[0] = thrust::reduce(thrust::device, exps_.begin(), exps_.begin() + n, 0.0);
    for_n(n, thrust_selection::SoftmaxProbability{raw(exps_), raw(sum_), raw(probs_)});
  }
  static thrust_selection::IndexedScore first_maximum(const float* v, int64_t n) {
    const auto first = thrust::make_zip_iterator(thrust::make_tuple(thrust::counting_iterator<int64_t>(0), v));
    return thrust::reduce(thrust::device, first, first + n, thrust_selection::IndexedScore(-1, 0.0f), thrust_selection::FirstMaximum{});
  }

  ResolvedGenerationConfig c_;
  int64_t V_;
  thrust::device_vector<float> scores_, sorted_, probs_, max_;
  thrust::device_vector<double> exps_, weights_, cum_, sum_;
  thrust::device_vector<int64_t> index_, ids_;
  std::vector<char> seen_;
  std::vector<int64_t> host_ids_;
};

}  // namespace dots1
