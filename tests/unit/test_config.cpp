// Dots1Config: HF defaults, derived values, both RoPE spellings, JSON round trip and the validation rules.
#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>

#include <filesystem>

#include <dots1/dots1.hpp>

#include "../support/fixtures.hpp"

using dots1::ConfigError;
using dots1::Dots1Config;
using nlohmann::json;

namespace {

json tiny() {
  return json{{"vocab_size", 100}, {"hidden_size", 64}, {"num_hidden_layers", 4}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
              {"n_routed_experts", 8}, {"num_experts_per_tok", 2}, {"n_shared_experts", 1}, {"first_k_dense_replace", 1}};
}

/// Expects ConfigError naming `field` with a message containing `words`.
void expect_error(const json& j, const std::string& field, const std::string& words) {
  try {
    Dots1Config::from_json(j);
    BOOST_ERROR("no ConfigError for field " << field);
  } catch (const ConfigError& e) {
    BOOST_TEST(e.field() == field, "field: got " << e.field() << " (" << e.what() << ")");
    BOOST_TEST(std::string(e.what()).find(words) != std::string::npos, "message '" << e.what() << "' lacks '" << words << "'");
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(hf_defaults) {
  Dots1Config c;
  BOOST_TEST(c.vocab_size == 152064);
  BOOST_TEST(c.hidden_size == 4608);
  BOOST_TEST(c.intermediate_size == 10944);
  BOOST_TEST(c.moe_intermediate_size == 1408);
  BOOST_TEST(c.num_hidden_layers == 62);
  BOOST_TEST(c.num_attention_heads == 32);
  BOOST_TEST(c.kv_heads() == 32);
  BOOST_TEST(c.head_dim() == 144);
  BOOST_TEST(c.rms_norm_eps == 1e-6);
  BOOST_TEST(c.rope.rope_theta == 10000.0);
  BOOST_TEST(c.max_position_embeddings == 2048);
  BOOST_TEST(c.routed_scaling_factor == 1.0);
  BOOST_TEST(c.sliding_window.value() == 4096);
  BOOST_TEST(c.max_window_layers == 62);
  BOOST_TEST(c.first_k_dense_replace == 0);
  BOOST_TEST(!c.n_routed_experts.has_value());
  // A default config cannot build a model: every layer is MoE and the expert counts are null.
  BOOST_CHECK_THROW(c.validate(), ConfigError);
}

BOOST_AUTO_TEST_CASE(derived_values_and_layer_plan) {
  auto j = tiny();
  j["sliding_window"] = 8;
  j["max_window_layers"] = 2;
  const auto c = Dots1Config::from_json(j);
  BOOST_TEST(c.head_dim() == 16);
  BOOST_TEST(c.kv_groups() == 2);
  BOOST_TEST(c.attention_scaling() == 0.25);
  const auto plan = dots1::Dots1::layer_kinds(c);
  BOOST_TEST(plan.size() == 4u);
  BOOST_TEST((plan[0] == dots1::LayerKind{"full_attention", "mlp"}));
  BOOST_TEST((plan[1] == dots1::LayerKind{"full_attention", "moe"}));
  BOOST_TEST((plan[2] == dots1::LayerKind{"sliding_attention", "moe"}));
  BOOST_TEST((plan[3] == dots1::LayerKind{"sliding_attention", "moe"}));
  j["head_dim"] = 32;
  BOOST_TEST(Dots1Config::from_json(j).head_dim() == 32);
  // The real checkpoint's values.
  auto real = j;
  real.update(json{{"hidden_size", 4096}, {"num_attention_heads", 32}, {"num_key_value_heads", 32}, {"head_dim", nullptr}});
  BOOST_TEST(Dots1Config::from_json(real).head_dim() == 128);
}

BOOST_AUTO_TEST_CASE(both_rope_spellings_agree) {
  auto v4 = tiny();
  v4["rope_theta"] = 5e5;
  v4["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 512}};
  auto v4b = tiny();
  v4b["rope_theta"] = 5e5;
  v4b["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 512}};
  auto main = tiny();
  main["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 5e5}, {"factor", 4.0}, {"original_max_position_embeddings", 512}};
  const auto a = Dots1Config::from_json(v4), b = Dots1Config::from_json(v4b), c = Dots1Config::from_json(main);
  BOOST_TEST((a.rope == b.rope));
  BOOST_TEST((a.rope == c.rope));
  BOOST_TEST(a.rope.rope_type == "yarn");
  BOOST_TEST(a.rope.rope_theta == 5e5);
  const auto fa = dots1::compute_rope_frequencies(a), fc = dots1::compute_rope_frequencies(c);
  BOOST_TEST(fa.inv_freq == fc.inv_freq);
  BOOST_TEST(fa.attention_scaling == fc.attention_scaling);
  BOOST_TEST(fa.attention_scaling == static_cast<float>(0.1 * std::log(4.0) + 1.0));
}

BOOST_AUTO_TEST_CASE(default_rope_inverse_frequencies_match_the_spec) {
  auto j = tiny();
  j["hidden_size"] = 4096;
  j["num_attention_heads"] = 32;
  j["num_key_value_heads"] = 32;
  j["rope_theta"] = 1e7;
  const auto f = dots1::compute_rope_frequencies(Dots1Config::from_json(j));
  BOOST_TEST(f.inv_freq.size() == 64u);
  BOOST_TEST(f.inv_freq[0] == 1.0f);
  BOOST_TEST(std::fabs(f.inv_freq[1] - 0.77736503f) < 1e-7);
  BOOST_TEST(std::fabs(f.inv_freq[2] - 0.60429639f) < 1e-7);
  BOOST_TEST(std::fabs(f.inv_freq[63] - 1.2864e-7f) / 1.2864e-7f < 1e-4);
}

BOOST_AUTO_TEST_CASE(json_round_trip_through_a_file) {
  auto j = tiny();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
  j["eos_token_id"] = json::array({5, 7});
  j["scoring_func"] = "noaux_tc";
  j["some_future_key"] = "kept";
  const auto c = Dots1Config::from_json(j);
  const auto path = std::filesystem::temp_directory_path() / "dots1_test_config.json";
  c.save(path);
  const auto d = Dots1Config::load(path);
  BOOST_TEST((d.rope == c.rope));
  BOOST_TEST(d.eos_token_id == (std::vector<int64_t>{5, 7}));
  BOOST_TEST(d.extra["some_future_key"] == "kept");
  BOOST_TEST(d.to_json() == c.to_json());
  std::filesystem::remove(path);
}

BOOST_AUTO_TEST_CASE(the_real_dots_llm1_config_loads) {
  const json real = {{"vocab_size", 152064}, {"hidden_size", 4096}, {"intermediate_size", 10944}, {"moe_intermediate_size", 1408},
                     {"num_hidden_layers", 62}, {"num_attention_heads", 32}, {"num_key_value_heads", 32}, {"n_shared_experts", 2},
                     {"n_routed_experts", 128}, {"num_experts_per_tok", 6}, {"first_k_dense_replace", 1}, {"norm_topk_prob", true},
                     {"routed_scaling_factor", 2.5}, {"rms_norm_eps", 1e-5}, {"rope_theta", 1e7}, {"rope_scaling", nullptr},
                     {"sliding_window", nullptr}, {"max_position_embeddings", 32768}, {"moe_layer_freq", 1}, {"scoring_func", "noaux_tc"},
                     {"topk_method", "noaux_tc"}, {"use_sliding_window", false}, {"eos_token_id", 151643}};
  const auto c = Dots1Config::from_json(real);
  const auto p = dots1::count_parameters(c);
  // spec 1.1: about 142.8 B parameters in all, about 14 B active per token
  BOOST_TEST(p.total > 142.5e9);
  BOOST_TEST(p.total < 143.1e9);
  BOOST_TEST(p.active_per_token > 13.5e9);
  BOOST_TEST(p.active_per_token < 14.5e9);
  BOOST_TEST(dots1::model_tensor_shapes(c).size() == 24231u);  // spec 5
}

BOOST_AUTO_TEST_CASE(validation_names_field_value_and_rule) {
  auto j = tiny();
  j["num_key_value_heads"] = 3;
  expect_error(j, "num_key_value_heads", "divisible");
  j = tiny();
  j["head_dim"] = 15;
  expect_error(j, "head_dim", "even");
  j = tiny();
  j["n_routed_experts"] = nullptr;
  expect_error(j, "n_routed_experts", "MoE");
  j = tiny();
  j["layer_types"] = {"full_attention"};
  expect_error(j, "layer_types", "num_hidden_layers");
  j = tiny();
  j["layer_types"] = {"full_attention", "full_attention", "chunked_attention", "full_attention"};
  expect_error(j, "layer_types", "full_attention");
  j = tiny();
  j["rope_scaling"] = {{"rope_type", "warp"}};
  expect_error(j, "rope_scaling.rope_type", "unknown rope type");
  j = tiny();
  j["rope_scaling"] = {{"rope_type", "linear"}};
  expect_error(j, "rope_scaling.factor", "required");
  j = tiny();
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  expect_error(j, "rope_parameters.low_freq_factor", "required");
  j = tiny();
  j["n_group"] = 3;
  expect_error(j, "n_group", "divide");
  j = tiny();
  j["num_experts_per_tok"] = 9;
  expect_error(j, "num_experts_per_tok", "<=");
  j = tiny();
  j["n_group"] = 4;
  j["topk_group"] = 1;
  j["num_experts_per_tok"] = 3;
  expect_error(j, "num_experts_per_tok", "topk_group");
  j = tiny();
  j["hidden_size"] = -4;
  expect_error(j, "hidden_size", "positive");
  j = tiny();
  j["vocab_size"] = int64_t(1) << 40;
  expect_error(j, "vocab_size", "absurd");
  j = tiny();
  j["hidden_size"] = "64";
  expect_error(j, "hidden_size", "integer");
  j = tiny();
  j["hidden_act"] = "mish";
  expect_error(j, "hidden_act", "unsupported");
  j = tiny();
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  j["partial_rotary_factor"] = 0.5;
  expect_error(j, "partial_rotary_factor", "whole head");
}
