// dots1 generate --model DIR (--prompt TEXT | --ids 1,2,3) [--max-new-tokens N] [--temperature T] [--top-k K]
//                [--top-p P] [--min-p M] [--repetition-penalty R] [--seed S] [--greedy] [--json]
// Generates a continuation of one prompt on the CPU with HF's rules (dots1/generation.hpp) and streams it
// to stdout: text for --prompt (decoded incrementally, so multi-byte UTF-8 characters print whole), ids for
// --ids. --json prints only the generated ids, as one JSON array, at the end. One line of timing goes to
// stderr. Options not given come from the checkpoint's generation_config.json, then HF's defaults.
#include <chrono>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <dots1/eigen.hpp>
#include <dots1/generation.hpp>
#include <dots1/tokenizer.hpp>

#include "commands.hpp"
#include "load_model.hpp"
#include "sampling_options.hpp"

namespace {

struct GenerateOptions {
  std::string model, prompt, ids;
  dots1_cli::SamplingOptions sampling;
  bool json = false;
};

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || item.find_first_not_of(" \t", used) != std::string::npos)
      throw dots1::InputError("--ids: '" + item + "' is not an integer (expected a comma-separated list such as 1,2,3)");
    ids.push_back(v);
  }
  if (ids.empty()) throw dots1::InputError("--ids: no ids given");
  return ids;
}

void run_generate(const GenerateOptions& o) {
  auto model = dots1_cli::load_cpu_model(o.model);
  const auto options = o.sampling.resolve_for(o.model, model.config());

  std::optional<dots1::Tokenizer> tokenizer;
  std::vector<int64_t> prompt;
  if (!o.prompt.empty()) {
    tokenizer = dots1::Tokenizer::from_folder(o.model);
    for (int32_t id : tokenizer->encode(o.prompt)) prompt.push_back(id);
    if (prompt.empty()) throw dots1::InputError("--prompt: the text encodes to no tokens");
  } else {
    prompt = parse_ids(o.ids);
  }

  std::optional<dots1::DecodeStream> text;
  if (tokenizer && !o.json) text.emplace(*tokenizer, /*skip_special=*/true);
  bool first = true;
  auto stream = [&](int64_t, int64_t token) {
    if (o.json) return;  // stdout carries only the final array
    if (text) {
      if (auto piece = text->step(static_cast<int32_t>(token))) std::fputs(piece->c_str(), stdout);
    } else {
      std::printf(first ? "%lld" : " %lld", static_cast<long long>(token));
    }
    first = false;
    std::fflush(stdout);
  };
  const auto out = dots1::generate(model, dots1::GenerationInput::from_ids(prompt), options, stream);

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
  cmd->callback([o, prompt, ids] {
    if (prompt->count() == 0 && ids->count() == 0) throw CLI::RequiredError("--prompt or --ids");
    run_generate(*o);
  });
}

dots1_cli::RegisterCommand registered(40, add_generate_command);

}  // namespace
