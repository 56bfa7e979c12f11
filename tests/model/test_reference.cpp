// The forward pass against HF transformers: every fixture under tests/fixtures/model (made by
// tests/make_model_fixtures.py) is loaded and each run's logits, loss, hidden states and attentions are
// compared with HF's; the cached step sequence is compared with HF's step logits and with our own full
// forward over the same tokens.
#define BOOST_TEST_MODULE reference_forward
#include <boost/test/unit_test.hpp>

#include "../support/backend_under_test.hpp"
#include "../support/reference_checks.hpp"

using namespace dots1_test;
using Model = dots1::Dots1ForCausalLM<TestBackend>;

namespace {
void check_case(const std::string& name) { check_reference_case<Model>(fixtures_dir() / "model" / name); }
}  // namespace

BOOST_AUTO_TEST_CASE(gqa_dense2_padded_batch_hidden_states_attentions_labels) { check_case("gqa_dense2"); }
BOOST_AUTO_TEST_CASE(groups_moe0_fused_experts_packed_embeds) { check_case("groups_moe0"); }
BOOST_AUTO_TEST_CASE(sliding_window_mqa_bias_tied_gelu) { check_case("sliding_mqa"); }
BOOST_AUTO_TEST_CASE(rope_dynamic_runtime_update) { check_case("rope_dynamic"); }
BOOST_AUTO_TEST_CASE(rope_yarn) { check_case("rope_yarn"); }
BOOST_AUTO_TEST_CASE(rope_longrope_long_and_short_factors) { check_case("rope_longrope"); }
BOOST_AUTO_TEST_CASE(rope_llama3) { check_case("rope_llama3"); }
BOOST_AUTO_TEST_CASE(rope_proportional_partial_rotary) { check_case("rope_proportional"); }
