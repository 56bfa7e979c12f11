// dots1 info --model DIR | --config FILE: the config, the layer plan, parameter counts and weight memory.
// With --parallel PLAN --ranks N: what each rank of an N-process split would hold (parallel/plan.hpp).
#include <cstdio>
#include <filesystem>
#include <map>

#include <dots1/dots1.hpp>
#include <dots1/io/memory_plan.hpp>
#include <dots1/parallel/plan.hpp>

#include "commands.hpp"
#include "integer_options.hpp"

namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char s[32];
  std::snprintf(s, sizeof s, "%.2f %s", b, units[u]);
  return s;
}

std::string human_count(double n) {
  char s[32];
  if (n >= 1e9) std::snprintf(s, sizeof s, "%.2f B", n / 1e9);
  else if (n >= 1e6) std::snprintf(s, sizeof s, "%.2f M", n / 1e6);
  else if (n >= 1e3) std::snprintf(s, sizeof s, "%.2f K", n / 1e3);
  else std::snprintf(s, sizeof s, "%.0f", n);
  return s;
}

/// Bytes of a tensor's held part in float32, or in bf16 as released (embeddings, linear weights and the LM
/// head in 2 bytes; routers, norms and biases in 4).
double held_bytes(const dots1::TensorSpec& t, dots1::WeightFormat format) {
  return static_cast<double>(t.held_numel()) * static_cast<double>(dots1::dtype_size(dots1::held_dtype(t.kind, format, dots1::DType::F32)));
}
double total_bytes(const std::vector<dots1::TensorSpec>& tensors, dots1::WeightFormat format) {
  double b = 0;
  for (const auto& t : tensors) b += held_bytes(t, format);
  return b;
}

/// Each rank's weights and KV cache under `spec` over `ranks` processes, from the blocks' declarations.
void print_split(const dots1::Dots1Config& c, const std::string& spec, int ranks) {
  const auto plan = dots1::ParallelPlan::parse(spec, ranks);
  plan.check_config(c);
  const auto whole = dots1::model_tensors(c);
  const double whole32 = total_bytes(whole, dots1::WeightFormat::as_stored), whole16 = total_bytes(whole, dots1::WeightFormat::bf16);
  const double replicated16 = dots1::replicated_weight_bytes(whole, [](const dots1::TensorSpec& t, int64_t n) {
    return static_cast<double>(n) * static_cast<double>(dots1::dtype_size(dots1::held_dtype(t.kind, dots1::WeightFormat::bf16, dots1::DType::F32)));
  });
  std::printf("split over %d ranks (%s): whole model %s in float32, %s in bf16; replicated on every rank %s (bf16)\n", ranks,
              plan.str().c_str(), human_bytes(whole32).c_str(), human_bytes(whole16).c_str(), human_bytes(replicated16).c_str());
  for (int r = 0; r < ranks; ++r) {
    const auto p = dots1::Parallel::planned(plan, r, ranks);
    const auto heads = p->heads(c), kv = p->kv_heads(c), experts = p->experts(c.n_routed_experts.value_or(0));
    const auto mine = dots1::model_tensors(c, p);
    const double w32 = total_bytes(mine, dots1::WeightFormat::as_stored), w16 = total_bytes(mine, dots1::WeightFormat::bf16);
    const double kv_token = 2.0 * (double)c.num_hidden_layers * (double)kv.size() * (double)c.head_dim() * 2.0;
    std::printf("  rank %d: heads [%lld, %lld), KV heads [%lld, %lld), experts [%lld, %lld): weights %s f32 / %s bf16 (%.3f of the model), "
                "KV %s per token in bf16\n",
                r, (long long)heads.begin, (long long)heads.end, (long long)kv.begin, (long long)kv.end, (long long)experts.begin,
                (long long)experts.end, human_bytes(w32).c_str(), human_bytes(w16).c_str(), w16 / whole16, human_bytes(kv_token).c_str());
  }
}

void run_info(const std::string& model_dir, const std::string& config_file) {
  namespace fs = std::filesystem;
  const dots1::Dots1Config c = !config_file.empty() ? dots1::Dots1Config::load(config_file) : dots1::Dots1Config::load(fs::path(model_dir) / "config.json");
  std::printf("config: %s\n", (!config_file.empty() ? config_file : (fs::path(model_dir) / "config.json").string()).c_str());
  std::printf("  vocab %lld, hidden %lld, layers %lld, heads %lld (kv %lld, head_dim %lld), rms_norm_eps %g\n",
              (long long)c.vocab_size, (long long)c.hidden_size, (long long)c.num_hidden_layers, (long long)c.num_attention_heads,
              (long long)c.kv_heads(), (long long)c.head_dim(), c.rms_norm_eps);
  std::printf("  rope: %s, theta %g; max_position_embeddings %lld\n", c.rope.rope_type.c_str(), c.rope.rope_theta,
              (long long)c.max_position_embeddings);
  if (c.any_moe_layer())
    std::printf("  MoE: %lld routed experts of width %lld, top-%lld, %lld shared (fused width %lld), groups %lld keep %lld, "
                "norm_topk_prob %s, routed_scaling_factor %g\n",
                (long long)*c.n_routed_experts, (long long)c.moe_intermediate_size, (long long)*c.num_experts_per_tok,
                (long long)*c.n_shared_experts, (long long)c.shared_intermediate_size(), (long long)c.n_group, (long long)c.topk_group,
                c.norm_topk_prob ? "true" : "false", c.routed_scaling_factor);
  if (c.first_k_dense_replace > 0) std::printf("  dense MLP width %lld on layers < %lld\n", (long long)c.intermediate_size, (long long)c.first_k_dense_replace);
  std::printf("layer plan:\n");
  const auto model = dots1::describe_model(c);
  const auto& kinds = model.layers;
  // Runs of identical layers on one line: "  0-60  full_attention + moe"
  for (size_t i = 0; i < kinds.size();) {
    size_t j = i;
    while (j + 1 < kinds.size() && kinds[j + 1] == kinds[i] && model.windows[j + 1] == model.windows[i]) ++j;
    const std::string window = model.windows[i] > 0 ? " (window " + std::to_string(model.windows[i]) + ")" : "";
    std::printf("  %5s  %s%s + %s\n", (i == j ? std::to_string(i) : std::to_string(i) + "-" + std::to_string(j)).c_str(), kinds[i].attention.c_str(),
                window.c_str(), kinds[i].feed_forward.c_str());
    i = j + 1;
  }
  const auto p = dots1::count_parameters(model.tensors);
  const double embedding = (double)c.vocab_size * (double)c.hidden_size;
  std::printf("parameters: %s total (%lld), %s active per token (%s without the embedding table, of which a token reads one row)\n",
              human_count((double)p.total).c_str(), (long long)p.total, human_count((double)p.active_per_token).c_str(),
              human_count((double)p.active_per_token - embedding).c_str());
  std::printf("weight memory: %s in float32, %s in bfloat16\n", human_bytes(total_bytes(model.tensors, dots1::WeightFormat::as_stored)).c_str(),
              human_bytes(total_bytes(model.tensors, dots1::WeightFormat::bf16)).c_str());
  const double kv_per_token = 2.0 * (double)c.num_hidden_layers * (double)c.kv_heads() * (double)c.head_dim() * 4.0;
  std::printf("KV cache: %s per token in float32 (%s at max_position_embeddings)\n", human_bytes(kv_per_token).c_str(),
              human_bytes(kv_per_token * (double)c.max_position_embeddings).c_str());
  if (!model_dir.empty()) {
    auto ck = dots1::Checkpoint::open(model_dir);
    std::map<std::string, size_t> by_dtype;
    size_t tensors = 0;
    for (const auto& f : ck.files())
      for (const auto& [name, t] : f.tensors()) {
        by_dtype[dots1::dtype_name(t.dtype)] += t.nbytes;
        ++tensors;
      }
    std::printf("checkpoint: %zu file(s), %zu tensors:", ck.files().size(), tensors);
    for (const auto& [d, b] : by_dtype) std::printf(" %s %s", d.c_str(), human_bytes((double)b).c_str());
    std::printf("\n");
  }
  // What loading needs on this machine, against what it has (the check from_pretrained / random make).
  const auto avail = dots1::available_memory();
  auto verdict = [&](const dots1::MemoryNeed& n) {
    if (!avail) return std::string();
    return std::string(n.total() <= *avail ? ": fits" : ": does NOT fit") + " in the " + dots1::format_bytes(*avail) + " available";
  };
  if (!model_dir.empty()) {
    const auto ck = dots1::Checkpoint::open(model_dir);
    const auto held = dots1::describe_model(c, dots1::Parallel::single(), &ck).tensors;  // with the stored dtypes
    auto in_place = [](dots1::DType d) { return d == dots1::DType::F32 || d == dots1::DType::BF16; };  // the CPU backend's
    const auto stored = dots1::loaded_memory(held, dots1::WeightFormat::as_stored, in_place, 4);
    const auto bf16 = dots1::loaded_memory(held, dots1::WeightFormat::bf16, in_place, 4);
    std::printf("memory to load on the CPU: %s as stored (%s memory-mapped in place, %s allocated)%s\n", dots1::format_bytes(stored.total()).c_str(),
                dots1::format_bytes(stored.mapped).c_str(), dots1::format_bytes(stored.owned).c_str(), verdict(stored).c_str());
    std::printf("                           %s with --dtype bf16%s\n", dots1::format_bytes(bf16.total()).c_str(), verdict(bf16).c_str());
  } else {
    const auto f32 = dots1::random_weights_memory(model.tensors, dots1::WeightFormat::as_stored);
    const auto bf16 = dots1::random_weights_memory(model.tensors, dots1::WeightFormat::bf16);
    std::printf("memory for random weights: %s in float32%s\n", dots1::format_bytes(f32.total()).c_str(), verdict(f32).c_str());
    std::printf("                           %s in bfloat16%s\n", dots1::format_bytes(bf16.total()).c_str(), verdict(bf16).c_str());
  }
}

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a checkpoint's config, layer plan, parameter count and memory");
  auto model = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>();
  auto split = std::make_shared<std::string>();
  auto ranks = std::make_shared<int>(0);
  auto* m = cmd->add_option("--model", *model, "HF checkpoint folder");
  cmd->add_option("--config", *config, "a config.json alone (no weights needed)")->excludes(m);
  auto* s = cmd->add_option("--parallel", *split, "also show what each rank holds under this split (ep=N, tp=N or ep=a,tp=b)");
  dots1_cli::add_integer_option(cmd, "--ranks", *ranks, "number of processes of that split", {.min = 1, .max = 1 << 20})->needs(s);
  s->needs(cmd->get_option("--ranks"));
  cmd->callback([model, config, split, ranks] {
    const std::string dir = config->empty() && model->empty() ? dots1_cli::default_model_dir() : *model;
    run_info(dir, *config);
    if (!split->empty()) {
      namespace fs = std::filesystem;
      print_split(!config->empty() ? dots1::Dots1Config::load(*config) : dots1::Dots1Config::load(fs::path(dir) / "config.json"), *split, *ranks);
    }
  });
}

dots1_cli::RegisterCommand registered(10, add_info_command);

}  // namespace
