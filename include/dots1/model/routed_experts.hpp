// dots1/model/routed_experts.hpp — the routed experts of a MoE block, as a layer whose placement is chosen
// when the model is built: all of them in this process, or this rank's share with the (token, expert)
// slots dispatched to their owners (expert parallel, parallel/expert_parallel.hpp). Either way
//
//   out[t] = sum_k w[t, k] * Expert_{idx[t, k]}(x[t]),   Expert_e(x) = down_e(act(gate_e(x)) * up_e(x)),
//
// each token's experts summed in ascending expert id, as HF's per-expert loop adds them.
#pragma once

#include <cstdint>
#include <memory>
#include <variant>
#include <vector>

#include "dots1/backend/backend_concept.hpp"
#include "dots1/model/weights.hpp"
#include "dots1/parallel/expert_parallel.hpp"
#include "dots1/parallel/plan.hpp"

namespace dots1 {

template <Backend B>
class RoutedExperts {
 public:
  /// `w`: the MoE module, whose experts.{e}.{gate,up,down}_proj (or fused experts.*) these are.
  RoutedExperts(Weights w, int64_t experts, int64_t top_k, int64_t hidden, int64_t inter, kernels::Activation act)
      : top_k_(top_k), hidden_(hidden), inter_(inter), act_(act) {
    const double used = static_cast<double>(top_k) / static_cast<double>(experts);  // per token, on average
    const IndexRange mine = w.parallel().experts(experts);
    std::vector<typename B::ExpertMatrices> held;
    for (int64_t e = 0; e < experts; ++e) {
      if (!mine.contains(e)) {
        w.expert_elsewhere(e, hidden, inter, used);
        continue;
      }
      held.push_back({B::matrix(w.take_expert(e, "gate_proj", experts, hidden, inter, used)),    // [Im, H]
                      B::matrix(w.take_expert(e, "up_proj", experts, hidden, inter, used)),      // [Im, H]
                      B::matrix(w.take_expert(e, "down_proj", experts, hidden, inter, used))});  // [H, Im]
    }
    if (w.parallel().ep_size() > 1) placement_ = ExpertParallel{std::move(held), w.parallel_ptr(), experts};
    else placement_ = Local{std::move(held)};
  }

  /// out [T, H] from x [T, H] and the routing idx, w [T, K].
  void operator()(const typename B::Vector& x, int64_t tokens, const typename B::IndexVector& idx, const typename B::Vector& w,
                  typename B::Vector& out) const {
    std::visit([&](const auto& p) { p.run(*this, x, tokens, idx, w, out); }, placement_);
  }

 private:
  struct Local {
    std::vector<typename B::ExpertMatrices> experts;
    void run(const RoutedExperts& r, const typename B::Vector& x, int64_t tokens, const typename B::IndexVector& idx, const typename B::Vector& w,
             typename B::Vector& out) const {
      B::moe_experts(x, tokens, r.hidden_, idx, w, r.top_k_, experts, r.inter_, r.act_, out);
    }
  };
  struct ExpertParallel {
    std::vector<typename B::ExpertMatrices> experts;  // experts [mine.begin, mine.end)
    std::shared_ptr<const Parallel> parallel;
    int64_t n_experts;
    void run(const RoutedExperts& r, const typename B::Vector& x, int64_t tokens, const typename B::IndexVector& idx, const typename B::Vector& w,
             typename B::Vector& out) const {
      expert_parallel_moe<B>(*parallel, x, tokens, r.hidden_, idx, w, r.top_k_, n_experts, experts, r.inter_, r.act_, out);
    }
  };

  int64_t top_k_, hidden_, inter_;
  kernels::Activation act_;
  std::variant<Local, ExpertParallel> placement_;
};

}  // namespace dots1
