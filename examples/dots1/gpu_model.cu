// gpu_model.hpp on CUDA: the dots1 tool's CUDA plugin, libdots1-cuda.so, the one translation unit that
// instantiates the GPU model (dots1::GpuModel = Dots1ForCausalLM<ThrustBackend<float>>, Thrust on the CUDA
// device system, cuBLAS). Compiled by nvcc only when DOTS1_ENABLE_CUDA is ON (examples/CMakeLists.txt) and
// loaded by the tool on first use of --device cuda (gpu_model_loader.cpp).
#include "gpu_model.hpp"
#include "tool_support.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include <cuda_runtime.h>

#include <dots1/cuda.hpp>
#include <dots1/io/load_progress.hpp>

namespace dots1_cli::gpu {

namespace {

using GModel = dots1::GpuModel;
using Clock = std::chrono::steady_clock;

void check_device() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0)
    throw dots1::Error(std::string("--device cuda: no CUDA device is available (") + (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") + ")");
}

void synchronize() { dots1::thrust_detail::cuda::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }


class CudaModel final : public Model {
 public:
  CudaModel(GModel model, size_t weight_bytes) : model_(std::move(model)), weight_bytes_(weight_bytes) {}

  const dots1::Dots1Config& config() const override { return model_.config(); }

  std::string device() const override {
    int dev = 0;
    cudaGetDevice(&dev);
    cudaDeviceProp p{};
    cudaGetDeviceProperties(&p, dev);
    char b[64];
    std::snprintf(b, sizeof b, " (sm_%d%d, %.1f GB)", p.major, p.minor, static_cast<double>(p.totalGlobalMem) / 1e9);
    return std::string(p.name) + b;
  }
  size_t weight_bytes() const override { return weight_bytes_; }

  ForwardResult forward(const dots1::ForwardInput& input) override {
    auto out = model_.forward(input);
    ForwardResult r;
    r.logits = std::move(out.logits);
    r.loss = out.loss;
    r.last_hidden_state = std::move(out.last_hidden_state);
    r.hidden_states = std::move(out.hidden_states);
    r.attentions = std::move(out.attentions);
    return r;
  }

  dots1::GenerationOutput generate(const dots1::GenerationInput& input, const dots1::GenerationConfig& options,
                                   const dots1::TokenCallback& on_token) override {
    return dots1::generate(model_, input, options, on_token);
  }

  void new_cache(int64_t tokens) override {
    cache_ = std::make_shared<GModel::Cache>(model_.make_cache(1));
    cache_->reserve(tokens);
    synchronize();
  }

  double prefill(const std::vector<int64_t>& ids, int64_t ubatch) override {
    synchronize();
    const auto t0 = Clock::now();
    for (size_t at = 0; at < ids.size(); at += static_cast<size_t>(ubatch)) {
      const size_t end = std::min(ids.size(), at + static_cast<size_t>(ubatch));
      auto in = dots1::ForwardInput::from_ids({std::vector<int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(at), ids.begin() + static_cast<std::ptrdiff_t>(end))});
      in.logits_to_keep = 1;
      in.logits_on_backend = true;
      model_.forward(in, cache_);  // as generate()'s prefill: the last position's logits, on the device
    }
    synchronize();
    return since(t0);
  }

  double decode(const std::vector<int64_t>& ids) override {
    dots1::ForwardInput in;
    in.batch = 1;
    in.seq = 1;
    in.input_ids = {0};
    in.logits_to_keep = 1;
    in.logits_on_backend = true;
    // each step as generate()'s greedy step: the forward, then the token chosen on the device (8 bytes back)
    dots1::ThrustTokenSelector greedy(dots1::ResolvedGenerationConfig{}, model_.config().vocab_size);
    dots1::SamplingRng rng(0);
    const std::vector<std::vector<int64_t>> history(1);
    const std::vector<int64_t> no_pads = {0};
    synchronize();
    const auto t0 = Clock::now();
    for (int64_t id : ids) {
      in.input_ids[0] = id;
      greedy.select(*model_.forward(in, cache_).backend_logits, 1, history, no_pads, rng);
    }
    synchronize();
    return since(t0);
  }

 private:
  GModel model_;
  size_t weight_bytes_;
  std::shared_ptr<GModel::Cache> cache_;
};

size_t device_used_bytes() {
  size_t free = 0, total = 0;
  dots1::thrust_detail::cuda::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return total - free;
}

}  // namespace

std::unique_ptr<Model> load_pretrained(const std::string& dir, dots1::WeightFormat format) {
  check_device();
  const size_t before = device_used_bytes();
  const auto checkpoint = dots1::Checkpoint::open(dir);
  const dots1::ProgressWeightSource progress(checkpoint, dots1::terminal_progress_bar());
  GModel model(checkpoint.config(), progress, format);
  synchronize();
  return std::make_unique<CudaModel>(std::move(model), device_used_bytes() - before);
}

std::unique_ptr<Model> load_random(const dots1::Dots1Config& config, uint64_t seed, dots1::WeightFormat format, int threads) {
  check_device();
  const size_t before = device_used_bytes();
  GModel model = [&] {
    const dots1::RandomWeights random(GModel::describe(config), seed, format);
    return GModel(config, dots1_cli::PreloadedWeights(random, threads));
  }();
  synchronize();
  return std::make_unique<CudaModel>(std::move(model), device_used_bytes() - before);
}

}  // namespace dots1_cli::gpu

/// The plugin's entry point, found by gpu_model_loader.cpp with dlsym.
extern "C" __attribute__((visibility("default"))) const dots1_cli::gpu::PluginApi* dots1_cuda_plugin_api() {
  static const dots1_cli::gpu::PluginApi api{dots1_cli::gpu::PluginApi::kVersion, &dots1_cli::gpu::load_pretrained,
                                             &dots1_cli::gpu::load_random};
  return &api;
}
