// dots1/parallel/expert_parallel.hpp — the routed experts of one MoE layer split across the ranks of an
// expert-parallel group (see parallel/plan.hpp), on any backend.
//
// Every rank of the group holds the same x [T, H] and the same routing (idx, w) [T, K] (the router is
// replicated, so every rank computes the same choice); rank g holds experts [g*E/G, (g+1)*E/G) and is the
// home of tokens [g*T/G, (g+1)*T/G). For its home tokens t, rank g
//
//   1. dispatches: each slot (t, k) — the row x[t] and its weight w[t, k] — to the owner of expert
//                  idx[t, k]; slots travel sorted by expert id, so the owners need no ids, only the counts
//                  per (source rank, expert), which one all-gather of E counts per rank tells everyone;
//   2. computes:   each owner runs its experts on what it received: c = w * Expert_e(x[t]);
//   3. combines:   the c rows come back in the order they left (all-to-all the other way), and the home
//                  rank sums each token's K rows in ascending expert id, as the single-process
//                  moe_experts does: routed[t] = sum_k c[t, k];
//   4. shares:     all-gather of the home tokens' rows, so every rank again holds routed [T, H].
//
// Bytes moved per token and layer: K rows of H out and back (only the rows whose expert sits on another
// rank leave the process), plus the all-gather of H; the counts are E int64 per rank.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "dots1/kernels/expert_groups.hpp"
#include "dots1/kernels/portable.hpp"
#include "dots1/backend/backend_concept.hpp"
#include "dots1/parallel/plan.hpp"

namespace dots1 {

/// routed [T, H] = sum_k w[t,k] * Expert_{idx[t,k]}(x[t]) with the experts spread over par.ep(); `experts`
/// are this rank's, experts [mine.begin, mine.end) of the layer's `n_experts`.
template <class B>
void expert_parallel_moe(const Parallel& par, const typename B::Vector& x, int64_t tokens, int64_t hidden, const typename B::IndexVector& indices,
                         const typename B::Vector& weights, int64_t top_k, int64_t n_experts,
                         const std::vector<typename B::ExpertMatrices>& experts, int64_t inter, kernels::Activation act, typename B::Vector& routed) {
  using T = typename B::Scalar;
  Communicator& comm = par.ep();
  const int G = comm.size(), g = comm.rank();
  const int64_t E = n_experts, K = top_k, H = hidden;
  const IndexRange home = split_evenly(tokens, G, g), mine = par.experts(E);

  // the home tokens' slots
  const std::vector<int32_t> all_idx = B::download(indices);
  const std::vector<T> all_w = B::download(weights);
  const std::vector<int32_t> idx(all_idx.begin() + home.begin * K, all_idx.begin() + home.end * K);  // [Th, K]
  const std::vector<T> w(all_w.begin() + home.begin * K, all_w.begin() + home.end * K);
  const auto slots = static_cast<int64_t>(idx.size());

  // 1. the slots sorted by expert (stable): sorted position p holds slot order[p]; slot s sits at position[s]
  kernels::ExpertGroups groups;
  groups.assign(idx, E);
  const auto& order = groups.order;
  const auto& position = groups.position;
  std::vector<int64_t> count(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) count[static_cast<size_t>(e)] = groups.rows(e);
  std::vector<int64_t> all_counts(static_cast<size_t>(G * E));  // [G, E]: slots of rank r for expert e
  comm.all_gather_host(count.data(), static_cast<size_t>(E), all_counts.data());
  std::vector<size_t> send_rows(static_cast<size_t>(G), 0), recv_rows(static_cast<size_t>(G), 0);
  for (int d = 0; d < G; ++d) {
    const IndexRange theirs = split_evenly(E, G, d);
    for (int64_t e = theirs.begin; e < theirs.end; ++e) send_rows[static_cast<size_t>(d)] += static_cast<size_t>(count[static_cast<size_t>(e)]);
    for (int64_t e = mine.begin; e < mine.end; ++e) recv_rows[static_cast<size_t>(d)] += static_cast<size_t>(all_counts[static_cast<size_t>(d * E + e)]);
  }
  const size_t n_recv = std::accumulate(recv_rows.begin(), recv_rows.end(), size_t{0});
  auto times = [](std::vector<size_t> v, int64_t k) {
    for (auto& c : v) c *= static_cast<size_t>(k);
    return v;
  };

  // dispatch rows and weights
  typename B::Vector send_x, send_w, recv_x, recv_w, recv_y, back;
  {
    std::vector<int64_t> rows(static_cast<size_t>(slots));
    std::vector<T> ws(static_cast<size_t>(slots));
    for (int64_t p = 0; p < slots; ++p) {
      const int64_t s = order[static_cast<size_t>(p)];
      rows[static_cast<size_t>(p)] = home.begin + s / K;
      ws[static_cast<size_t>(p)] = w[static_cast<size_t>(s)];
    }
    B::gather_rows(x, H, B::upload(std::span<const int64_t>(rows)), send_x);
    send_w = B::upload(std::span<const T>(ws));
  }
  B::resize(recv_x, n_recv * static_cast<size_t>(H));
  B::resize(recv_w, n_recv);
  comm.all_to_all_v(B::ptr(send_x), std::span<const size_t>(times(send_rows, H)), B::ptr(recv_x), std::span<const size_t>(times(recv_rows, H)));
  comm.all_to_all_v(B::ptr(send_w), std::span<const size_t>(send_rows), B::ptr(recv_w), std::span<const size_t>(recv_rows));

  // 2. this rank's experts on the received rows: from each source, grouped by ascending expert
  if (n_recv > 0) {
    std::vector<int32_t> local(n_recv);
    size_t at = 0;
    for (int s = 0; s < G; ++s)
      for (int64_t e = mine.begin; e < mine.end; ++e)
        for (int64_t i = 0; i < all_counts[static_cast<size_t>(s * E + e)]; ++i) local[at++] = static_cast<int32_t>(e - mine.begin);
    B::moe_experts(recv_x, static_cast<int64_t>(n_recv), H, B::upload(std::span<const int32_t>(local)), recv_w, 1, experts, inter, act, recv_y);
  }

  // 3. the weighted outputs go back the way they came; each home token sums its K rows in ascending expert
  B::resize(back, static_cast<size_t>(slots * H));
  comm.all_to_all_v(B::ptr(recv_y), std::span<const size_t>(times(recv_rows, H)), B::ptr(back), std::span<const size_t>(times(send_rows, H)));
  typename B::Vector mine_out, part;  // [Th, H]
  for (int64_t k = 0; k < K && home.size() > 0; ++k) {
    std::vector<int64_t> rows(static_cast<size_t>(home.size()));
    for (int64_t t = 0; t < home.size(); ++t) {
      std::vector<int64_t> p(position.begin() + t * K, position.begin() + (t + 1) * K);
      std::nth_element(p.begin(), p.begin() + k, p.end());
      rows[static_cast<size_t>(t)] = p[static_cast<size_t>(k)];
    }
    if (k == 0) {
      B::gather_rows(back, H, B::upload(std::span<const int64_t>(rows)), mine_out);
    } else {
      B::gather_rows(back, H, B::upload(std::span<const int64_t>(rows)), part);
      B::add(mine_out, part);
    }
  }

  // 4. every rank gets every token's row
  std::vector<size_t> gather_counts(static_cast<size_t>(G));
  for (int r = 0; r < G; ++r) gather_counts[static_cast<size_t>(r)] = static_cast<size_t>(split_evenly(tokens, G, r).size() * H);
  B::resize(routed, static_cast<size_t>(tokens * H));
  comm.all_gather_v(B::ptr(mine_out), B::ptr(routed), std::span<const size_t>(gather_counts));
}

}  // namespace dots1
