// dots1/io/memory_plan.hpp — how much memory a model will hold before it is loaded, and an early, clear
// failure when the machine does not have it (instead of the kernel's OOM killer halfway through a load).
//
// What a model holds comes from its blocks' declarations (base/tensor_spec.hpp, model/describe.hpp): for
// each tensor the part this process holds, its stored dtype and its kind. A backend that keeps a matrix's
// dtype in place (the CPU backend computing in float: F32 and BF16) uses it from the memory-mapped
// safetensors files ("mapped": page cache, read on first use); everything else (F16/F64 matrices, 1-D
// tensors, every tensor a WeightFormat converts, column slices of a split model) is converted or copied into
// its own memory ("owned"). Generated (random) weights are all owned. Both count against the machine: a
// mapped checkpoint larger than memory would be re-read from disk on every token.
//
// The check itself (available memory, check_memory, check_allocation for every other large allocation) is
// dots1/base/memory_check.hpp.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

#include "dots1/error.hpp"
#include <functional>
#include <vector>

#include "dots1/base/tensor_spec.hpp"
#include "dots1/base/memory_check.hpp"

namespace dots1 {

/// Weights generated in memory (RandomWeights) for these tensors under `format`: all owned.
inline MemoryNeed random_weights_memory(const std::vector<TensorSpec>& tensors, WeightFormat format) {
  MemoryNeed need;
  for (const auto& t : tensors) need.owned += static_cast<uint64_t>(t.held_numel()) * dtype_size(held_dtype(t.kind, format, DType::F32));
  return need;
}

/// A source's tensors (their `stored` dtypes, as WeightLoader::describing(par, &source) records them)
/// loaded with `format` by a backend that uses matrices of the dtypes `keeps_in_place` accepts without a
/// copy, converting the rest to `compute_bytes`-byte scalars.
inline MemoryNeed loaded_memory(const std::vector<TensorSpec>& tensors, WeightFormat format, const std::function<bool(DType)>& keeps_in_place,
                                uint64_t compute_bytes) {
  MemoryNeed need;
  for (const auto& t : tensors) {
    const auto n = static_cast<uint64_t>(t.held_numel());
    const DType target = held_dtype(t.kind, format, t.stored);
    const bool matrix = t.kind != TensorKind::vector && t.kind != TensorKind::buffer;
    if (matrix && keeps_in_place(target))
      (target != t.stored || t.copied ? need.owned : need.mapped) += n * dtype_size(target);  // a conversion or a copy is owned
    else
      need.owned += n * compute_bytes;
  }
  return need;
}

}  // namespace dots1
