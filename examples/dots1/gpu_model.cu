// The dots1 tool's model on the GPU: the CUDA plugin libdots1-cuda.so, the one translation unit that
// instantiates dots1::GpuModel (Dots1ForCausalLM<ThrustBackend<float>>, Thrust on the CUDA device system,
// cuBLAS) behind tool_model.hpp. Compiled by nvcc only when DOTS1_ENABLE_CUDA is ON (examples/CMakeLists.txt)
// and loaded by the tool on first use of --device cuda (gpu_model_loader.cpp). The subcommands' code is
// the CPU's: tool_model_impl.hpp, with this file's device policy.
#include <cstdio>
#include <string>

#include <cuda_runtime.h>

#include <dots1/cuda.hpp>
#include <dots1/instantiate.hpp>
#if DOTS1_WITH_NCCL
#include <dots1/parallel/nccl.hpp>
#endif

#include "gpu_plugin.hpp"
#include "tool_model_impl.hpp"

DOTS1_INSTANTIATE_MODEL(dots1::CausalLM<dots1::ThrustBackend<float>, dots1::Dots1>)

namespace dots1_cli {

namespace {

struct Cuda {
  static void synchronize() { dots1::thrust_detail::cuda::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }
  static std::string name() {
    int dev = 0;
    cudaGetDevice(&dev);
    cudaDeviceProp p{};
    cudaGetDeviceProperties(&p, dev);
    char b[64];
    std::snprintf(b, sizeof b, " (sm_%d%d, %.1f GB)", p.major, p.minor, static_cast<double>(p.totalGlobalMem) / 1e9);
    return std::string(p.name) + b;
  }
  /// The split model's collectives between GPUs: NCCL, bootstrapped over the run's MPI world.
  static std::shared_ptr<dots1::Communicator> communicator(std::shared_ptr<dots1::Communicator> world) {
#if DOTS1_WITH_NCCL
    return dots1::NcclCommunicator::create(*world);
#else
    (void)world;
    throw dots1::InputError("--device cuda --parallel: this dots1's CUDA plugin was built without NCCL (install NCCL and rebuild)");
#endif
  }
};

void check_device() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0)
    throw dots1::Error(std::string("--device cuda: no CUDA device is available (") + (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") + ")");
}

std::unique_ptr<ToolModel> load(const ModelRequest& request) {
  check_device();
  auto model = load_tool_model<dots1::GpuModel, Cuda>(request);
  Cuda::synchronize();
  return model;
}

}  // namespace

}  // namespace dots1_cli

/// The plugin's entry point, found by gpu_model_loader.cpp with dlsym.
extern "C" __attribute__((visibility("default"))) const dots1_cli::PluginApi* dots1_cuda_plugin_api() {
  static const dots1_cli::PluginApi api{dots1_cli::PluginApi::kVersion, &dots1_cli::load};
  return &api;
}
