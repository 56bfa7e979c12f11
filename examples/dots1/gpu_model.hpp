// The dots1 tool's GPU side behind a small interface: `--device cuda` for forward, generate and bench.
//
// The model on the GPU (dots1::GpuModel, the Thrust backend on CUDA with cuBLAS) is instantiated in one
// translation unit, gpu_model.cu, which nvcc compiles into a plugin, libdots1-cuda.so, when the build has
// DOTS1_ENABLE_CUDA=ON. The g++-compiled tool sees only these declarations; gpu_model_loader.cpp implements
// them by loading the plugin on first use (so the tool links no CUDA library), or, in a build without CUDA,
// by answering "this dots1 was built without CUDA".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <dots1/config.hpp>
#include <dots1/generation/generate.hpp>
#include <dots1/io/checkpoint.hpp>
#include <dots1/base/forward_io.hpp>

namespace dots1_cli::gpu {

/// Whether this dots1 was built with the CUDA backend.
bool available();

/// Throws dots1::InputError naming `option` when this dots1 was built without CUDA.
void require(const std::string& option = "--device cuda");

/// The outputs of one forward, copied to the host (no cache is returned).
using ForwardResult = dots1::CausalLMOutput<float, void>;

/// A Dots1ForCausalLM<ThrustBackend<float>> on the current CUDA device. Weight matrices stay in the
/// dtype they are loaded in (a bf16 checkpoint, or WeightFormat::bf16, keeps them bf16 on the device).
class Model {
 public:
  /// A checkpoint folder; `format` converts the weight matrices (e.g. WeightFormat::bf16).
  static std::unique_ptr<Model> from_pretrained(const std::string& dir, dots1::WeightFormat format = dots1::WeightFormat::as_stored);
  /// Deterministic random weights for a config (RandomWeights, generated on the host with `threads`
  /// threads, then uploaded).
  static std::unique_ptr<Model> random(const dots1::Dots1Config& config, uint64_t seed, dots1::WeightFormat format, int threads);

  virtual ~Model() = default;
  virtual const dots1::Dots1Config& config() const = 0;
  /// The device: name, memory, compute capability.
  virtual std::string device() const = 0;
  /// Device memory the weights take.
  virtual size_t weight_bytes() const = 0;

  virtual ForwardResult forward(const dots1::ForwardInput& input) = 0;
  virtual dots1::GenerationOutput generate(const dots1::GenerationInput& input, const dots1::GenerationConfig& options,
                                           const dots1::TokenCallback& on_token = {}) = 0;

  // ---- benchmark loop: one batch-1 cache held by the model, every call synchronised with the device
  /// A fresh cache with room for `tokens` tokens.
  virtual void new_cache(int64_t tokens) = 0;
  /// Prefills `ids` into the cache in forwards of at most `ubatch` tokens (logits of the last position
  /// only, as generate() asks); returns the wall seconds.
  virtual double prefill(const std::vector<int64_t>& ids, int64_t ubatch) = 0;
  /// One one-token forward per id through the cache, each followed by a greedy token choice on the device
  /// (as generate() steps); returns the wall seconds.
  virtual double decode(const std::vector<int64_t>& ids) = 0;
};

/// What the plugin exports: `extern "C" const PluginApi* dots1_cuda_plugin_api()`. The tool and the plugin
/// must come from the same build (they share Model's layout); kVersion changes with this interface.
struct PluginApi {
  static constexpr int kVersion = 1;
  int version = kVersion;
  std::unique_ptr<Model> (*from_pretrained)(const std::string& dir, dots1::WeightFormat format) = nullptr;
  std::unique_ptr<Model> (*random)(const dots1::Dots1Config& config, uint64_t seed, dots1::WeightFormat format, int threads) = nullptr;
};
inline constexpr const char* kPluginFile = "libdots1-cuda.so";
inline constexpr const char* kPluginEntry = "dots1_cuda_plugin_api";

}  // namespace dots1_cli::gpu
