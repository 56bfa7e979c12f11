// generate() against HF transformers' generate, token for token: every run of every fixture under
// tests/fixtures/generation/<case>/runs.json (made by tests/make_generation_fixtures.py: greedy, left-padded
// batches, early eos, min length, repetition penalty, default and explicit lengths, a sliding window
// passed by the generation). Also: streaming, seeded sampling, and input errors.
#define BOOST_TEST_MODULE generation
#include <boost/test/unit_test.hpp>

#include <map>

#include <dots1/generation.hpp>

#include "../support/backend_under_test.hpp"
#include "../support/fixtures.hpp"
#include "../support/reference_checks.hpp"

using namespace dots1_test;
using Model = dots1::Dots1ForCausalLM<TestBackend>;

namespace {

dots1::GenerationInput input_of(const nlohmann::json& run) { return generation_input_of(run); }

void check_fixture(const std::string& name) { check_generation_runs<Model>(fixtures_dir() / "generation" / name); }

Model& dense_model() {
  static Model model = Model::from_pretrained(fixtures_dir() / "generation" / "dense_gqa");
  return model;
}

}  // namespace

BOOST_AUTO_TEST_CASE(greedy_equals_hf_dense_gqa_padded_batch_eos_min_new_tokens_repetition_lengths) { check_fixture("dense_gqa"); }
BOOST_AUTO_TEST_CASE(greedy_equals_hf_moe_groups_default_length_eos_list_min_length) { check_fixture("moe_groups"); }
BOOST_AUTO_TEST_CASE(greedy_equals_hf_sliding_window_passed) { check_fixture("sliding"); }

BOOST_AUTO_TEST_CASE(eos_finishes_rows_and_pads_them) {
  // eos_early in dense_gqa: row 1 stops after two tokens, the others run to max_new_tokens
  const auto run = read_json(fixtures_dir() / "generation" / "dense_gqa" / "runs.json")["runs"][2];
  BOOST_REQUIRE(run["name"] == "eos_early");
  const auto options = dots1::GenerationConfig::from_json(run["options"]);
  const auto out = dots1::generate(dense_model(), input_of(run), options);
  BOOST_TEST(out.num_generated == (std::vector<int64_t>{10, 2, 10}));
  BOOST_TEST(out.generated(1).back() == options.eos_token_id[0]);
  for (int64_t s = out.prompt_length + 2; s < out.prompt_length + out.steps; ++s) BOOST_TEST(out.sequences[1][static_cast<size_t>(s)] == 0);
  // all rows finished -> the loop stops: one row alone ends after its eos
  dots1::GenerationInput one = dots1::GenerationInput::from_ids(
      std::vector<int64_t>(out.sequences[1].begin(), out.sequences[1].begin() + out.prompt_length));
  const auto single = dots1::generate(dense_model(), one, options);
  BOOST_TEST(single.steps == 2);
  BOOST_TEST(single.generated(0) == out.generated(1));
}

BOOST_AUTO_TEST_CASE(sampling_is_seeded_and_top_k_1_is_greedy) {
  auto& model = dense_model();
  const auto in = dots1::GenerationInput::left_padded({{5, 9, 33}, {17, 2, 40, 41, 8}}, 0);
  dots1::GenerationConfig o;
  o.do_sample = true;
  o.temperature = 1.5;
  o.top_k = 0;
  o.max_new_tokens = 24;
  o.seed = 1234;
  const auto a = dots1::generate(model, in, o), b = dots1::generate(model, in, o);
  BOOST_TEST(a.sequences == b.sequences);
  o.seed = 4321;
  const auto c = dots1::generate(model, in, o);
  BOOST_TEST(a.sequences != c.sequences);
  // top_k = 1 leaves one token: sampling must then give the greedy sequence
  dots1::GenerationConfig greedy;
  greedy.max_new_tokens = 24;
  o.top_k = 1;
  BOOST_TEST(dots1::generate(model, in, o).sequences == dots1::generate(model, in, greedy).sequences);
}

BOOST_AUTO_TEST_CASE(bad_inputs_and_options_raise) {
  auto& model = dense_model();
  dots1::GenerationConfig o;
  o.max_new_tokens = 3;
  BOOST_CHECK_THROW(dots1::generate(model, dots1::GenerationInput::from_ids({}), o), dots1::InputError);
  BOOST_CHECK_THROW(dots1::generate(model, dots1::GenerationInput::from_ids({1, 64}), o), dots1::InputError);  // vocab 64
  auto bad_mask = dots1::GenerationInput::left_padded({{1, 2}, {3}}, 0);
  bad_mask.attention_mask[0] = 2;
  BOOST_CHECK_THROW(dots1::generate(model, bad_mask, o), dots1::InputError);
  auto empty_row = dots1::GenerationInput::left_padded({{1, 2}, {3}}, 0);
  empty_row.attention_mask = {1, 1, 0, 0};
  BOOST_CHECK_THROW(dots1::generate(model, empty_row, o), dots1::InputError);
  o.max_new_tokens = 0;
  BOOST_CHECK_THROW(dots1::generate(model, dots1::GenerationInput::from_ids({1, 2}), o), dots1::GenerationError);
  o.max_new_tokens.reset();
  o.max_length = 2;
  BOOST_CHECK_THROW(dots1::generate(model, dots1::GenerationInput::from_ids({1, 2}), o), dots1::GenerationError);
  o.max_length.reset();
  o.do_sample = true;
  o.temperature = 0.0;
  BOOST_CHECK_THROW(dots1::generate(model, dots1::GenerationInput::from_ids({1, 2}), o), dots1::GenerationError);
}
