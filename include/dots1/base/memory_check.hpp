// dots1/base/memory_check.hpp — the memory preflight: before dots1 makes a large allocation whose size comes
// from an input (a model's weights, a KV cache for a requested context, forward outputs, a tokenizer's id
// tables, a trace's tensors, a file read whole), it asks check_memory / check_allocation, which throws
// dots1::ResourceError naming what is needed and what is available, instead of letting the kernel's OOM
// killer end the process halfway through (or std::bad_alloc surface without a cause).
//
// Available memory: MemAvailable of /proc/meminfo, lowered to the cgroup's memory.max - memory.current when
// the process runs in a container with a limit, and to the address-space limit (RLIMIT_AS / RLIMIT_DATA,
// `ulimit -v`, `prlimit --as`) minus what the process already maps. DOTS1_MEMORY_LIMIT=<bytes> caps it
// further (a user's budget, and how the tests exercise the check); DOTS1_MEMORY_LIMIT=off disables the check.
//
// Sizes are computed with checked_bytes(), which saturates instead of wrapping, so a size that overflows 64
// bits is refused like any other too-large size.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>

#include <sys/resource.h>

#include "dots1/error.hpp"
#include "dots1/base/limits.hpp"

namespace dots1 {

/// Bytes a request will hold, by kind.
struct MemoryNeed {
  uint64_t owned = 0;   // allocated by dots1
  uint64_t mapped = 0;  // used in place from memory-mapped files (a checkpoint's weights)
  uint64_t total() const { return owned > UINT64_MAX - mapped ? UINT64_MAX : owned + mapped; }
};

/// "12.3 GB" (decimal units, as free(1) -h and the bench figures).
inline std::string format_bytes(uint64_t b) {
  char s[32];
  const double v = static_cast<double>(b);
  if (b == UINT64_MAX) return "more than 18 EB";
  if (v >= 1e12) std::snprintf(s, sizeof s, "%.1f TB", v / 1e12);
  else if (v >= 1e9) std::snprintf(s, sizeof s, "%.2f GB", v / 1e9);
  else if (v >= 1e6) std::snprintf(s, sizeof s, "%.1f MB", v / 1e6);
  else std::snprintf(s, sizeof s, "%.0f kB", v / 1e3);
  return s;
}

/// The product of `factors` in bytes, UINT64_MAX when it does not fit 64 bits (negative factors count as 0).
inline uint64_t checked_bytes(std::initializer_list<int64_t> factors) {
  uint64_t p = 1;
  for (int64_t f : factors) {
    const uint64_t u = f < 0 ? 0 : static_cast<uint64_t>(f);
    if (u != 0 && p > UINT64_MAX / u) return UINT64_MAX;
    p *= u;
  }
  return p;
}
/// a + b, UINT64_MAX on overflow.
inline uint64_t saturating_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

namespace detail {

/// A "VmSize:" style line of /proc/self/status in bytes (0 when unknown).
inline uint64_t proc_self_status_bytes(const char* key) {
  std::ifstream status("/proc/self/status");
  std::string k;
  while (status >> k) {
    if (k == key) {
      uint64_t kb = 0;
      status >> kb;
      return kb * 1024;
    }
    std::getline(status, k);
  }
  return 0;
}

}  // namespace detail

/// Memory the process may still use: see the file comment. Empty when unknown (not Linux) or disabled.
inline std::optional<uint64_t> available_memory() {
  std::optional<uint64_t> avail;
  if (const char* limit = std::getenv("DOTS1_MEMORY_LIMIT"); limit && *limit) {
    if (std::string(limit) == "off") return std::nullopt;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(limit, &end, 10);
    if (end == limit || *end != '\0' || limit[0] == '-')
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
  // An address-space limit (ulimit -v, prlimit --as): what is left of it.
  for (int resource : {RLIMIT_AS, RLIMIT_DATA}) {
    struct rlimit rl {};
    if (::getrlimit(resource, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
      const uint64_t used = detail::proc_self_status_bytes(resource == RLIMIT_AS ? "VmSize:" : "VmData:");
      const uint64_t cap = static_cast<uint64_t>(rl.rlim_cur);
      lower(cap > used ? cap - used : 0);
    }
  }
  return avail;
}

/// Throws ResourceError when `need` exceeds the available memory; `what` names the request ("loading
/// checkpoint X", "the KV cache for 100000 tokens").
inline void check_memory(const MemoryNeed& need, const std::string& what) {
  const auto avail = available_memory();
  if (!avail || need.total() <= *avail) return;
  std::string detail = format_bytes(need.owned) + " allocated";
  if (need.mapped) detail += " + " + format_bytes(need.mapped) + " memory-mapped from the checkpoint files";
  throw ResourceError(what + " needs " + format_bytes(need.total()) + " of memory (" + detail + "), but only " + format_bytes(*avail) +
                      " is available (MemAvailable / cgroup limit / address-space limit / DOTS1_MEMORY_LIMIT); use a machine with more "
                      "memory, bf16 weights, or split the model over processes");
}

/// The preflight of one allocation of `bytes` (computed with checked_bytes): ResourceError naming `what`, the
/// bytes needed and the bytes available when it would not fit. Small allocations (below
/// limits::kPreflightMinBytes) are not checked, so calling this on every size an input decides costs nothing.
inline void check_allocation(uint64_t bytes, const std::string& what) {
  if (bytes < limits::kPreflightMinBytes) return;
  const auto avail = available_memory();
  if (bytes != UINT64_MAX && (!avail || bytes <= *avail)) return;
  throw ResourceError(what + " needs " + format_bytes(bytes) + " of memory, but only " +
                      (avail ? format_bytes(*avail) : std::string("an unknown amount")) +
                      " is available (MemAvailable / cgroup limit / address-space limit / DOTS1_MEMORY_LIMIT)");
}

}  // namespace dots1
