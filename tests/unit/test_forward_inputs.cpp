// Forward inputs: every inconsistent input raises InputError with a message naming what is wrong, and the
// optional inputs that must not change results (cache_position = its default) do not.
#define BOOST_TEST_MODULE forward_inputs
#include <boost/test/unit_test.hpp>

#include <functional>

#include "../support/backend_under_test.hpp"
#include "../support/fixtures.hpp"

using Model = dots1::Dots1ForCausalLM<dots1_test::TestBackend>;

namespace {

Model& model() {
  static Model m = Model::from_pretrained(dots1_test::fixtures_dir() / "model" / "gqa_dense2");  // vocab 96
  return m;
}

dots1::ForwardInput good() { return dots1::ForwardInput::from_ids({{1, 2, 3}, {4, 5, 6}}); }

struct BadInput {
  const char* name;
  std::function<void(dots1::ForwardInput&)> edit;
  const char* words;
};

}  // namespace

BOOST_AUTO_TEST_CASE(bad_inputs_raise_input_error) {
  const BadInput cases[] = {
      {"id out of range", [](auto& in) { in.input_ids[4] = 96; }, "input_ids[1][1] = 96 is outside the vocabulary [0, 96)"},
      {"negative id", [](auto& in) { in.input_ids[0] = -1; }, "input_ids[0][0] = -1"},
      {"neither ids nor embeds", [](auto& in) { in.input_ids.clear(); }, "exactly one of input_ids and inputs_embeds"},
      {"both ids and embeds", [](auto& in) { in.inputs_embeds.assign(2 * 3 * 48, 0.f); }, "exactly one of input_ids and inputs_embeds"},
      {"embeds of the wrong size", [](auto& in) { in.input_ids.clear(); in.inputs_embeds.assign(7, 0.f); }, "expected batch*seq*hidden = 288"},
      {"empty batch", [](auto& in) { in.batch = 0; in.input_ids.clear(); in.inputs_embeds.assign(1, 0.f); }, "empty batch"},
      {"ids of the wrong size", [](auto& in) { in.input_ids.pop_back(); }, "expected batch*seq = 6"},
      {"mask of the wrong shape", [](auto& in) { in.attention_mask = {1, 1, 1}; }, "attention_mask has 3 values, expected batch x (past + seq) = 2 x 3"},
      {"mask not 0/1", [](auto& in) { in.attention_mask = {1, 1, 2, 1, 1, 1}; }, "must be 0 or 1"},
      {"labels of the wrong shape", [](auto& in) { in.labels = {1, 2}; }, "labels has 2 values, expected batch x seq = 6"},
      {"label out of range", [](auto& in) { in.labels = {1, 2, 3, 4, 5, 200}; }, "label 200 is outside the vocabulary"},
      {"labels with logits_to_keep", [](auto& in) { in.labels = {1, 2, 3, 4, 5, 6}; in.logits_to_keep = 1; }, "logits_to_keep = 0"},
      {"negative logits_to_keep", [](auto& in) { in.logits_to_keep = -1; }, "must be >= 0"},
      {"logits_to_keep position", [](auto& in) { in.logits_to_keep = std::vector<int64_t>{5}; }, "outside [-3, 3)"},
      {"position ids of the wrong shape", [](auto& in) { in.position_ids = {0, 1}; }, "position_ids has 2 values"},
      {"negative position", [](auto& in) { in.position_ids = {0, -1, 2}; }, "position id -1"},
      {"cache_position beyond the cache", [](auto& in) { in.cache_position = {5, 6, 7}; }, "the cache holds 0 tokens"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.name) {
      auto in = good();
      c.edit(in);
      try {
        model().forward(in);
        BOOST_ERROR("no InputError");
      } catch (const dots1::InputError& e) {
        BOOST_TEST(std::string(e.what()).find(c.words) != std::string::npos, "message '" << e.what() << "'");
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(cache_batch_mismatch) {
  auto cache = std::make_shared<Model::Cache>(model().make_cache(1));
  BOOST_CHECK_THROW(model().forward(good(), cache), dots1::InputError);
}

BOOST_AUTO_TEST_CASE(default_cache_position_changes_nothing) {
  auto in = good();
  const auto a = model().forward(in).logits.values;
  in.cache_position = {0, 1, 2};
  BOOST_TEST(model().forward(in).logits.values == a);
}

BOOST_AUTO_TEST_CASE(forward_json_errors_name_the_field) {
  auto expect = [](const char* text, const char* words) {
    try {
      dots1::forward_input_from_json(nlohmann::json::parse(text));
      BOOST_ERROR("no InputError for " << text);
    } catch (const dots1::InputError& e) {
      BOOST_TEST(std::string(e.what()).find(words) != std::string::npos, "message '" << e.what() << "'");
    }
  };
  expect(R"({"attention_mask": [[1]]})", "missing 'input_ids'");
  expect(R"({"input_ids": [[1, 2], [3]]})", "different lengths");
  expect(R"({"input_ids": [[1, 2.5]]})", "expected integers");
  expect(R"({"input_ids": [1, 2]})", "2-D array");
  expect(R"({"input_ids": [[1, 2]], "labels": [[1]]})", "'labels' rows have 1 entries");
  expect(R"({"input_ids": [[1, 2]], "logits_to_keep": "all"})", "'logits_to_keep' must be");
  expect(R"({"input_ids": [[1, 2]], "input_embeds": []})", "unknown field 'input_embeds'");
  const auto in = dots1::forward_input_from_json(nlohmann::json::parse(R"({"input_ids": [[1, 2]], "position_ids": [[0, 1]], "logits_to_keep": [1]})"));
  BOOST_TEST(in.batch == 1);
  BOOST_TEST(in.seq == 2);
  BOOST_TEST(in.position_ids == (std::vector<int64_t>{0, 1}));
}
