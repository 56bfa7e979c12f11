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
// Available memory: MemAvailable of /proc/meminfo, lowered to the cgroup's memory.max - memory.current
// when the process runs in a container with a limit. DOTS1_MEMORY_LIMIT=<bytes> caps it further (a user's
// budget, and how the tests exercise the check); DOTS1_MEMORY_LIMIT=off disables the check.
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

namespace dots1 {

/// Bytes a loaded model holds, by kind.
struct MemoryNeed {
  uint64_t owned = 0;   // allocated by dots1 (converted or generated tensors)
  uint64_t mapped = 0;  // used in place from memory-mapped checkpoint files
  uint64_t total() const { return owned + mapped; }
};

/// "12.3 GB" (decimal units, as free(1) -h and the bench figures).
inline std::string format_bytes(uint64_t b) {
  char s[32];
  const double v = static_cast<double>(b);
  if (v >= 1e12) std::snprintf(s, sizeof s, "%.1f TB", v / 1e12);
  else if (v >= 1e9) std::snprintf(s, sizeof s, "%.2f GB", v / 1e9);
  else if (v >= 1e6) std::snprintf(s, sizeof s, "%.1f MB", v / 1e6);
  else std::snprintf(s, sizeof s, "%.0f kB", v / 1e3);
  return s;
}

/// Memory the process may still use: see the file comment. Empty when unknown (not Linux) or disabled.
inline std::optional<uint64_t> available_memory() {
  std::optional<uint64_t> avail;
  if (const char* limit = std::getenv("DOTS1_MEMORY_LIMIT"); limit && *limit) {
    if (std::string(limit) == "off") return std::nullopt;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(limit, &end, 10);
    if (end == limit || *end != '\0')
      throw ConfigError("DOTS1_MEMORY_LIMIT", std::string("\"") + limit + "\"", "expected a number of bytes or 'off'");
    avail = v;
  }
  auto lower = [&](uint64_t v) { avail = avail ? std::min(*avail, v) : v; };
  if (std::ifstream meminfo("/proc/meminfo"); meminfo) {
    std::string key, unit;
    uint64_t kb = 0;
    while (meminfo >> key >> kb) {
      std::getline(meminfo, unit);
      if (key == "MemAvailable:") {
        lower(kb * 1024);
        break;
      }
    }
  }
  // cgroup v2: the container's limit, if any ("max" = none).
  std::ifstream max_file("/sys/fs/cgroup/memory.max"), current_file("/sys/fs/cgroup/memory.current");
  std::string max_text;
  uint64_t current = 0;
  if (max_file >> max_text && max_text != "max" && current_file >> current) {
    const uint64_t max = std::strtoull(max_text.c_str(), nullptr, 10);
    lower(max > current ? max - current : 0);
  }
  return avail;
}

/// Throws ResourceError when `need` exceeds the available memory; `what` names the model being loaded.
inline void check_memory(const MemoryNeed& need, const std::string& what) {
  const auto avail = available_memory();
  if (!avail || need.total() <= *avail) return;
  std::string detail = format_bytes(need.owned) + " allocated";
  if (need.mapped) detail += " + " + format_bytes(need.mapped) + " memory-mapped from the checkpoint files";
  throw ResourceError(what + " needs " + format_bytes(need.total()) + " of memory (" + detail + "), but only " +
                      format_bytes(*avail) +
                      " is available (MemAvailable / cgroup limit / DOTS1_MEMORY_LIMIT); use a machine with more memory, "
                      "bf16 weights, or split the model over processes");
}

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
