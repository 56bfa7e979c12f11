// dots1 trace --model DIR (--prompt TEXT | --ids 1,2,3) --out TRACE.safetensors [--layers 1,3] [--no-residual]
//             [--no-attention] [--logits] [--zero-head L:H] [--zero-expert L:E] [--forbid-expert L:E]
//             [--force-experts L:E1,E2,...]
// One forward over the prompt with a Recorder (dots1/instrument/recorder.hpp), optionally under an
// Intervention (the edits are applied first, so the trace shows the edited model); writes the recording as
// a trace (tensor names in dots1/instrument/trace_io.hpp), loadable with Python's `safetensors`.
#include <cstdio>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <dots1/instrument/intervention.hpp>
#include <dots1/instrument/recorder.hpp>
#include <dots1/instrument/trace_io.hpp>
#include <dots1/base/memory_check.hpp>
#include <dots1/tokenizer.hpp>

#include "commands.hpp"
#include "edit_options.hpp"
#include "tool_model.hpp"
#include "tool_support.hpp"

namespace {

struct TraceOptions {
  std::string model, prompt, ids, out, layers;
  bool no_residual = false, no_attention = false, logits = false;
  dots1_cli::EditOptions edits;
  std::string device = "cpu";
};


void run_trace(const TraceOptions& o) {
  // The prompt, the layers and their lengths first, checked against the model's config before it is loaded.
  const auto config = dots1::Dots1Config::load(std::filesystem::path(o.model) / "config.json");
  std::optional<dots1::Tokenizer> tokenizer;
  if (std::filesystem::exists(std::filesystem::path(o.model) / "tokenizer.json")) tokenizer = dots1::Tokenizer::from_folder(o.model);
  std::vector<int64_t> ids;
  if (!o.prompt.empty()) {
    if (!tokenizer) throw dots1::InputError("--prompt: " + o.model + " has no tokenizer.json (give --ids instead)");
    for (int32_t id : tokenizer->encode(o.prompt)) ids.push_back(id);
    if (ids.empty()) throw dots1::InputError("--prompt: the text encodes to no tokens");
  } else {
    ids = dots1_cli::parse_int_list(o.ids, "--ids", {.min = 0, .max = config.vocab_size - 1});
  }
  dots1_cli::check_context_length(config, static_cast<int64_t>(ids.size()),
                                  (o.prompt.empty() ? "--ids (" : "--prompt (") + std::to_string(ids.size()) + " tokens)");

  dots1::Intervention edit = o.edits.build();
  dots1::RecorderOptions ro;
  ro.residual = !o.no_residual;
  ro.attention = !o.no_attention;
  // A layer the model lacks would silently record nothing.
  if (!o.layers.empty()) ro.layers = dots1_cli::parse_int_list(o.layers, "--layers", {.min = 0, .max = config.num_hidden_layers - 1});
  dots1::Recorder recorder(ro);
  // What the recording will hold (float32, batch 1): the residual stream (3 points) and the attention weights
  // of each recorded layer, the routing of MoE layers, and the logits with --logits.
  {
    const int64_t S = static_cast<int64_t>(ids.size()), L = ro.layers.empty() ? config.num_hidden_layers : static_cast<int64_t>(ro.layers.size());
    uint64_t bytes = dots1::checked_bytes({L, S, 3 * config.hidden_size * (ro.residual ? 1 : 0) + config.num_attention_heads * S * (ro.attention ? 1 : 0) +
                                                     4 * config.n_routed_experts.value_or(0), 4});
    if (o.logits) bytes = dots1::saturating_add(bytes, dots1::checked_bytes({S, config.vocab_size, 4}));
    dots1::check_allocation(2 * bytes, "dots1 trace: recording " + std::to_string(S) + " tokens (held, then written)");
  }

  dots1_cli::ModelRequest request;
  request.dir = o.model;
  const auto model = dots1_cli::load_model(o.device, request);
  auto input = dots1::ForwardInput::from_ids({ids});
  input.use_cache = false;
  const auto out = model->forward(input, edit.empty() ? nullptr : &edit, &recorder);

  dots1::TraceInfo info;
  info.model = std::filesystem::absolute(o.model).lexically_normal().string();
  info.config = model->config().to_json();
  for (auto id : ids) {
    const auto id32 = static_cast<int32_t>(id);
    info.tokens.push_back(tokenizer ? tokenizer->decode(std::span<const int32_t>(&id32, 1)) : "#" + std::to_string(id));
  }
  dots1::write_trace(o.out, recorder.last(), info, o.logits ? &out.logits : nullptr);
  std::error_code no_size;  // --out /dev/null or a pipe has none
  const auto size = std::filesystem::file_size(o.out, no_size);
  std::fprintf(stderr, "dots1 trace: %zu tokens, %zu layers (%zu with a router) recorded to %s (%.1f KiB)\n", ids.size(),
               recorder.last().layers.size(), recorder.last().moe_layers().size(), o.out.c_str(),
               no_size ? 0.0 : static_cast<double>(size) / 1024.0);
}

void add_trace_command(CLI::App& app) {
  auto o = std::make_shared<TraceOptions>();
  auto* cmd = app.add_subcommand("trace", "Record residual stream, attention and routing of one forward into a safetensors trace");
  cmd->add_option("--model", o->model, "HF checkpoint folder")->default_val(dots1_cli::default_model_dir());
  auto* prompt = cmd->add_option("--prompt", o->prompt, "text to trace (tokenized with the model's tokenizer.json)");
  auto* ids = cmd->add_option("--ids", o->ids, "token ids to trace, comma-separated");
  prompt->excludes(ids);
  ids->excludes(prompt);
  cmd->add_option("--out", o->out, "output trace (.safetensors)")->required();
  cmd->add_option("--layers", o->layers, "record only these layers (comma-separated); default all");
  cmd->add_flag("--no-residual", o->no_residual, "do not record the residual stream (resid_pre/mid/post)");
  cmd->add_flag("--no-attention", o->no_attention, "do not record attention weights");
  cmd->add_flag("--logits", o->logits, "also write the logits [1, S, V]");
  cmd->add_option("--device", o->device, "cpu, or cuda (the instruments run on the GPU model too; needs a dots1 built with CUDA)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  o->edits.add_to(cmd);
  cmd->callback([o, prompt, ids] {
    if (prompt->count() == 0 && ids->count() == 0) throw dots1::InputError("dots1 trace: give --prompt TEXT or --ids 1,2,3");
    run_trace(*o);
  });
}

dots1_cli::RegisterCommand registered(24, add_trace_command);

}  // namespace
