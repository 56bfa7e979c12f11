// dots1/model/layers.hpp — the modules blocks are built from: nn.Linear and its tensor-parallel forms,
// RMSNorm, the embedding and the (vocabulary-parallel) LM head. Each takes its tensors from a Weights at its
// own module path and declares them there; the split across processes is decided when the model is built
// (the Parallel of its loader), so the blocks' math calls q_proj(x, T, q) whatever the split.
//
//   Linear               y = x W^T (+ b), W [out, in] whole on every rank
//   ColumnParallelLinear this rank's output rows W[rows] (a view): y holds this rank's slice of the features
//   RowParallelLinear    this rank's input columns W[:, cols] (a copy): partial sums, all-reduced over the
//                        tensor-parallel group (the bias added once)
//   VocabParallelHead    the LM head's vocabulary rows: logits slices all-gathered (or the tied embedding)
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dots1/backend/backend_concept.hpp"
#include "dots1/base/tensor_spec.hpp"
#include "dots1/config.hpp"
#include "dots1/error.hpp"
#include "dots1/model/weights.hpp"
#include "dots1/parallel/plan.hpp"

namespace dots1 {

/// nn.Linear: weight [out, in], optional bias [out], whole.
template <Backend B>
struct Linear {
  typename B::Matrix weight;
  std::optional<typename B::Vector> bias;

  Linear() = default;
  Linear(Weights w, int64_t out, int64_t in, bool with_bias, TensorKind kind = TensorKind::matrix)
      : weight(B::matrix(w.take("weight", {out, in}, kind))) {
    if (with_bias) bias = B::vector(w.take("bias", {out}, TensorKind::vector));
  }
  /// y[rows, out] = x[rows, in] . W^T (+ b)
  void operator()(const typename B::Vector& x, int64_t rows, typename B::Vector& y) const { B::linear(weight, bias ? &*bias : nullptr, x, rows, y); }
};

/// Output features `rows` of an nn.Linear [out, in]: y = x . W[rows]^T (+ b[rows]), this rank's slice of y.
template <Backend B>
struct ColumnParallelLinear : Linear<B> {
  ColumnParallelLinear() = default;
  ColumnParallelLinear(Weights w, int64_t out, int64_t in, IndexRange rows, bool with_bias) {
    this->weight = B::matrix(w.take_rows("weight", {out, in}, rows, TensorKind::matrix));
    if (with_bias) this->bias = B::vector(w.take_rows("bias", {out}, rows, TensorKind::vector));
  }
};

/// Input features `cols` of an nn.Linear [out, in]: y = sum over the tensor-parallel group of
/// x[:, cols] . W[:, cols]^T, plus the bias (added by the group's first rank only).
template <Backend B>
struct RowParallelLinear {
  Linear<B> part;
  std::shared_ptr<const Parallel> parallel;

  RowParallelLinear() = default;
  RowParallelLinear(Weights w, int64_t out, int64_t in, IndexRange cols, bool with_bias) : parallel(w.parallel_ptr()) {
    part.weight = B::matrix(w.take_columns("weight", {out, in}, cols, TensorKind::matrix));
    if (with_bias && parallel->tp_rank() == 0) part.bias = B::vector(w.take("bias", {out}, TensorKind::vector));
    if (with_bias && parallel->tp_rank() != 0) w.elsewhere("bias", {out}, TensorKind::vector);
  }
  void operator()(const typename B::Vector& x, int64_t rows, typename B::Vector& y) const {
    part(x, rows, y);
    parallel->template tp_all_reduce<B>(y);
  }
};

/// Dots1RMSNorm over the last `dim` values of each row: y = w * x / sqrt(mean(x^2) + eps); weight [dim].
template <Backend B>
struct RmsNorm {
  typename B::Vector weight;
  double eps = 1e-6;
  int64_t dim = 0;

  RmsNorm() = default;
  RmsNorm(Weights w, int64_t dim, double eps) : weight(B::vector(w.take("weight", {dim}, TensorKind::vector))), eps(eps), dim(dim) {}
  void operator()(const typename B::Vector& x, typename B::Vector& y) const {
    B::rms_norm(x, weight, static_cast<int64_t>(B::size(x)) / dim, dim, eps, y);
  }
};

/// nn.Embedding [V, H], whole on every rank.
template <Backend B>
struct Embedding {
  typename B::Matrix table;

  Embedding() = default;
  Embedding(Weights w, int64_t vocab, int64_t hidden) : table(B::matrix(w.take("weight", {vocab, hidden}, TensorKind::embedding))) {}
  /// out[t] = table[ids[t]]
  void operator()(const typename B::Int64Vector& ids, typename B::Vector& out) const { B::embedding(table, ids, out); }
};

/// The LM head [V, H]: this rank's vocabulary rows (tensor parallel) or the tied embedding table (then
/// whole on every rank, as the embedding is, and a stored lm_head.weight is ignored as HF ignores it).
template <Backend B>
class VocabParallelHead {
 public:
  VocabParallelHead() = default;
  VocabParallelHead(Weights w, const Embedding<B>& embed, const Dots1Config& c) : parallel_(w.parallel_ptr()), vocab_(c.vocab_size) {
    if (c.tie_word_embeddings) {
      w.at("lm_head").ignore_if_present("weight", {c.vocab_size, c.hidden_size});
      weight_ = embed.table;
      rows_ = {0, c.vocab_size};
    } else {
      rows_ = parallel_->tp_rows(c.vocab_size);
      weight_ = B::matrix(w.at("lm_head").take_rows("weight", {c.vocab_size, c.hidden_size}, rows_, TensorKind::lm_head));
    }
  }

  /// This rank's logits [rows, V_r] of x [rows, H] (all V unless the head is split).
  void operator()(const typename B::Vector& x, int64_t rows, typename B::Vector& logits) const { B::linear(weight_, nullptr, x, rows, logits); }
  bool split() const { return rows_.size() != vocab_; }

  /// All logits [rows, V] on the host: a split head's slices gathered from the group.
  std::vector<typename B::Scalar> gather(const typename B::Vector& local, int64_t rows) const {
    if (!split()) return B::download(local);
    const int tp = parallel_->tp_size();
    std::vector<size_t> counts(static_cast<size_t>(tp));
    for (int r = 0; r < tp; ++r) counts[static_cast<size_t>(r)] = static_cast<size_t>(rows * split_evenly(vocab_, tp, r).size());
    typename B::Vector gathered;
    B::resize(gathered, static_cast<size_t>(rows * vocab_));
    parallel_->tp().all_gather_v(B::ptr(local), B::ptr(gathered), std::span<const size_t>(counts));
    const std::vector<typename B::Scalar> parts = B::download(gathered);  // [tp][rows, V_r]
    std::vector<typename B::Scalar> out(parts.size());
    int64_t at = 0;
    for (int r = 0; r < tp; ++r) {
      const IndexRange v = split_evenly(vocab_, tp, r);
      for (int64_t i = 0; i < rows; ++i) std::copy_n(parts.begin() + at + i * v.size(), v.size(), out.begin() + i * vocab_ + v.begin);
      at += rows * v.size();
    }
    return out;
  }

 private:
  std::shared_ptr<const Parallel> parallel_;
  typename B::Matrix weight_;
  IndexRange rows_;
  int64_t vocab_ = 0;
};

}  // namespace dots1
