// dots1 generate --model DIR (--prompt TEXT | --prompt-file FILE|- | --ids 1,2,3) [sampling options]
//                [--min-new-tokens N] [--stop STR]... [--eos-id ID,...] [--context-limit stop|warn]
//                [--threads N] [--dtype as-stored|f32|bf16] [--device cpu|cuda] [--parallel PLAN]
//                [--json [--top-logprobs N] [--raw-logprobs]]
//                [--zero-head L:H] [--zero-expert L:E] [--forbid-expert L:E] [--force-experts L:E1,E2,...]
// Generates a continuation of one prompt with HF's rules (dots1/generation.hpp) and streams it to stdout:
// text for a text prompt (decoded incrementally, so multi-byte UTF-8 characters print whole), ids for
// --ids. --json prints one JSON object at the end instead (ids, text, finish reason, logprobs on request).
// One line of timing goes to stderr, and so does every warning of the generation. Options not given come
// from the checkpoint's generation_config.json, then HF's defaults. The edits, when given, apply to every
// forward of the generation (what does the model say without this head or expert?).
// --chat wraps the prompt in the checkpoint's chat template as one user turn (after --system) with the
// generation prompt, as ChatFormat encodes it (the texts as plain text: no special tokens in them), and also
// stops at the template's end-of-turn token.
// With --parallel (under mpirun) every rank loads its shard and runs the same generation (sampling with one
// seed, rank 0's, so that every rank draws the same tokens); only rank 0 prints.
#include <omp.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <filesystem>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <dots1/generation.hpp>
#include <dots1/base/input_file.hpp>
#include <dots1/base/limits.hpp>
#include <dots1/tokenizer.hpp>

#include "commands.hpp"
#include "edit_options.hpp"
#include "tool_model.hpp"
#include "parallel_options.hpp"
#include "sampling_options.hpp"
#include "tool_support.hpp"

namespace {

// ---------------------------------------------------------------------------------------------- options

/// Where the prompt comes from: text (--prompt, --prompt-file) or ids (--ids).
struct PromptOptions {
  std::string text, file, ids;
  CLI::Option *text_opt = nullptr, *file_opt = nullptr, *ids_opt = nullptr;

  void add_to(CLI::App* cmd) {
    text_opt = cmd->add_option("--prompt", text, "prompt text (needs the checkpoint's tokenizer.json)");
    file_opt = cmd->add_option("--prompt-file", file, "read the prompt text from FILE, or from stdin with '-' (any length)");
    ids_opt = cmd->add_option("--ids", ids, "prompt token ids, comma-separated (1,2,3)");
    text_opt->excludes(file_opt)->excludes(ids_opt);
    file_opt->excludes(text_opt)->excludes(ids_opt);
    ids_opt->excludes(text_opt)->excludes(file_opt);
  }
  bool given() const { return text_opt->count() + file_opt->count() + ids_opt->count() > 0; }
  bool is_text() const { return ids_opt->count() == 0; }

  /// The prompt text, read whole (stdin or a file of any size: no argument-length limit).
  std::string read_text() const {
    if (text_opt->count()) return text;
    if (file != "-") return dots1::io::read_input_file(file, "prompt file (--prompt-file)", dots1::limits::kMaxTextFileBytes);
    // standard input: read in blocks, up to the same limit
    std::string s;
    char block[1 << 16];
    while (std::cin.read(block, sizeof block) || std::cin.gcount() > 0) {
      s.append(block, static_cast<size_t>(std::cin.gcount()));
      if (s.size() > dots1::limits::kMaxTextFileBytes)
        throw dots1::InputError("--prompt-file -: standard input holds more than " + std::to_string(dots1::limits::kMaxTextFileBytes) +
                                " bytes, the limit of a prompt");
    }
    if (std::cin.bad()) throw dots1::IoError("--prompt-file -: error reading standard input");
    return s;
  }
};

/// C-style escapes in --stop values (\n, \t, \r, \\, \"), so that "\n\n" can be typed on a command line.
std::string unescape(const std::string& s, const std::string& option) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) throw dots1::InputError(option + ": '" + s + "' ends in a lone backslash (write \\\\ for one)");
    switch (s[i]) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case '"': out += '"'; break;
      default: throw dots1::InputError(option + ": unknown escape '\\" + std::string(1, s[i]) + "' in '" + s + "' (\\n \\t \\r \\\\ \\\")");
    }
  }
  return out;
}

/// When to stop besides max_new_tokens: stop strings, eos ids, a minimum length, the context.
struct StopOptions {
  std::vector<std::string> stop;
  std::vector<int64_t> eos_ids;
  std::optional<int64_t> min_new_tokens;
  std::string context_limit = "stop";

  void add_to(CLI::App* cmd) {
    cmd->add_option("--stop", stop, "stop when the text ends with STR (repeatable; HF's stop_strings; escapes \\n \\t \\\\)")
        ->allow_extra_args(false);
    cmd->add_option("--eos-id", eos_ids, "end-of-sequence ids (repeatable or comma-separated), replacing the checkpoint's")
        ->delimiter(',')
        ->allow_extra_args(false);
    cmd->add_option("--min-new-tokens", min_new_tokens, "generate at least N tokens before an eos may end the text");
    cmd->add_option("--context-limit", context_limit,
                    "at max_position_embeddings: stop (the row ends, finish reason 'context'; a prompt that fills the context is "
                    "an error) or warn (HF: go on, with a warning)")
        ->capture_default_str()
        ->check(CLI::IsMember({"stop", "warn"}));
  }
  void apply(dots1::GenerationConfig& g) const {
    for (const auto& s : stop) g.stop_strings.push_back(unescape(s, "--stop"));
    if (!eos_ids.empty()) g.eos_token_id = eos_ids;  // as HF's eos_token_id= argument: the pad id stays the checkpoint's
    if (min_new_tokens) g.min_new_tokens = min_new_tokens;
    g.context_limit = context_limit == "warn" ? dots1::ContextLimit::warn : dots1::ContextLimit::stop;
  }
};

/// What is printed at the end: the streamed text, or one JSON object.
struct OutputOptions {
  bool json = false, raw_logprobs = false;
  std::optional<int64_t> top_logprobs;

  void add_to(CLI::App* cmd) {
    auto* j = cmd->add_flag("--json", json, "print one JSON object at the end: ids, text, finish_reason (and logprobs)");
    cmd->add_option("--top-logprobs", top_logprobs, "with --json: each token's logprob and the N most probable tokens of its step")
        ->needs(j);
    cmd->add_flag("--raw-logprobs", raw_logprobs, "logprobs of the raw logits (default: of the processed scores, as HF's "
                                                  "compute_transition_scores(normalize_logits=True))")
        ->needs(j);
  }
  void apply(dots1::GenerationConfig& g) const {
    if (top_logprobs) g.top_logprobs = *top_logprobs;
    if (raw_logprobs) g.logprobs_from_logits = true;
  }
  bool logprobs() const { return top_logprobs.has_value(); }
};

struct GenerateOptions {
  std::string model;
  PromptOptions prompt;
  bool chat = false;                  // --chat: the prompt as one user turn in the model's chat format
  std::optional<std::string> system;  // --system: a system turn before it
  dots1_cli::SamplingOptions sampling;
  StopOptions stopping;
  OutputOptions output;
  int threads = 0;
  std::string dtype = "as-stored";
  dots1_cli::ParallelOptions parallel;
  std::string device = "cpu";
  dots1_cli::EditOptions edits;
};

dots1::WeightFormat weight_format(const std::string& dtype) {
  if (dtype == "f32") return dots1::WeightFormat::f32;
  if (dtype == "bf16") return dots1::WeightFormat::bf16;
  return dots1::WeightFormat::as_stored;
}

// ---------------------------------------------------------------------------------------------- output

/// A float as JSON with its shortest decimal form (-2.8194656, not the double -2.8194656372070312).
nlohmann::ordered_json json_float(float f) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, f);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

/// The JSON answer of --json.
nlohmann::ordered_json json_result(const dots1::GenerationOutput& out, const dots1::GenerationConfig& options,
                           const std::optional<dots1::Tokenizer>& tok, bool logprobs) {
  using json = nlohmann::ordered_json;  // keys in this order
  const auto ids = out.generated(0);
  auto text_of = [&](std::vector<int64_t> v) { return tok->decode(std::vector<int32_t>(v.begin(), v.end()), /*skip_special=*/true); };
  json j;
  j["ids"] = ids;
  j["text"] = tok ? json(text_of(ids)) : json(nullptr);
  j["finish_reason"] = dots1::to_string(out.finish_reasons[0]);
  const int64_t hit = out.stop_string_index[0];
  j["stop_string"] = hit >= 0 ? json(options.stop_strings[static_cast<size_t>(hit)]) : json(nullptr);
  j["prompt_tokens"] = out.prompt_tokens;
  j["generated_tokens"] = out.num_generated[0];
  j["warnings"] = out.warnings;
  if (logprobs) {
    auto entry = [&](int64_t id, float lp) {
      json e = {{"id", id}, {"logprob", json_float(lp)}};
      if (tok) e["token"] = text_of({id});
      return e;
    };
    json list = json::array();
    for (const auto& g : out.logprobs[0]) {
      json e = entry(g.token, g.logprob);
      json top = json::array();
      for (const auto& alt : g.top) top.push_back(entry(alt.token, alt.logprob));
      e["top_logprobs"] = std::move(top);
      list.push_back(std::move(e));
    }
    j["logprobs"] = std::move(list);
  }
  return j;
}

// ---------------------------------------------------------------------------------------------- running

void generate_on_this_rank(const GenerateOptions& o, dots1_cli::ModelRequest request);

void run_generate(const GenerateOptions& o) {
  if (!o.edits.empty() && !o.parallel.spec.empty())
    throw dots1::InputError("--zero-head/--zero-expert/--forbid-expert/--force-experts: the edits need the whole model in one process "
                            "(not with --parallel)");
  if (o.threads > 0) omp_set_num_threads(o.threads);  // the CPU backend's thread count, as dots1 bench --threads
  dots1_cli::ModelRequest request;
  request.dir = o.model;
  request.format = weight_format(o.dtype);
  o.parallel.request(request, dots1::Dots1Config::load(std::filesystem::path(o.model) / "config.json"));
  dots1_cli::on_every_rank(request, [&] { generate_on_this_rank(o, request); });
}

/// The prompt's ids: the text encoded with the checkpoint's tokenizer, or --ids.
std::vector<int64_t> prompt_ids(const GenerateOptions& o, const std::optional<dots1::Tokenizer>& tokenizer, const dots1::Dots1Config& config) {
  std::vector<int64_t> prompt;
  if (!o.prompt.is_text()) {
    if (o.chat) throw dots1::InputError("--chat: the chat template applies to a text prompt (--prompt or --prompt-file), not to --ids");
    return dots1_cli::parse_int_list(o.prompt.ids, "--ids", {.min = 0, .max = config.vocab_size - 1});
  }
  if (o.chat) {  // [system,] user in the checkpoint's chat template (or dots.llm1's), with the generation prompt
    std::vector<dots1::ChatMessage> messages;
    if (o.system) messages.push_back({"system", *o.system});
    messages.push_back({"user", o.prompt.read_text()});
    for (int32_t id : dots1::ChatFormat::for_tokenizer(*tokenizer).encode(*tokenizer, messages, /*add_generation_prompt=*/true)) prompt.push_back(id);
  } else {
    for (int32_t id : tokenizer->encode(o.prompt.read_text())) prompt.push_back(id);
  }
  if (prompt.empty()) throw dots1::InputError(std::string(o.prompt.file_opt->count() ? "--prompt-file" : "--prompt") + ": the text encodes to no tokens");
  return prompt;
}

void generate_on_this_rank(const GenerateOptions& o, dots1_cli::ModelRequest request) {
  // the prompt first, and the lengths against the model's context (config.json only): a prompt the tokenizer
  // refuses or that cannot fit fails before the model loads
  const auto config = dots1::Dots1Config::load(std::filesystem::path(o.model) / "config.json");
  const bool has_tokenizer = std::filesystem::exists(std::filesystem::path(o.model) / "tokenizer.json");
  std::optional<dots1::Tokenizer> tokenizer;
  if (o.prompt.is_text() || (has_tokenizer && (o.output.json || !o.stopping.stop.empty()))) tokenizer = dots1::Tokenizer::from_folder(o.model);
  const std::vector<int64_t> prompt = prompt_ids(o, tokenizer, config);
  const bool past_context = o.stopping.context_limit != "stop";
  const std::string prompt_what = std::string(!o.prompt.is_text() ? "--ids (" : o.prompt.file_opt->count() ? "--prompt-file (" : "--prompt (") +
                                  std::to_string(prompt.size()) + " tokens)";
  if (!past_context) dots1_cli::check_context_length(config, static_cast<int64_t>(prompt.size()) + 1, prompt_what + " and one new token");
  auto options = o.sampling.resolve_for(o.model, config, past_context);
  o.stopping.apply(options);
  o.output.apply(options);
  if (o.chat)  // the answer also ends at the template's end-of-turn token
    for (int32_t id : dots1::ChatFormat::for_tokenizer(*tokenizer).stop_token_ids(*tokenizer))
      if (std::find(options.eos_token_id.begin(), options.eos_token_id.end(), id) == options.eos_token_id.end()) options.eos_token_id.push_back(id);
  // (a prompt that fits but whose --max-new-tokens would pass the context stops there, finish reason
  // "context"; --context-limit warn goes on past it, as HF does)

  // the model on the CPU, or with --device cuda on the GPU
  const auto model = dots1_cli::load_model(o.device, request);
  const auto& par = model->parallel();
  const bool root = par.rank() == 0;
  if (par.size() > 1 && options.do_sample.value_or(false) && !options.seed) {  // one seed for all ranks
    uint64_t seed = std::random_device{}();
    par.world().broadcast_host(&seed, sizeof seed, 0);
    options.seed = seed;
  }

  auto input = dots1::GenerationInput::from_ids(prompt);
  if (!options.stop_strings.empty()) {
    if (!tokenizer) throw dots1::InputError("--stop: stop strings are matched on the tokens' text, and " + o.model + " has no tokenizer.json");
    input.token_strings = std::make_shared<dots1::TokenStrings>(dots1::TokenStrings::of(*tokenizer));
  }

  std::optional<dots1::DecodeStream> text;
  if (o.prompt.is_text() && !o.output.json) text.emplace(*tokenizer, /*skip_special=*/true);
  bool first = true;
  auto stream = [&](int64_t, int64_t token) {
    if (o.output.json || !root) return;  // stdout carries only the final object; rank 0 prints
    if (text) {
      if (auto piece = text->step(static_cast<int32_t>(token))) std::fputs(piece->c_str(), stdout);
    } else {
      std::printf(first ? "%lld" : " %lld", static_cast<long long>(token));
    }
    first = false;
    std::fflush(stdout);
  };
  dots1::Intervention edit = o.edits.build();
  const auto out = model->generate(input, options, stream, edit.empty() ? nullptr : &edit);
  if (!root) return;

  if (o.output.json) std::printf("%s\n", json_result(out, options, tokenizer, o.output.logprobs()).dump().c_str());
  else std::printf("\n");
  std::fflush(stdout);
  for (const auto& w : out.warnings) std::fprintf(stderr, "dots1 generate: warning: %s\n", w.c_str());
  const auto generated = out.num_generated[0];
  // Generated tokens/s counts every token after the prompt's forward: their selection and the one-token
  // forwards (the first token's logits come from the prompt's forward).
  auto rate = [](double n, double s) { return s > 0 ? n / s : 0.0; };
  std::fprintf(stderr, "dots1 generate: prompt %lld tokens in %.3f s (%.1f tok/s), generated %lld tokens in %.3f s (%.1f tok/s), %s\n",
               static_cast<long long>(out.prompt_tokens), out.prefill_seconds, rate(static_cast<double>(out.prompt_tokens), out.prefill_seconds),
               static_cast<long long>(generated), out.decode_seconds, rate(static_cast<double>(generated), out.decode_seconds),
               dots1::to_string(out.finish_reasons[0]));
}

void add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* cmd = app.add_subcommand("generate", "Generate a continuation of a prompt (greedy or sampled, as HF's generate)");
  cmd->add_option("--model", o->model, "HF checkpoint folder")->default_val(dots1_cli::default_model_dir());
  o->prompt.add_to(cmd);
  auto* chat = cmd->add_flag("--chat", o->chat, "apply the model's chat template: the prompt as one user turn, then the assistant's turn");
  cmd->add_option("--system", o->system, "with --chat: a system message before the prompt")->needs(chat);
  o->sampling.add_to(cmd);
  o->stopping.add_to(cmd);
  o->output.add_to(cmd);
  cmd->add_option("--threads", o->threads, "CPU threads (default: OMP_NUM_THREADS, else all cores)")->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", o->dtype, "weight matrices as stored in the checkpoint, or converted to f32 or bf16 when loading")
      ->capture_default_str()
      ->check(CLI::IsMember({"as-stored", "f32", "bf16"}));
  o->parallel.add_to(cmd);
  o->edits.add_to(cmd);
  cmd->add_option("--device", o->device, "cpu, or cuda (the Thrust backend on the GPU; needs a dots1 built with CUDA)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->callback([o] {
    if (!o->prompt.given()) throw CLI::RequiredError("--prompt, --prompt-file or --ids");
    run_generate(*o);
  });
}

dots1_cli::RegisterCommand registered(40, add_generate_command);

}  // namespace
