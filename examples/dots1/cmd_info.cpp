// dots1 info --model DIR | --config FILE: the config, the layer plan, parameter counts and weight memory.
#include <cstdio>
#include <filesystem>
#include <map>

#include <dots1/dots1.hpp>

#include "commands.hpp"

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
  const auto plan = c.layer_plan();
  // Runs of identical layers on one line: "  0-60  full attention + MoE"
  for (size_t i = 0; i < plan.size();) {
    size_t j = i;
    while (j + 1 < plan.size() && plan[j + 1] == plan[i]) ++j;
    std::printf("  %5s  %s attention + %s\n", (i == j ? std::to_string(i) : std::to_string(i) + "-" + std::to_string(j)).c_str(),
                plan[i].attention == dots1::AttentionKind::sliding ? ("sliding (window " + std::to_string(c.window()) + ")").c_str() : "full",
                plan[i].feed_forward == dots1::FeedForwardKind::moe ? "MoE" : "dense MLP");
    i = j + 1;
  }
  const auto p = dots1::count_parameters(c);
  const double embedding = (double)c.vocab_size * (double)c.hidden_size;
  std::printf("parameters: %s total (%lld), %s active per token (%s without the embedding table, of which a token reads one row)\n",
              human_count((double)p.total).c_str(), (long long)p.total, human_count((double)p.active_per_token).c_str(),
              human_count((double)p.active_per_token - embedding).c_str());
  std::printf("weight memory: %s in float32, %s in bfloat16\n", human_bytes(4.0 * (double)p.total).c_str(), human_bytes(2.0 * (double)p.total).c_str());
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
}

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a checkpoint's config, layer plan, parameter count and memory");
  auto model = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>();
  auto* m = cmd->add_option("--model", *model, "HF checkpoint folder");
  cmd->add_option("--config", *config, "a config.json alone (no weights needed)")->excludes(m);
  cmd->callback([model, config] {
    run_info(config->empty() && model->empty() ? dots1_cli::default_model_dir() : *model, *config);
  });
}

dots1_cli::RegisterCommand registered(10, add_info_command);

}  // namespace
