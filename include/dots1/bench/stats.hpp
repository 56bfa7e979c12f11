// dots1/bench/stats.hpp — min/median/max of repeated measurements, the process's peak memory and the
// machine's load average (benchmarks report the load next to every figure).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <sys/resource.h>

namespace dots1::bench {

struct Summary {
  double min = 0, median = 0, max = 0;
  std::vector<double> values;
};

inline Summary summarize(std::vector<double> v) {
  Summary s;
  s.values = v;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return s;
}

/// A "kB" field of /proc/self/status in bytes (VmHWM: peak resident set, VmRSS: current), or -1.
inline int64_t proc_status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) {
      long long kb = -1;
      std::sscanf(line.c_str() + field.size() + 1, "%lld", &kb);
      return kb < 0 ? -1 : static_cast<int64_t>(kb) * 1024;
    }
  return -1;
}

/// Peak resident memory of this process in bytes: VmHWM, else getrusage's ru_maxrss.
inline int64_t peak_resident_bytes() {
  const int64_t hwm = proc_status_bytes("VmHWM");
  if (hwm >= 0) return hwm;
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

/// CPU seconds (user + system) this process has used so far, all threads.
inline double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

/// The 1-minute load average (/proc/loadavg), or -1.
inline double load_average() {
  std::ifstream in("/proc/loadavg");
  double one = -1;
  in >> one;
  return one;
}

}  // namespace dots1::bench
