// dots1/model/describe.hpp — a model described from its config alone, by its blocks' own declarations (the
// model built on the meta backend, CausalLM::describe_model): its tensors (HF names, shapes, kinds, this
// rank's shares), the parameter counts `dots1 info` reports, and the bytes each rank of a split holds.
// Nothing here names a tensor: the blocks do.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dots1/backend/meta/meta_backend.hpp"
#include "dots1/base/tensor_spec.hpp"
#include "dots1/config.hpp"
#include "dots1/model/causal_lm.hpp"
#include "dots1/model/dots1.hpp"
#include "dots1/parallel/plan.hpp"

namespace dots1 {

/// The family's model for `c` on the meta backend (this rank's shares when `par` is split).
template <ModelFamily Family = Dots1>
ModelDescription describe_model(const Dots1Config& c, std::shared_ptr<const Parallel> par = Parallel::single(), const WeightSource* dtypes_from = nullptr) {
  return CausalLM<MetaBackend, Family>::describe_model(c, std::move(par), dtypes_from);
}

/// Every tensor of the family's model for `c`, as a released (per-expert) checkpoint stores it.
template <ModelFamily Family = Dots1>
std::vector<TensorSpec> model_tensors(const Dots1Config& c, std::shared_ptr<const Parallel> par = Parallel::single()) {
  return describe_model<Family>(c, std::move(par)).tensors;
}

/// Their shapes, keyed by HF name.
template <ModelFamily Family = Dots1>
std::map<std::string, std::vector<int64_t>> model_tensor_shapes(const Dots1Config& c) {
  std::map<std::string, std::vector<int64_t>> s;
  for (const auto& t : model_tensors<Family>(c)) s[t.name] = t.shape;
  return s;
}

/// Parameter counts: total, and active per token (all but the routed experts a token does not use).
struct ParameterCount {
  int64_t total = 0;
  int64_t active_per_token = 0;
  int64_t routed_expert_parameters = 0;  // all routed experts of all layers
};

inline ParameterCount count_parameters(const std::vector<TensorSpec>& tensors) {
  ParameterCount p;
  double active = 0;
  for (const auto& t : tensors) {
    if (!t.is_parameter()) continue;  // e_score_correction_bias is a buffer, not a parameter (as in HF)
    p.total += t.numel();
    active += static_cast<double>(t.numel()) * t.used_per_token;
    if (t.routed) p.routed_expert_parameters += t.numel();
  }
  p.active_per_token = static_cast<int64_t>(active + 0.5);
  return p;
}
template <ModelFamily Family = Dots1>
ParameterCount count_parameters(const Dots1Config& c) {
  return count_parameters(model_tensors<Family>(c));
}

/// Bytes of one tensor (or of the part held), given its spec and the element count: e.g. 4 * n for float32.
using TensorBytes = std::function<double(const TensorSpec&, int64_t elements)>;
inline double float32_bytes(const TensorSpec&, int64_t elements) { return 4.0 * static_cast<double>(elements); }

/// The weight bytes the rank of `par` holds for config `c`, from the blocks' declarations (what the loader
/// takes, without loading). With `par` single it is the whole model.
template <ModelFamily Family = Dots1>
double expected_weight_bytes(const Dots1Config& c, std::shared_ptr<const Parallel> par, const TensorBytes& bytes = float32_bytes) {
  double total = 0;
  for (const auto& t : model_tensors<Family>(c, std::move(par))) total += bytes(t, t.held_numel());
  return total;
}

/// The bytes every rank holds whole whatever the split: embeddings, norms, routers and correction biases
/// (and a tied LM head, which is the embedding).
inline double replicated_weight_bytes(const std::vector<TensorSpec>& tensors, const TensorBytes& bytes = float32_bytes) {
  double total = 0;
  for (const auto& t : tensors)
    if (t.kind == TensorKind::embedding || t.kind == TensorKind::vector || t.kind == TensorKind::router || t.kind == TensorKind::buffer)
      total += bytes(t, t.numel());
  return total;
}

}  // namespace dots1
