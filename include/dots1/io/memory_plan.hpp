// dots1/io/memory_plan.hpp — how much memory a model will hold before it is loaded, and an early, clear
// failure when the machine does not have it (instead of the kernel's OOM killer halfway through a load).
//
// The CPU backend computing in float reads F32 and BF16 weight matrices in place from the memory-mapped
// safetensors files ("mapped": page cache, read on first use) and converts everything else (F16/F64
// matrices, all 1-D tensors, every tensor a WeightFormat converts) into its own memory ("owned"). Generated
// (random) weights are all owned. Both count against the machine: a mapped checkpoint larger than memory
// would be re-read from disk on every token.
//
// The check itself (available memory, check_memory, check_allocation for every other large allocation) is
// dots1/io/memory_check.hpp.
#pragma once

#include <cstdint>
#include <string>

#include "dots1/error.hpp"
#include "dots1/io/checkpoint.hpp"
#include "dots1/io/memory_check.hpp"
#include "dots1/model/shapes.hpp"

namespace dots1 {

/// Weights generated in memory for config `c` (RandomWeights): matrices in 4 bytes (2 when `bf16_matrices`),
/// 1-D tensors in 4, all owned.
inline MemoryNeed random_weights_memory(const Dots1Config& c, bool bf16_matrices) {
  MemoryNeed need;
  for (const auto& [name, shape] : model_tensor_shapes(c)) {
    uint64_t n = 1;
    for (auto d : shape) n *= static_cast<uint64_t>(d);
    const bool router = name.size() >= 15 && name.compare(name.size() - 15, 15, "mlp.gate.weight") == 0;
    need.owned += n * (shape.size() >= 2 && bf16_matrices && !router ? 2 : 4);
  }
  return need;
}

/// A checkpoint loaded with `format` by a backend that reads F32/BF16 matrices in place when
/// `in_place` (the CPU backend in float), converting the rest to `compute_bytes`-byte scalars.
inline MemoryNeed checkpoint_memory(const Checkpoint& ck, WeightFormat format, bool in_place, uint64_t compute_bytes) {
  MemoryNeed need;
  for (const auto& f : ck.files())
    for (const auto& [name, t] : f.tensors()) {
      uint64_t n = 1;
      for (auto d : t.shape) n *= static_cast<uint64_t>(d);
      DType target = t.dtype;
      const bool converted = converts_weight(format, name, t.shape, target) && target != t.dtype;
      const bool matrix = t.shape.size() >= 2;
      if (in_place && matrix && (target == DType::F32 || target == DType::BF16)) {
        // In place when stored so; a conversion's result is owned.
        (converted ? need.owned : need.mapped) += n * (target == DType::BF16 ? 2 : 4);
      } else {
        need.owned += n * compute_bytes;
      }
    }
  return need;
}

}  // namespace dots1
