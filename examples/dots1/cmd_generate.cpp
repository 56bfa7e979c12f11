// dots1 generate --model DIR (--prompt TEXT [--chat [--system TEXT]] | --ids 1,2,3) [--max-new-tokens N] [--temperature T] [--top-k K]
//                [--top-p P] [--min-p M] [--repetition-penalty R] [--seed S] [--greedy] [--json] [--device cpu|cuda]
//                [--zero-head L:H] [--zero-expert L:E] [--forbid-expert L:E] [--force-experts L:E1,E2,...]
// Generates a continuation of one prompt on the CPU with HF's rules (dots1/generation.hpp) and streams it
// to stdout (the edits, when given, apply to every forward of the generation: what does the model say
// without this head or expert?): text for --prompt (decoded incrementally, so multi-byte UTF-8 characters print whole), ids for
// --ids. --json prints only the generated ids, as one JSON array, at the end. One line of timing goes to
// stderr. Options not given come from the checkpoint's generation_config.json, then HF's defaults.
// --chat wraps the prompt in the checkpoint's chat template as one user turn (after --system) with the
// generation prompt, as ChatFormat encodes it, and also stops at the template's end-of-turn token.
// With --parallel (under mpirun) every rank loads its shard and runs the same generation (sampling with one
// seed, rank 0's, so that every rank draws the same tokens); only rank 0 prints.
#include <algorithm>
#include <chrono>
#include <cstdio>
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
  bool chat = false;                  // --chat: the prompt as one user turn in the model's chat format
  std::optional<std::string> system;  // --system: a system turn before it
  dots1_cli::SamplingOptions sampling;
  bool json = false;
  dots1_cli::ParallelOptions parallel;
  std::string device = "cpu";
  dots1_cli::EditOptions edits;
};


void generate_on_this_rank(const GenerateOptions& o, const std::shared_ptr<const dots1::Parallel>& par);

// --chat: [system,] user in the checkpoint's chat template (or dots.llm1's), with the generation prompt;
// the texts are encoded as plain text (no special tokens in them). Generation also stops at the format's
// end-of-turn tokens.
std::vector<int64_t> chat_prompt_ids(const dots1::Tokenizer& tok, const GenerateOptions& o, dots1::GenerationConfig& options) {
  const auto format = dots1::ChatFormat::for_tokenizer(tok);
  std::vector<dots1::ChatMessage> messages;
  if (o.system) messages.push_back({"system", *o.system});
  messages.push_back({"user", o.prompt});
  const std::vector<int32_t> ids = format.encode(tok, messages, /*add_generation_prompt=*/true);
  for (int32_t id : format.stop_token_ids(tok))
    if (std::find(options.eos_token_id.begin(), options.eos_token_id.end(), id) == options.eos_token_id.end())
      options.eos_token_id.push_back(id);
  return {ids.begin(), ids.end()};
}

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
  // the model on the CPU, or with --device cuda on the GPU (weights as stored)
  std::optional<dots1::CpuModel> cpu;
  std::unique_ptr<dots1_cli::gpu::Model> gpu;
  if (o.device == "cuda") gpu = dots1_cli::gpu::Model::from_pretrained(o.model);
  else cpu.emplace(dots1_cli::load_cpu_model(o.model, par));
  auto options = o.sampling.resolve_for(o.model, gpu ? gpu->config() : cpu->config());
  const bool root = par->rank() == 0;
  if (par->size() > 1 && options.do_sample.value_or(false) && !options.seed) {  // one seed for all ranks
    uint64_t seed = std::random_device{}();
    par->world().broadcast_host(&seed, sizeof seed, 0);
    options.seed = seed;
  }

  std::optional<dots1::Tokenizer> tokenizer;
  std::vector<int64_t> prompt;
  if (!o.prompt.empty()) {
    tokenizer = dots1::Tokenizer::from_folder(o.model);
    if (o.chat) prompt = chat_prompt_ids(*tokenizer, o, options);
    else
      for (int32_t id : tokenizer->encode(o.prompt)) prompt.push_back(id);
    if (prompt.empty()) throw dots1::InputError("--prompt: the text encodes to no tokens");
  } else {
    prompt = dots1_cli::parse_int_list(o.ids, "--ids");
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
  auto* chat = cmd->add_flag("--chat", o->chat, "apply the model's chat template: the prompt as one user turn, then the assistant's turn");
  cmd->add_option("--system", o->system, "with --chat: a system message before the prompt")->needs(chat);
  chat->needs(prompt);
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
