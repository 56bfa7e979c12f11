// The variants of examples/variants/ against HF transformers: Qwen3 (Qwen3ForCausalLM) and Qwen3-MoE
// (Qwen3MoeForCausalLM), composed from dots1's blocks, on every fixture of tests/fixtures/qwen3 (made by
// tests/make_qwen3_fixtures.py: tiny random configs, fp32, eager attention): each run's logits, loss,
// hidden states and attentions within 1e-4 of HF's, the cached steps, and greedy generation token for token.
// Also how their config.json files read (HF's defaults and rules) and what they refuse.
#define BOOST_TEST_MODULE variants_qwen3
#include <boost/test/unit_test.hpp>

#include <variants/qwen3.hpp>
#include <variants/qwen3_moe.hpp>

#include "../support/backend_under_test.hpp"
#include "../support/reference_checks.hpp"

using namespace dots1_test;
using Qwen3 = dots1::CausalLM<TestBackend, dots1::variants::Qwen3>;
using Qwen3Moe = dots1::CausalLM<TestBackend, dots1::variants::Qwen3Moe>;

namespace {

std::filesystem::path qwen3_fixture(const std::string& name) { return fixtures_dir() / "qwen3" / name; }

template <class Model>
void check(const std::string& name) {
  check_reference_case<Model>(qwen3_fixture(name));
  check_generation_runs<Model>(qwen3_fixture(name));
}

std::vector<std::string> feed_forwards(const std::vector<dots1::LayerKind>& kinds) {
  std::vector<std::string> out;
  for (const auto& k : kinds) out.push_back(k.feed_forward);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(qwen3_dense_gqa_head_dim_padding_labels) { check<Qwen3>("qwen3_dense"); }
BOOST_AUTO_TEST_CASE(qwen3_sliding_window_bias_tied) { check<Qwen3>("qwen3_sliding"); }
BOOST_AUTO_TEST_CASE(qwen3_moe_mlp_only_layer_zero) { check<Qwen3Moe>("qwen3_moe"); }
BOOST_AUTO_TEST_CASE(qwen3_moe_sparse_step_two_fused_experts) { check<Qwen3Moe>("qwen3_moe_sparse_step"); }
BOOST_AUTO_TEST_CASE(qwen3_moe_every_layer_slides) { check<Qwen3Moe>("qwen3_moe_sliding"); }

BOOST_AUTO_TEST_CASE(configs_read_with_qwen3s_defaults_and_rules) {
  using dots1::variants::Qwen3Moe;
  using json = nlohmann::json;
  // Qwen3: head_dim defaults to 128 (not hidden / heads); layer_types derived from max_window_layers
  auto q = dots1::variants::Qwen3::read_config(
      json{{"hidden_size", 64}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"num_hidden_layers", 3}, {"use_sliding_window", true}, {"sliding_window", 5}, {"max_window_layers", 2}});
  BOOST_TEST(q.head_dim() == 128);
  BOOST_TEST((q.resolved_layer_types() == std::vector<std::string>{"full_attention", "full_attention", "sliding_attention"}));
  // without use_sliding_window the window does not count (HF sets sliding_window to None)
  q = dots1::variants::Qwen3::read_config(json{{"num_hidden_layers", 2}, {"num_key_value_heads", 8}, {"sliding_window", 5}, {"max_window_layers", 0}});
  BOOST_TEST(!q.sliding_window.has_value());
  BOOST_TEST((q.resolved_layer_types() == std::vector<std::string>{"full_attention", "full_attention"}));
  // Qwen3-MoE: num_experts or num_local_experts; head_dim hidden / heads when absent; the MoE layers
  const json moe = {{"hidden_size", 64}, {"num_attention_heads", 8}, {"num_hidden_layers", 4}, {"num_experts", 6}, {"num_experts_per_tok", 2},
                    {"decoder_sparse_step", 2}, {"mlp_only_layers", {3}}};
  const auto m = Qwen3Moe::read_config(moe);
  BOOST_TEST(*m.n_routed_experts == 6);
  BOOST_TEST(m.head_dim() == 8);
  BOOST_TEST(m.kv_heads() == 4);
  BOOST_TEST((feed_forwards(Qwen3Moe::layer_kinds(m)) == std::vector<std::string>{"mlp", "moe", "mlp", "mlp"}));
  auto with = [&](const char* key, json value) {
    json j = moe;
    j[key] = std::move(value);
    return j;
  };
  BOOST_CHECK_THROW(Qwen3Moe::read_config(with("num_local_experts", 7)), dots1::ConfigError);  // disagrees with num_experts
  BOOST_CHECK_THROW(Qwen3Moe::read_config(with("decoder_sparse_step", 0)), dots1::ConfigError);
  BOOST_CHECK_THROW(Qwen3Moe::read_config(with("mlp_only_layers", json{4})), dots1::ConfigError);
  BOOST_CHECK_THROW(Qwen3Moe::read_config(with("num_experts_per_tok", 7)), dots1::ConfigError);
  // a sliding layer without use_sliding_window (HF's forward would fail): refused
  BOOST_CHECK_THROW(dots1::variants::Qwen3::read_config(json{{"num_hidden_layers", 2}, {"num_key_value_heads", 8}, {"layer_types", {"full_attention", "sliding_attention"}}}),
                    dots1::ConfigError);
}

BOOST_AUTO_TEST_CASE(a_variant_is_described_by_its_blocks) {
  // The tensors of the Qwen3-MoE fixture's model, as its blocks declare them, are exactly the checkpoint's.
  const auto ck = dots1::Checkpoint::open(qwen3_fixture("qwen3_moe"), &dots1::variants::Qwen3Moe::read_config);
  std::vector<std::string> declared, stored = ck.names();
  for (const auto& t : Qwen3Moe::describe(ck.config())) declared.push_back(t.name);
  std::sort(declared.begin(), declared.end());
  BOOST_TEST(declared == stored, boost::test_tools::per_element());
  const auto p = dots1::count_parameters(Qwen3Moe::describe(ck.config()));
  BOOST_TEST(p.routed_expert_parameters == 2 * 8 * 3 * 8 * 32);  // 2 MoE layers x 8 experts x 3 matrices [8, 32]
}
