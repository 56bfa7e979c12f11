// dots1 generate --model DIR (--prompt TEXT | --ids 1,2,3) [--max-new-tokens N] [--temperature T] [--top-k K]
//                [--top-p P] [--min-p M] [--repetition-penalty R] [--seed S] [--greedy] [--json] [--device cpu|cuda]
//                [--zero-head L:H] [--zero-expert L:E] [--forbid-expert L:E] [--force-experts L:E1,E2,...]
// Generates a continuation of one prompt on the CPU with HF's rules (dots1/generation.hpp) and streams it
// to stdout (the edits, when given, apply to every forward of the generation: what does the model say
// without this head or expert?): text for --prompt (decoded incrementally, so multi-byte UTF-8 characters print whole), ids for
// --ids. --json prints only the generated ids, as one JSON array, at the end. One line of timing goes to
// stderr. Options not given come from the checkpoint's generation_config.json, then HF's defaults.
// With --parallel (under mpirun) every rank loads its shard and runs the same generation (sampling with one
// seed, rank 0's, so that every rank draws the same tokens); only rank 0 prints.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <dots1/eigen.hpp>
#include <dots1/generation.hpp>
#include <dots1/tokenizer.hpp>

#include "commands.hpp"
#include "edit_options.hpp"
#include "gpu_model.hpp"
#include "load_model.hpp"
#include "parallel_options.hpp"
#include "sampling_options.hpp"
#include "tool_support.hpp"

namespace {

struct GenerateOptions {
  std::string model, prompt, ids;
  dots1_cli::SamplingOptions sampling;
  bool json = false;
  dots1_cli::ParallelOptions parallel;
  std::string device = "cpu";
  dots1_cli::EditOptions edits;
};


void generate_on_this_rank(const GenerateOptions& o, const std::shared_ptr<const dots1::Parallel>& par);

void run_generate(const GenerateOptions& o) {
  if (!o.edits.empty() && (o.device == "cuda" || !o.parallel.spec.empty()))
    throw dots1::InputError("--zero-head/--zero-expert/--forbid-expert/--force-experts: the edits run on the whole model on the CPU "
                            "(not with --device cuda or --parallel)");
  if (o.device == "cuda") {
    if (!o.parallel.spec.empty()) throw dots1::InputError("--device cuda does not combine with --parallel");
    dots1_cli::gpu::require();
    return generate_on_this_rank(o, dots1::Parallel::single());
  }
  const auto par = o.parallel.start(dots1::Checkpoint::open(o.model).config());
  dots1_cli::on_every_rank(*par, [&] { generate_on_this_rank(o, par); });
}

void generate_on_this_rank(const GenerateOptions& o, const std::shared_ptr<const dots1::Parallel>& par) {
  // The prompt and the lengths first, checked against the model's context before anything is loaded.
  const auto config = dots1::Dots1Config::load(std::filesystem::path(o.model) / "config.json");
  std::optional<dots1::Tokenizer> tokenizer;
  std::vector<int64_t> prompt;
  if (!o.prompt.empty()) {
    tokenizer = dots1::Tokenizer::from_folder(o.model);
    for (int32_t id : tokenizer->encode(o.prompt)) prompt.push_back(id);
    if (prompt.empty()) throw dots1::InputError("--prompt: the text encodes to no tokens");
  } else {
    prompt = dots1_cli::parse_int_list(o.ids, "--ids", {.min = 0, .max = config.vocab_size - 1});
  }
  const std::string prompt_what = (o.prompt.empty() ? "--ids (" : "--prompt (") + std::to_string(prompt.size()) + " tokens)";
  dots1_cli::check_context_length(config, static_cast<int64_t>(prompt.size()), prompt_what);
  auto options = o.sampling.resolve_for(o.model, config);
  {
    const auto r = dots1::resolve(options, static_cast<int64_t>(prompt.size()), config.max_position_embeddings, config.vocab_size);
    dots1_cli::check_context_length(config, r.max_length,
                                    prompt_what + " plus " + std::to_string(r.max_length - r.prompt_length) + " new tokens (at most " +
                                        std::to_string(config.max_position_embeddings - r.prompt_length) + " fit; see --max-new-tokens)");
  }

  // the model on the CPU, or with --device cuda on the GPU (weights as stored)
  std::optional<dots1::CpuModel> cpu;
  std::unique_ptr<dots1_cli::gpu::Model> gpu;
  if (o.device == "cuda") gpu = dots1_cli::gpu::Model::from_pretrained(o.model);
  else cpu.emplace(dots1_cli::load_cpu_model(o.model, par));
  const bool root = par->rank() == 0;
  if (par->size() > 1 && options.do_sample.value_or(false) && !options.seed) {  // one seed for all ranks
    uint64_t seed = std::random_device{}();
    par->world().broadcast_host(&seed, sizeof seed, 0);
    options.seed = seed;
  }

  std::optional<dots1::DecodeStream> text;
  if (tokenizer && !o.json) text.emplace(*tokenizer, /*skip_special=*/true);
  bool first = true;
  auto stream = [&](int64_t, int64_t token) {
    if (o.json || !root) return;  // stdout carries only the final array; rank 0 prints
    if (text) {
      if (auto piece = text->step(static_cast<int32_t>(token))) std::fputs(piece->c_str(), stdout);
    } else {
      std::printf(first ? "%lld" : " %lld", static_cast<long long>(token));
    }
    first = false;
    std::fflush(stdout);
  };
  const auto input = dots1::GenerationInput::from_ids(prompt);
  dots1::Intervention edit = o.edits.build();
  const auto out = gpu ? gpu->generate(input, options, stream)
                   : edit.empty() ? dots1::generate(*cpu, input, options, stream)
                                  : dots1::generate(*cpu, input, options, stream, edit);
  if (!root) return;

  if (o.json) {
    std::printf("%s\n", nlohmann::json(out.generated(0)).dump().c_str());
  } else {
    std::printf("\n");
  }
  std::fflush(stdout);
  const auto generated = out.num_generated[0];
  // Generated tokens/s counts every token after the prompt's forward: their selection and the one-token
  // forwards (the first token's logits come from the prompt's forward).
  auto rate = [](double n, double s) { return s > 0 ? n / s : 0.0; };
  std::fprintf(stderr, "dots1 generate: prompt %lld tokens in %.3f s (%.1f tok/s), generated %lld tokens in %.3f s (%.1f tok/s)\n",
               static_cast<long long>(out.prompt_tokens), out.prefill_seconds, rate(static_cast<double>(out.prompt_tokens), out.prefill_seconds),
               static_cast<long long>(generated), out.decode_seconds, rate(static_cast<double>(generated), out.decode_seconds));
}

void add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* cmd = app.add_subcommand("generate", "Generate a continuation of a prompt (greedy or sampled, as HF's generate)");
  cmd->add_option("--model", o->model, "HF checkpoint folder")->default_val(dots1_cli::default_model_dir());
  auto* prompt = cmd->add_option("--prompt", o->prompt, "prompt text (needs the checkpoint's tokenizer.json)");
  auto* ids = cmd->add_option("--ids", o->ids, "prompt token ids, comma-separated (1,2,3)");
  prompt->excludes(ids);
  ids->excludes(prompt);
  o->sampling.add_to(cmd);
  cmd->add_flag("--json", o->json, "print only the generated ids, as one JSON array");
  o->parallel.add_to(cmd);
  o->edits.add_to(cmd);
  cmd->add_option("--device", o->device, "cpu, or cuda (the Thrust backend on the GPU; needs a dots1 built with CUDA)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->callback([o, prompt, ids] {
    if (prompt->count() == 0 && ids->count() == 0) throw CLI::RequiredError("--prompt or --ids");
    run_generate(*o);
  });
}

dots1_cli::RegisterCommand registered(40, add_generate_command);

}  // namespace
