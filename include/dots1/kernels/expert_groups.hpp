// dots1/kernels/expert_groups.hpp — the (token, k) slots of a MoE call grouped by expert, on the host: the
// one grouping that the CPU backend's expert loops and the expert-parallel dispatch share.
//
// Slot s = t * top_k + k routes token t to expert indices[s]. Grouped (a stable counting sort), sorted
// position p holds slot order[p]; expert e owns positions [begin[e], begin[e + 1]); slot s sits at
// position[s]. Within an expert the slots keep their order, so each expert sees its tokens ascending, and
// a token's slots in ascending position are its experts in ascending id: the order HF's per-expert loop
// adds them in.
#pragma once

#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

namespace dots1::kernels {

struct ExpertGroups {
  std::vector<int64_t> begin;     // [n_experts + 1]
  std::vector<int64_t> order;     // [slots]: sorted position -> slot
  std::vector<int64_t> position;  // [slots]: slot -> sorted position
  std::vector<int64_t> active;    // experts with at least one slot, ascending

  int64_t rows(int64_t e) const { return begin[static_cast<size_t>(e) + 1] - begin[static_cast<size_t>(e)]; }

  /// Groups `indices` (expert ids in [0, n_experts)); reuses this object's buffers.
  void assign(std::span<const int32_t> indices, int64_t n_experts) {
    const auto slots = static_cast<int64_t>(indices.size());
    begin.assign(static_cast<size_t>(n_experts + 1), 0);
    for (int32_t e : indices) ++begin[static_cast<size_t>(e) + 1];
    std::partial_sum(begin.begin(), begin.end(), begin.begin());
    order.resize(static_cast<size_t>(slots));
    position.resize(static_cast<size_t>(slots));
    fill_.assign(begin.begin(), begin.end() - 1);
    for (int64_t s = 0; s < slots; ++s) {
      const int64_t p = fill_[static_cast<size_t>(indices[static_cast<size_t>(s)])]++;
      order[static_cast<size_t>(p)] = s;
      position[static_cast<size_t>(s)] = p;
    }
    active.clear();
    for (int64_t e = 0; e < n_experts; ++e)
      if (rows(e) > 0) active.push_back(e);
  }

 private:
  std::vector<int64_t> fill_;
};

}  // namespace dots1::kernels
