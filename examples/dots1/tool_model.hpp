// The model as the dots1 tool's subcommands use it, whatever the device: every subcommand is written once
// against this interface, and each device compiles the model once behind it (cpu_model.cpp for the CPU;
// gpu_model.cu, the CUDA plugin libdots1-cuda.so, for --device cuda: see gpu_model_loader.cpp). So
// `--device cuda` does all that `--device cpu` does (instrument edits and traces, --parallel over NCCL, chat),
// through the same model code, and a change to a block rebuilds one file per device, not every subcommand.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <dots1/base/forward_io.hpp>
#include <dots1/base/tensor_spec.hpp>
#include <dots1/config.hpp>
#include <dots1/generation/generate.hpp>
#include <dots1/generation/generation_config.hpp>
#include <dots1/instrument/intervention.hpp>
#include <dots1/instrument/recorder.hpp>
#include <dots1/parallel/communicator.hpp>
#include <dots1/parallel/plan.hpp>
#include <dots1/tokenizer/chat_format.hpp>
#include <dots1/tokenizer/tokenizer.hpp>

namespace dots1_cli {

/// What to load and how.
struct ModelRequest {
  std::string dir;                    // a checkpoint folder; empty: random weights for `config`
  dots1::Dots1Config config;          // the random weights' config (when `dir` is empty)
  uint64_t seed = 0;                  // and their seed
  int threads = 1;                    // threads generating random weights
  dots1::WeightFormat format = dots1::WeightFormat::as_stored;
  bool progress = true;               // a progress bar on a terminal while loading
  /// A model split across the processes of an MPI run (--parallel): the plan and the run's world, over
  /// which the device's own communicators are built (MPI itself on the CPU, NCCL between GPUs).
  std::optional<dots1::ParallelPlan> plan;
  std::shared_ptr<dots1::Communicator> world;
};

/// A forward's outputs, on the host.
using ForwardResult = dots1::CausalLMOutput<float, void>;

/// A multi-turn chat (dots1::ChatSession) on the model.
class ToolChat {
 public:
  virtual ~ToolChat() = default;
  /// The answer to `user`, streamed through `on_text` as it is generated.
  virtual std::string reply(const std::string& user, const std::function<void(const std::string&)>& on_text) = 0;
  /// False when there is no exchange to take back.
  virtual bool undo() = 0;
  /// nullopt when there is no answer yet.
  virtual std::optional<std::string> regenerate(const std::function<void(const std::string&)>& on_text) = 0;
  virtual void reset() = 0;
  virtual const std::vector<dots1::ChatMessage>& messages() const = 0;
  /// The conversation as rendered so far (what the cache holds).
  virtual const std::string& rendered() const = 0;
  virtual size_t turns() const = 0;
  virtual int64_t cached_tokens() const = 0;
  virtual dots1::FinishReason last_finish_reason() const = 0;
};

class ToolModel {
 public:
  virtual ~ToolModel() = default;
  virtual const dots1::Dots1Config& config() const = 0;
  /// How the model is split (single unless --parallel), with its communication statistics.
  virtual const dots1::Parallel& parallel() const = 0;
  /// "cpu (2 threads)", "NVIDIA H200 (sm_90, 143.8 GB)".
  virtual std::string device() const = 0;
  /// Bytes of the weights this process holds (on the device for a GPU).
  virtual size_t weight_bytes() const = 0;

  /// One forward. `edit` and `record` (each may be null) run as dots1::Chain{*edit, *record}.
  virtual ForwardResult forward(const dots1::ForwardInput& input, dots1::Intervention* edit = nullptr, dots1::Recorder* record = nullptr) = 0;
  /// dots1::generate(), every forward under `edit` when given.
  virtual dots1::GenerationOutput generate(const dots1::GenerationInput& input, const dots1::GenerationConfig& options,
                                           const dots1::TokenCallback& on_token = {}, dots1::Intervention* edit = nullptr) = 0;
  /// A chat in `format`, answers with `options`.
  virtual std::unique_ptr<ToolChat> chat(const dots1::Tokenizer& tokenizer, dots1::ChatFormat format, dots1::GenerationConfig options,
                                         std::optional<std::string> system) = 0;

  // ---- the benchmark's loop: one batch-1 cache held by the model; each call ends with the device idle
  /// A fresh cache with room for `tokens` tokens.
  virtual void new_cache(int64_t tokens) = 0;
  /// Prefills `ids` into the cache in forwards of at most `ubatch` tokens (the last position's logits
  /// only, as generate()'s prefill); returns the wall seconds.
  virtual double prefill(const std::vector<int64_t>& ids, int64_t ubatch) = 0;
  /// One one-token forward per id through the cache, each followed by the greedy choice of a token where
  /// the logits are (as generate() steps); returns the wall seconds.
  virtual double decode(const std::vector<int64_t>& ids) = 0;
};

/// The model on `device` ("cpu" or "cuda"): the CPU model, or the CUDA plugin's.
std::unique_ptr<ToolModel> load_model(const std::string& device, const ModelRequest& request);

/// The CPU model (cpu_model.cpp).
std::unique_ptr<ToolModel> load_cpu_model(const ModelRequest& request);

}  // namespace dots1_cli
