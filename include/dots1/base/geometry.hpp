// dots1/base/geometry.hpp — the small shape types that the backends, the parallel split, the instruments and
// the model pass to each other: index ranges (a rank's share of rows, heads or experts), the geometry of an
// attention call and the router's hyper-parameters.
#pragma once

#include <algorithm>
#include <cstdint>

namespace dots1 {

/// A half-open range [begin, end) of rows, heads or experts.
struct IndexRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool contains(int64_t i) const { return i >= begin && i < end; }
  bool operator==(const IndexRange&) const = default;
};

/// Part `i` of `n` items cut into `parts` contiguous ranges whose sizes differ by at most one:
/// [i*n/parts, (i+1)*n/parts).
inline IndexRange split_evenly(int64_t n, int64_t parts, int64_t i) { return {i * n / parts, (i + 1) * n / parts}; }

/// The part of split_evenly(n, parts, .) that holds item `item`.
inline int64_t part_holding(int64_t item, int64_t n, int64_t parts) {
  int64_t p = std::min<int64_t>(parts - 1, item * parts / std::max<int64_t>(n, 1));
  while (p > 0 && split_evenly(n, parts, p).begin > item) --p;
  while (p + 1 < parts && split_evenly(n, parts, p + 1).begin <= item) ++p;
  return p;
}

/// Geometry of one attention call: queries [batch, q_len, heads, head_dim] against the first kv_len rows
/// of the cache [batch, capacity, kv_heads, head_dim].
struct AttentionShape {
  int64_t batch = 0, q_len = 0, kv_len = 0, capacity = 0, heads = 0, kv_heads = 0, head_dim = 0;
  double scaling = 1.0;
};

/// The router's hyper-parameters (Dots1TopkRouter).
struct RouterShape {
  int64_t experts = 0, top_k = 0, n_group = 1, topk_group = 1;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
};

}  // namespace dots1
