// The sampling and length options shared by `dots1 generate` and `dots1 chat`.
#pragma once

#include <cstdint>
#include <optional>

#include <CLI/CLI.hpp>

#include <dots1/generation.hpp>

#include "integer_options.hpp"
#include "tool_support.hpp"

namespace dots1_cli {

struct SamplingOptions {
  std::optional<int64_t> max_new_tokens, top_k;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<uint64_t> seed;
  bool greedy = false;

  void add_to(CLI::App* cmd) {
    add_integer_option(cmd, "--max-new-tokens", max_new_tokens, "tokens to generate (default: the checkpoint's, else 20)", {.min = 1});
    cmd->add_option("--temperature", temperature, "sampling temperature (> 0); implies sampling");
    add_integer_option(cmd, "--top-k", top_k, "keep the k most probable tokens (0 = off; HF default 50); implies sampling", {.min = 0});
    cmd->add_option("--top-p", top_p, "nucleus sampling mass in (0, 1]; implies sampling");
    cmd->add_option("--min-p", min_p, "drop tokens below min_p x the top probability; implies sampling");
    cmd->add_option("--repetition-penalty", repetition_penalty, "penalty (> 0) for tokens already in the sequence");
    add_integer_option(cmd, "--seed", seed, "seed for reproducible sampling (0 to 2^64 - 1); implies sampling");
    cmd->add_flag("--greedy", greedy, "greedy decoding, whatever the sampling options and the checkpoint say");
  }

  /// The user's options over the checkpoint's generation_config.json (then HF's defaults). Asking for a
  /// sampling option means sampling; --greedy turns it off; otherwise the checkpoint decides. The new tokens
  /// must fit the model's context, or, with `past_context` (generate --context-limit warn: on past it, as HF
  /// goes on), the positions RoPE computes exactly (2^24).
  dots1::GenerationConfig resolve_for(const std::string& model_dir, const dots1::Dots1Config& config, bool past_context = false) const {
    if (max_new_tokens && !past_context) check_context_length(config, *max_new_tokens, "--max-new-tokens " + std::to_string(*max_new_tokens));
    if (max_new_tokens && past_context && *max_new_tokens > (int64_t(1) << 24))
      throw dots1::InputError("--max-new-tokens " + std::to_string(*max_new_tokens) + ": at most 2^24 positions are computed exactly (RoPE in float32)");
    dots1::GenerationConfig user;
    user.max_new_tokens = max_new_tokens;
    user.temperature = temperature;
    user.top_k = top_k;
    user.top_p = top_p;
    user.min_p = min_p;
    user.repetition_penalty = repetition_penalty;
    user.seed = seed;
    if (greedy) user.do_sample = false;
    else if (temperature || top_k || top_p || min_p || seed) user.do_sample = true;
    return dots1::GenerationConfig::for_checkpoint(model_dir, config).overridden_by(user);
  }
};

}  // namespace dots1_cli
