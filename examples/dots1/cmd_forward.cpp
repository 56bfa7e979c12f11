// dots1 forward --model DIR --input IN.json --out OUT.safetensors [--hidden-states] [--attentions] [--parallel ep=N|tp=N|ep=a,tp=b]
//               [--device cpu|cuda]
// One Dots1ForCausalLM forward on the CPU (or, with --device cuda, on the GPU: the same code, tool_model.hpp);
// writes float32 logits [B,S',V], loss (when labels were given),
// hidden_states.{i} and attentions.{i} on request. Under mpirun with --parallel every rank loads its shard
// and rank 0 writes the file.
#include <cstdio>
#include <filesystem>

#include <dots1/base/json_input.hpp>

#include <dots1/io/forward_json.hpp>
#include <dots1/io/safetensors.hpp>

#include "commands.hpp"
#include "parallel_options.hpp"
#include "tool_model.hpp"
#include "tool_support.hpp"

namespace {

struct ForwardOptions {
  std::string model, input, out;
  bool hidden_states = false, attentions = false;
  dots1_cli::ParallelOptions parallel;
  std::string device = "cpu";
};

/// The forward's outputs as a safetensors file.
void write_forward_output(const std::string& path, const dots1_cli::ForwardResult& out) {
  std::vector<dots1::TensorToWrite> tensors;
  tensors.push_back(dots1::TensorToWrite::from<float>("logits", out.logits.shape, out.logits.values));
  if (out.loss) {
    const float loss = static_cast<float>(*out.loss);
    tensors.push_back(dots1::TensorToWrite::from<float>("loss", {}, std::span<const float>(&loss, 1)));
  }
  for (size_t i = 0; i < out.hidden_states.size(); ++i)
    tensors.push_back(dots1::TensorToWrite::from<float>("hidden_states." + std::to_string(i), out.hidden_states[i].shape, out.hidden_states[i].values));
  for (size_t i = 0; i < out.attentions.size(); ++i)
    tensors.push_back(dots1::TensorToWrite::from<float>("attentions." + std::to_string(i), out.attentions[i].shape, out.attentions[i].values));
  dots1::write_safetensors(path, tensors);
}

void run_forward(const ForwardOptions& o) {
  const nlohmann::json j = dots1::io::read_json_file(o.input, "forward input file", dots1::limits::kMaxForwardInputBytes,
                                                     [&](const std::string& problem) { throw dots1::InputError(o.input + ": not valid JSON: " + problem); });
  dots1::ForwardInput input = dots1::forward_input_from_json(j);
  const auto config = dots1::Dots1Config::load(std::filesystem::path(o.model) / "config.json");
  dots1_cli::check_context_length(config, input.seq, "--input (rows of " + std::to_string(input.seq) + " tokens)");
  input.output_hidden_states = o.hidden_states;
  input.output_attentions = o.attentions;
  dots1_cli::ModelRequest request;
  request.dir = o.model;
  o.parallel.request(request, config);
  dots1_cli::on_every_rank(request, [&] {
    const auto model = dots1_cli::load_model(o.device, request);
    const auto out = model->forward(input);
    const auto& par = model->parallel();
    if (par.rank() != 0) return;  // every rank holds the whole output; rank 0 writes it
    write_forward_output(o.out, out);
    std::fprintf(stderr, "dots1 forward: logits [%lld, %lld, %lld]%s written to %s (on %s%s)\n", (long long)out.logits.shape[0],
                 (long long)out.logits.shape[1], (long long)out.logits.shape[2], out.loss ? (", loss " + std::to_string(*out.loss)).c_str() : "",
                 o.out.c_str(), model->device().c_str(), par.is_single() ? "" : (", " + std::to_string(par.size()) + " ranks, " + par.plan().str()).c_str());
  });
}

void add_forward_command(CLI::App& app) {
  auto o = std::make_shared<ForwardOptions>();
  auto* cmd = app.add_subcommand("forward", "Run one forward pass and write logits (and more) to a safetensors file");
  cmd->add_option("--model", o->model, "HF checkpoint folder")->default_val(dots1_cli::default_model_dir());
  cmd->add_option("--input", o->input, "JSON with input_ids [[...]] and optional attention_mask, position_ids, labels, logits_to_keep")->required();
  cmd->add_option("--out", o->out, "output .safetensors")->required();
  cmd->add_flag("--hidden-states", o->hidden_states, "also write hidden_states.{i} (num_hidden_layers + 1 of them)");
  cmd->add_flag("--attentions", o->attentions, "also write attentions.{i} (post-softmax weights)");
  o->parallel.add_to(cmd);
  cmd->add_option("--device", o->device, "cpu, or cuda (the Thrust backend on the GPU; needs a dots1 built with CUDA)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->callback([o] { run_forward(*o); });
}

dots1_cli::RegisterCommand registered(20, add_forward_command);

}  // namespace
