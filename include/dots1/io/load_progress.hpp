// dots1/io/load_progress.hpp — loading progress for large checkpoints: a WeightSource decorator that reports
// tensors and bytes as the model takes them, and a terminal progress bar to show it.
//
//   auto ck = dots1::Checkpoint::open(dir);
//   dots1::ProgressWeightSource source(ck, dots1::terminal_progress_bar());   // quiet when stdout is no terminal
//   dots1::CpuModel model(ck.config(), source);
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "dots1/io/checkpoint.hpp"

namespace dots1 {

struct LoadProgress {
  size_t tensors_done = 0, tensors_total = 0;
  uint64_t bytes_done = 0, bytes_total = 0;
};

using LoadProgressCallback = std::function<void(const LoadProgress&)>;

/// Forwards to another WeightSource and reports each tensor the first time it is taken.
class ProgressWeightSource final : public WeightSource {
 public:
  ProgressWeightSource(const WeightSource& inner, LoadProgressCallback callback) : inner_(inner), callback_(std::move(callback)) {
    for (const auto& n : inner_.names()) {
      ++progress_.tensors_total;
      progress_.bytes_total += inner_.get(n).nbytes;  // a view: no data is read
    }
  }
  bool contains(const std::string& name) const override { return inner_.contains(name); }
  TensorView get(const std::string& name) const override {
    TensorView t = inner_.get(name);
    if (seen_.insert(name).second) {
      ++progress_.tensors_done;
      progress_.bytes_done += t.nbytes;
      if (callback_) callback_(progress_);
    }
    return t;
  }
  std::vector<std::string> names() const override { return inner_.names(); }
  std::string describe() const override { return inner_.describe(); }

 private:
  const WeightSource& inner_;
  LoadProgressCallback callback_;
  mutable std::set<std::string> seen_;
  mutable LoadProgress progress_;
};

/// A one-line progress bar on stderr ("loading [#####     ] 120/162 tensors, 12.1/17.2 MiB"), redrawn at most
/// ten times a second and finished with a newline. Returns an empty callback (no output at all) when stdout
/// is not a terminal, so scripts and pipes see nothing.
inline LoadProgressCallback terminal_progress_bar(bool enabled = ::isatty(STDOUT_FILENO) != 0) {
  if (!enabled) return {};
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  return [last](const LoadProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    const bool done = p.tensors_done == p.tensors_total;
    if (!done && now - *last < std::chrono::milliseconds(100)) return;
    *last = now;
    constexpr int kWidth = 30;
    const double f = p.bytes_total ? static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total) : 1.0;
    const int filled = static_cast<int>(f * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, ' ');
    std::fprintf(stderr, "\rloading [%s] %zu/%zu tensors, %.1f/%.1f MiB%s", bar.c_str(), p.tensors_done, p.tensors_total,
                 static_cast<double>(p.bytes_done) / 1048576.0, static_cast<double>(p.bytes_total) / 1048576.0, done ? "\n" : "");
    std::fflush(stderr);
  };
}

}  // namespace dots1
