// ToolModel for one model type (tool_model.hpp): the subcommands' calls on the library's model, and its
// loading, written once for every device. A device compiles it in one translation unit (cpu_model.cpp; the
// CUDA plugin gpu_model.cu) with a small Device policy:
//   static void synchronize();                                      wait until the device is idle (timing)
//   static std::string name();                                      for messages and the bench header
//   static std::shared_ptr<dots1::Communicator> communicator(world); the collectives of a split model
//                                                                   (the MPI world itself, or NCCL over it)
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <dots1/generation/chat_session.hpp>
#include <dots1/io/load_progress.hpp>
#include <dots1/generation/generate.hpp>
#include <dots1/instrument/instrument.hpp>

#include "tool_model.hpp"
#include "preloaded_weights.hpp"

namespace dots1_cli {

template <class Model, class Device>
class ToolModelOf final : public ToolModel {
 public:
  explicit ToolModelOf(Model model) : model_(std::move(model)) {}

  const dots1::Dots1Config& config() const override { return model_.config(); }
  const dots1::Parallel& parallel() const override { return model_.parallel(); }
  std::string device() const override { return Device::name(); }
  size_t weight_bytes() const override { return model_.weight_bytes(); }

  ForwardResult forward(const dots1::ForwardInput& input, dots1::Intervention* edit, dots1::Recorder* record) override {
    auto out = edit && record ? model_.forward(input, nullptr, dots1::Chain{*edit, *record})
               : edit         ? model_.forward(input, nullptr, *edit)
               : record       ? model_.forward(input, nullptr, *record)
                              : model_.forward(input);
    ForwardResult r;
    r.logits = std::move(out.logits);
    r.loss = out.loss;
    r.last_hidden_state = std::move(out.last_hidden_state);
    r.hidden_states = std::move(out.hidden_states);
    r.attentions = std::move(out.attentions);
    return r;
  }

  dots1::GenerationOutput generate(const dots1::GenerationInput& input, const dots1::GenerationConfig& options, const dots1::TokenCallback& on_token,
                                   dots1::Intervention* edit) override {
    return edit ? dots1::generate(model_, input, options, on_token, *edit) : dots1::generate(model_, input, options, on_token);
  }

  std::unique_ptr<ToolChat> chat(const dots1::Tokenizer& tokenizer, dots1::ChatFormat format, dots1::GenerationConfig options,
                                 std::optional<std::string> system) override {
    return std::make_unique<Chat>(model_, tokenizer, std::move(format), std::move(options), std::move(system));
  }

  void new_cache(int64_t tokens) override {
    cache_ = std::make_shared<typename Model::Cache>(model_.make_cache(1));
    cache_->reserve(tokens);
    Device::synchronize();
  }

  double prefill(const std::vector<int64_t>& ids, int64_t ubatch) override {
    Device::synchronize();
    const auto t0 = Clock::now();
    for (size_t at = 0; at < ids.size(); at += static_cast<size_t>(ubatch)) {
      const size_t end = std::min(ids.size(), at + static_cast<size_t>(ubatch));
      auto in = dots1::ForwardInput::from_ids({std::vector<int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(at), ids.begin() + static_cast<std::ptrdiff_t>(end))});
      in.logits_to_keep = 1;
      in.logits_on_backend = true;  // as generate()'s prefill: the last position's logits, left where they are
      model_.forward(in, cache_);
    }
    Device::synchronize();
    return seconds_since(t0);
  }

  double decode(const std::vector<int64_t>& ids) override {
    dots1::ForwardInput in = dots1::ForwardInput::from_ids({{0}});
    in.logits_to_keep = 1;
    dots1::detail::NextTokenChooser<Model> greedy(model_, dots1::ResolvedGenerationConfig{});
    dots1::SamplingRng rng(0);
    const std::vector<std::vector<int64_t>> history(1);
    const std::vector<int64_t> no_pads = {0};
    Device::synchronize();
    const auto t0 = Clock::now();
    for (int64_t id : ids) {  // each step as generate()'s: the forward, then the token chosen where the logits are
      in.input_ids[0] = id;
      greedy.forward(in, cache_);
      greedy.choose(history, no_pads, rng);
    }
    Device::synchronize();
    return seconds_since(t0);
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

  class Chat final : public ToolChat {
   public:
    Chat(Model& model, const dots1::Tokenizer& tokenizer, dots1::ChatFormat format, dots1::GenerationConfig options, std::optional<std::string> system)
        : session_(model, tokenizer, std::move(format), std::move(options), std::move(system)) {}
    std::string reply(const std::string& user, const std::function<void(const std::string&)>& on_text) override { return session_.reply(user, on_text); }
    bool undo() override { return session_.undo(); }
    std::optional<std::string> regenerate(const std::function<void(const std::string&)>& on_text) override { return session_.regenerate(on_text); }
    void reset() override { session_.reset(); }
    const std::vector<dots1::ChatMessage>& messages() const override { return session_.messages(); }
    const std::string& rendered() const override { return session_.rendered(); }
    size_t turns() const override { return session_.turns(); }
    int64_t cached_tokens() const override { return session_.cached_tokens(); }
    dots1::FinishReason last_finish_reason() const override { return session_.last_finish_reason(); }

   private:
    dots1::ChatSession<Model> session_;
  };

  Model model_;
  std::shared_ptr<typename Model::Cache> cache_;
};

/// The model `request` asks for, on the device: this rank's share of a checkpoint (with a progress bar on
/// a terminal when not split) or random weights, split as the request's plan says.
template <class Model, class Device>
std::unique_ptr<ToolModel> load_tool_model(const ModelRequest& r) {
  using Tool = ToolModelOf<Model, Device>;
  const auto par = r.plan ? dots1::Parallel::create(Device::communicator(r.world), *r.plan) : dots1::Parallel::single();
  if (!r.dir.empty()) {
    const auto ck = dots1::Checkpoint::open(r.dir);
    Model::check_fits(ck, r.format, *par);
    if (par->is_single() && r.progress) {
      const dots1::ProgressWeightSource progress(ck, dots1::terminal_progress_bar());
      return std::make_unique<Tool>(Model(ck.config(), progress, r.format, par));  // the weights keep their file mapping alive
    }
    return std::make_unique<Tool>(Model(ck.config(), ck, r.format, par));
  }
  // random weights, generated in `format` (every tensor of the model, whatever this rank holds)
  const dots1::RandomWeights random(Model::describe(r.config), r.seed, r.format);
  if (!par->is_single()) return std::make_unique<Tool>(Model(r.config, random, dots1::WeightFormat::as_stored, par));  // only this rank's share
  return std::make_unique<Tool>(Model(r.config, PreloadedWeights(random, r.threads)));  // generated on r.threads threads
}

}  // namespace dots1_cli
