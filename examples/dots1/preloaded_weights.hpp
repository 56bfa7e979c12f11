// Random weights generated up front on several threads for the tool's models (host code only: the
// nvcc-compiled CUDA plugin includes it too).
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <dots1/io/checkpoint.hpp>

namespace dots1_cli {

/// Every tensor of `inner` generated up front on `threads` threads (random weights: ~20 s on one core for the
/// bench config), then served to the model's loader; holds nothing once the model is built.
class PreloadedWeights final : public dots1::WeightSource {
 public:
  PreloadedWeights(const dots1::WeightSource& inner, int threads) : inner_(inner) {
    const std::vector<std::string> names = inner.names();
    std::vector<dots1::TensorView> views(names.size());
    const size_t n = static_cast<size_t>(std::max(1, threads));
    {
      std::vector<std::jthread> pool;
      for (size_t w = 0; w < n; ++w)
        pool.emplace_back([&, w] {
          for (size_t i = w; i < names.size(); i += n) views[i] = inner.get(names[i]);
        });
    }
    for (size_t i = 0; i < names.size(); ++i) views_.emplace(names[i], std::move(views[i]));
  }
  bool contains(const std::string& name) const override { return views_.count(name) != 0; }
  dots1::TensorView get(const std::string& name) const override { return views_.at(name); }
  std::vector<std::string> names() const override { return inner_.names(); }
  std::string describe() const override { return inner_.describe(); }

 private:
  const dots1::WeightSource& inner_;
  std::map<std::string, dots1::TensorView> views_;
};

}  // namespace dots1_cli
