// dots1/parallel/plan.hpp — how a Dots1 model is split across processes: the plan ("ep=N", "tp=N",
// "ep=a,tp=b"), the groups of ranks it implies, and which rows, heads and experts each rank holds.
//
// N ranks (one process each, all running the same forward on the same tokens):
//
//   tensor parallel (tp):  the ranks form N/tp groups of tp consecutive ranks; inside a group, rank r holds
//     attention     query heads [r*nh/tp, (r+1)*nh/tp) and the KV heads they read (q/k/v rows: a view of
//                   the checkpoint), o_proj's matching columns (a copy)  ->  partial sums, all-reduced;
//     dense MLP     gate/up rows [r*I/tp, (r+1)*I/tp), down_proj's matching columns  ->  all-reduce;
//     shared experts the same with Is;
//     LM head       vocabulary rows [r*V/tp, (r+1)*V/tp)  ->  logits all-gathered (tied heads stay whole).
//   expert parallel (ep):  groups of ep consecutive ranks; rank r holds the routed experts
//                   [r*E/ep, (r+1)*E/ep) (E need not be a multiple of ep) and is the home of tokens
//                   [r*T/ep, (r+1)*T/ep): it routes them, sends each (token, expert) pair to the expert's
//                   owner (all-to-all), gets the weighted expert outputs back (all-to-all), sums them, and
//                   the group all-gathers the tokens' results.
//   replicated on every rank: embeddings, RMSNorm weights, q/k norms, routers, correction biases.
//
// The model asks a Parallel (the plan plus the communicators of its groups) for its shards while loading
// (model/weights.hpp) and for collectives while running, in its parallel layer types (model/layers.hpp:
// column-, row- and vocabulary-parallel linears; model/routed_experts.hpp: expert-parallel experts);
// Parallel::single() is the unsplit model, which never communicates.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dots1/config.hpp"
#include "dots1/error.hpp"
#include "dots1/base/geometry.hpp"
#include "dots1/parallel/communicator.hpp"

namespace dots1 {

/// The degrees of parallelism: experts split `ep` ways, attention / dense MLP / shared experts / LM head
/// split `tp` ways. Each must divide the number of ranks; ranks beyond ep (tp) hold replicas.
struct ParallelPlan {
  int ep = 1, tp = 1;

  /// "ep=N", "tp=N", "ep=a,tp=b" (either order); empty: ep = world_size (experts split over all ranks).
  static ParallelPlan parse(std::string_view spec, int world_size) {
    ParallelPlan p;
    if (spec.empty()) {
      p.ep = world_size;
      p.check_ranks(world_size);
      return p;
    }
    bool seen_ep = false, seen_tp = false;
    std::string_view rest = spec;
    while (true) {
      const size_t comma = rest.find(',');
      const std::string_view item = rest.substr(0, comma);
      const size_t eq = item.find('=');
      const std::string key(item.substr(0, eq));
      if (eq == std::string_view::npos || (key != "ep" && key != "tp"))
        throw InputError("--parallel: '" + std::string(item) + "' is not ep=N or tp=N (expected e.g. ep=2, tp=4 or ep=4,tp=2)");
      const std::string value(item.substr(eq + 1));
      int n = 0;
      size_t used = 0;
      try {
        n = std::stoi(value, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != value.size() || n < 1)
        throw InputError("--parallel: '" + std::string(item) + "': " + key + " must be a positive integer");
      bool& seen = key == "ep" ? seen_ep : seen_tp;
      if (seen) throw InputError("--parallel: " + key + " is given twice in '" + std::string(spec) + "'");
      seen = true;
      (key == "ep" ? p.ep : p.tp) = n;
      if (comma == std::string_view::npos) break;
      rest = rest.substr(comma + 1);
    }
    p.check_ranks(world_size);
    return p;
  }

  /// ep and tp must each divide the number of ranks.
  void check_ranks(int world_size) const {
    for (auto [name, v] : {std::pair<const char*, int>{"ep", ep}, {"tp", tp}})
      if (v < 1 || world_size % v != 0)
        throw InputError(std::string("--parallel: ") + name + "=" + std::to_string(v) + " does not divide the " + std::to_string(world_size) +
                         " rank(s) of this run (mpirun -np " + std::to_string(world_size) + ")");
  }

  /// Whether this config can be split so; a ConfigError names the field that cannot be.
  void check_config(const Dots1Config& c) const {
    const int64_t nh = c.num_attention_heads, nkv = c.kv_heads();
    const std::string why = "tensor parallel tp=" + std::to_string(tp) + " ";
    if (nh % tp != 0) throw ConfigError("num_attention_heads", std::to_string(nh), why + "splits the query heads evenly, so tp must divide it");
    if (nkv % tp != 0 && tp % nkv != 0)
      throw ConfigError("num_key_value_heads", std::to_string(nkv),
                        why + "needs tp to divide it, or to be a multiple of it (each KV head then sits on tp/num_key_value_heads ranks)");
    if (c.intermediate_size < tp) throw ConfigError("intermediate_size", std::to_string(c.intermediate_size), why + "needs at least tp rows of the dense MLP");
    if (c.vocab_size < tp) throw ConfigError("vocab_size", std::to_string(c.vocab_size), why + "needs at least tp vocabulary rows");
    bool moe = false;
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) moe = moe || c.is_moe_layer(i);
    if (moe) {
      if (c.shared_intermediate_size() > 0 && c.shared_intermediate_size() < tp)
        throw ConfigError("n_shared_experts", std::to_string(c.n_shared_experts.value_or(0)), why + "needs at least tp rows of the shared experts");
      if (c.n_routed_experts && *c.n_routed_experts < ep)
        throw ConfigError("n_routed_experts", std::to_string(*c.n_routed_experts),
                          "expert parallel ep=" + std::to_string(ep) + " needs at least one routed expert per rank");
    }
  }

  std::string str() const { return "ep=" + std::to_string(ep) + ",tp=" + std::to_string(tp); }
};

/// A plan in action: this rank's place, and the communicators of its tensor- and expert-parallel groups.
class Parallel {
 public:
  /// The unsplit model (no communication ever).
  static std::shared_ptr<const Parallel> single() {
    static const std::shared_ptr<const Parallel> p = [] {
      auto s = std::make_shared<SingleProcess>();
      return std::shared_ptr<const Parallel>(new Parallel(s, ParallelPlan{}, s, s));
    }();
    return p;
  }

  /// Splits `world` into groups for `plan` (a collective: every rank of `world` must call it).
  static std::shared_ptr<const Parallel> create(std::shared_ptr<Communicator> world, ParallelPlan plan) {
    plan.check_ranks(world->size());
    const int r = world->rank();
    auto tp = plan.tp == world->size() ? world : world->split(r / plan.tp, r % plan.tp);
    auto ep = plan.ep == world->size() ? world : plan.ep == plan.tp ? tp : world->split(r / plan.ep, r % plan.ep);
    return std::shared_ptr<const Parallel>(new Parallel(std::move(world), plan, std::move(tp), std::move(ep)));
  }

  /// Rank `rank` of a `size`-rank run under `plan`, without communicators (PlannedRank): what it would
  /// hold (heads(), experts(), expected_weight_bytes()), e.g. for `dots1 info --parallel`.
  static std::shared_ptr<const Parallel> planned(ParallelPlan plan, int rank, int size) {
    plan.check_ranks(size);
    return std::shared_ptr<const Parallel>(new Parallel(std::make_shared<PlannedRank>(rank, size), plan,
                                                        std::make_shared<PlannedRank>(rank % plan.tp, plan.tp),
                                                        std::make_shared<PlannedRank>(rank % plan.ep, plan.ep)));
  }

  const ParallelPlan& plan() const { return plan_; }
  int rank() const { return world_->rank(); }
  int size() const { return world_->size(); }
  bool is_single() const { return world_->size() == 1; }
  Communicator& world() const { return *world_; }
  Communicator& tp() const { return *tp_; }
  Communicator& ep() const { return *ep_; }
  int tp_rank() const { return tp_->rank(); }
  int tp_size() const { return tp_->size(); }
  int ep_rank() const { return ep_->rank(); }
  int ep_size() const { return ep_->size(); }
  /// Communication time and bytes of all groups.
  CommStats& stats() const { return world_->stats(); }

  // ---- shards (the same arithmetic for loading and for expected_weight_bytes)
  /// Rows [r0, r1) of an n-row matrix split over the tensor-parallel group (MLP widths, vocabulary).
  IndexRange tp_rows(int64_t n) const { return split_evenly(n, tp_size(), tp_rank()); }
  /// This rank's query heads.
  IndexRange heads(const Dots1Config& c) const { return split_evenly(c.num_attention_heads, tp_size(), tp_rank()); }
  /// The KV heads this rank's query heads read (one replicated head when tp > num_key_value_heads).
  IndexRange kv_heads(const Dots1Config& c) const {
    const int64_t nkv = c.kv_heads();
    if (nkv % tp_size() == 0) return split_evenly(nkv, tp_size(), tp_rank());
    const int64_t kv = heads(c).begin / c.kv_groups();
    return {kv, kv + 1};
  }
  /// The routed experts this rank holds.
  IndexRange experts(int64_t n_experts) const { return split_evenly(n_experts, ep_size(), ep_rank()); }
  /// The expert-parallel rank that holds expert e.
  int expert_owner(int64_t e, int64_t n_experts) const { return static_cast<int>(part_holding(e, n_experts, ep_size())); }

  /// x <- sum over the tensor-parallel group (nothing when the group is this rank alone).
  template <class B>
  void tp_all_reduce(typename B::Vector& x) const {
    if (tp_size() > 1) tp_->all_reduce_sum(B::ptr(x), B::size(x));
  }

 private:
  Parallel(std::shared_ptr<Communicator> world, ParallelPlan plan, std::shared_ptr<Communicator> tp, std::shared_ptr<Communicator> ep)
      : world_(std::move(world)), tp_(std::move(tp)), ep_(std::move(ep)), plan_(plan) {}

  std::shared_ptr<Communicator> world_, tp_, ep_;
  ParallelPlan plan_;
};

}  // namespace dots1
