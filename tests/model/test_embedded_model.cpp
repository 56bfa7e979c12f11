// The model shipped in examples/models/kjv-tiny: the C++ tokenizer gives HF's prompt ids, and greedy
// generation gives HF's generate(do_sample=False) continuation token for token (fixture made by
// tests/make_kjv_tiny_fixtures.py with transformers in float32).
#define BOOST_TEST_MODULE embedded_model
#include <boost/test/unit_test.hpp>

#include <dots1/generation.hpp>
#include <dots1/tokenizer.hpp>

#include "../support/backend_under_test.hpp"
#include "../support/fixtures.hpp"

using Model = dots1::Dots1ForCausalLM<dots1_test::TestBackend>;

BOOST_AUTO_TEST_CASE(greedy_continuations_equal_hf) {
  const auto dir = std::filesystem::path(DOTS1_FIXTURES_DIR) / ".." / ".." / "examples" / "models" / "kjv-tiny";
  const auto fixture = dots1_test::read_json(dots1_test::fixtures_dir() / "kjv_tiny" / "greedy.json");
  auto model = Model::from_pretrained(dir);
  const auto tok = dots1::Tokenizer::from_folder(dir);
  auto options = dots1::GenerationConfig::for_checkpoint(dir, model.config());
  dots1::GenerationConfig greedy;
  greedy.do_sample = false;
  greedy.max_new_tokens = fixture["max_new_tokens"].get<int64_t>();
  options = options.overridden_by(greedy);
  for (const auto& c : fixture["cases"]) {
    const std::string prompt = c["prompt"];
    BOOST_TEST_CONTEXT(prompt) {
      const auto ids = tok.encode(prompt);
      const auto want_prompt = c["prompt_ids"].get<std::vector<int32_t>>();
      BOOST_TEST(ids == want_prompt, boost::test_tools::per_element());
      const auto out = dots1::generate(model, dots1::GenerationInput::from_ids(std::vector<int64_t>(ids.begin(), ids.end())), options);
      const auto want = c["output_ids"].get<std::vector<int64_t>>();
      BOOST_TEST(out.sequences[0] == want, boost::test_tools::per_element());
      const auto generated = out.generated(0);
      BOOST_TEST_MESSAGE(prompt << tok.decode(std::vector<int32_t>(generated.begin(), generated.end())));
    }
  }
}
