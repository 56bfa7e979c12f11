// dots1 forward --model DIR --input IN.json --out OUT.safetensors [--hidden-states] [--attentions]
// One Dots1ForCausalLM forward on the CPU; writes float32 logits [B,S',V], loss (when labels were given),
// hidden_states.{i} and attentions.{i} on request.
#include <cstdio>
#include <fstream>

#include <dots1/eigen.hpp>

#include "commands.hpp"
#include "load_model.hpp"

namespace {

struct ForwardOptions {
  std::string model, input, out;
  bool hidden_states = false, attentions = false;
};

void run_forward(const ForwardOptions& o) {
  std::ifstream in(o.input);
  if (!in) throw dots1::IoError("cannot open input file " + o.input);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw dots1::InputError(o.input + ": not valid JSON: " + e.what());
  }
  dots1::ForwardInput input = dots1::forward_input_from_json(j);
  input.output_hidden_states = o.hidden_states;
  input.output_attentions = o.attentions;
  auto model = dots1_cli::load_cpu_model(o.model);
  const auto out = model.forward(input);
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
  dots1::write_safetensors(o.out, tensors);
  std::fprintf(stderr, "dots1 forward: logits [%lld, %lld, %lld]%s written to %s\n", (long long)out.logits.shape[0], (long long)out.logits.shape[1],
               (long long)out.logits.shape[2], out.loss ? (", loss " + std::to_string(*out.loss)).c_str() : "", o.out.c_str());
}

void add_forward_command(CLI::App& app) {
  auto o = std::make_shared<ForwardOptions>();
  auto* cmd = app.add_subcommand("forward", "Run one forward pass and write logits (and more) to a safetensors file");
  cmd->add_option("--model", o->model, "HF checkpoint folder")->default_val(dots1_cli::default_model_dir());
  cmd->add_option("--input", o->input, "JSON with input_ids [[...]] and optional attention_mask, position_ids, labels, logits_to_keep")->required();
  cmd->add_option("--out", o->out, "output .safetensors")->required();
  cmd->add_flag("--hidden-states", o->hidden_states, "also write hidden_states.{i} (num_hidden_layers + 1 of them)");
  cmd->add_flag("--attentions", o->attentions, "also write attentions.{i} (post-softmax weights)");
  cmd->callback([o] { run_forward(*o); });
}

dots1_cli::RegisterCommand registered(20, add_forward_command);

}  // namespace
