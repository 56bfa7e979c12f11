// generate() against HF transformers' generate, token for token: every run of every fixture under
// tests/fixtures/generation/<case>/runs.json (made by tests/make_generation_fixtures.py: greedy, left-padded
// batches, early eos, min length, repetition penalty, default and explicit lengths, a sliding window
// passed by the generation). Also: streaming, seeded sampling, and input errors; HF's scores, logits and
// transition scores (scores.*), stop strings on the embedded model with its tokenizer (stop_strings.json),
// generation past max_position_embeddings (context.json), num_return_sequences, the stopping callback, and
// the KV cache crop.
#define BOOST_TEST_MODULE generation
#include <boost/test/unit_test.hpp>

#include <map>

#include <dots1/generation.hpp>
#include <dots1/tokenizer.hpp>

#include "../support/backend_under_test.hpp"
#include "../support/fixtures.hpp"
#include "../support/reference_checks.hpp"

namespace dots1 {  // Boost.Test prints values of failed checks
inline std::ostream& operator<<(std::ostream& o, FinishReason r) { return o << to_string(r); }
}  // namespace dots1

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

// ---- scores, logits, logprobs (HF's output_scores / output_logits / compute_transition_scores) ----

namespace {

/// One fixture tensor of scores.safetensors as floats, with its shape.
struct FixtureTensor {
  std::vector<float> values;
  std::vector<int64_t> shape;
};
FixtureTensor fixture_tensor(const dots1::SafetensorsFile& file, const std::string& name) {
  const auto& t = file.at(name);
  return {t.to_vector<float>(), std::vector<int64_t>(t.shape.begin(), t.shape.end())};
}

/// Same -inf pattern and finite values within `tol` (our logits match HF's forward to ~1e-5).
void check_close(std::span<const float> ours, std::span<const float> hf, double tol, const std::string& what) {
  BOOST_REQUIRE_EQUAL(ours.size(), hf.size());
  double worst = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    const bool a_inf = std::isinf(ours[i]), b_inf = std::isinf(hf[i]);
    BOOST_TEST(a_inf == b_inf, what << " [" << i << "]: " << ours[i] << " vs HF " << hf[i]);
    if (a_inf && b_inf) BOOST_TEST((ours[i] < 0) == (hf[i] < 0));
    if (!a_inf && !b_inf) worst = std::max(worst, static_cast<double>(std::fabs(ours[i] - hf[i])));
  }
  BOOST_TEST(worst <= tol, what << ": max |diff| " << worst);
}

}  // namespace

BOOST_AUTO_TEST_CASE(scores_logits_transition_scores_and_logprobs_equal_hf) {
  const auto dir = fixtures_dir() / "generation";
  const auto fixture = read_json(dir / "scores.json");
  const auto file = dots1::SafetensorsFile::open(dir / "scores.safetensors");
  auto& model = dense_model();
  const int64_t V = model.config().vocab_size;
  BOOST_REQUIRE(fixture["runs"].size() >= 5);
  for (const auto& run : fixture["runs"]) {
    const std::string name = run["name"];
    BOOST_TEST_CONTEXT(name) {
      auto options = dots1::GenerationConfig::from_json(run["options"]);
      options.output_scores = true;
      options.output_logits = true;
      options.top_logprobs = 5;
      options.seed = 7;
      const auto out = dots1::generate(model, input_of(run), options);
      BOOST_TEST(out.sequences == run["sequences"].get<std::vector<std::vector<int64_t>>>(), "sequences differ from HF generate");
      const auto hf_scores = fixture_tensor(file, name + ".scores"), hf_logits = fixture_tensor(file, name + ".logits");
      BOOST_REQUIRE_EQUAL(hf_scores.shape[0], out.steps);
      BOOST_REQUIRE_EQUAL(hf_scores.shape[1], out.batch);
      BOOST_REQUIRE_EQUAL(static_cast<int64_t>(out.scores.size()), out.steps);
      for (int64_t k = 0; k < out.steps; ++k) {
        const auto step = static_cast<size_t>(k * out.batch * V), n = static_cast<size_t>(out.batch * V);
        check_close(out.scores[static_cast<size_t>(k)], std::span<const float>(hf_scores.values).subspan(step, n), 1e-4,
                    "scores step " + std::to_string(k));
        check_close(out.logits[static_cast<size_t>(k)], std::span<const float>(hf_logits.values).subspan(step, n), 1e-4,
                    "logits step " + std::to_string(k));
      }
      const auto flat = [](const std::vector<std::vector<float>>& m) {
        std::vector<float> f;
        for (const auto& r : m) f.insert(f.end(), r.begin(), r.end());
        return f;
      };
      const auto hf_t = fixture_tensor(file, name + ".transition").values;
      const auto hf_tn = fixture_tensor(file, name + ".transition_normalized").values;
      const auto hf_tln = fixture_tensor(file, name + ".transition_logits_normalized").values;
      check_close(flat(dots1::compute_transition_scores(out, false)), hf_t, 1e-4, "transition scores");
      check_close(flat(dots1::compute_transition_scores(out, true)), hf_tn, 1e-4, "normalized transition scores");
      check_close(flat(dots1::compute_transition_scores(out, true, /*of_logits=*/true)), hf_tln, 1e-4, "normalized over the logits");

      // per-token logprobs: the normalized transition scores of the tokens each row generated, and the top 5
      // of each step: best first, HF's log_softmax values at those ids
      for (int64_t b = 0; b < out.batch; ++b) {
        const auto& lp = out.logprobs[static_cast<size_t>(b)];
        BOOST_REQUIRE_EQUAL(static_cast<int64_t>(lp.size()), out.num_generated[static_cast<size_t>(b)]);
        for (size_t k = 0; k < lp.size(); ++k) {
          BOOST_TEST(lp[k].token == out.generated(b)[k]);
          BOOST_TEST(std::fabs(lp[k].logprob - hf_tn[static_cast<size_t>(b * out.steps) + k]) <= 1e-4);
          BOOST_TEST(!lp[k].top.empty());
          BOOST_TEST(lp[k].top.size() <= 5u);
          for (size_t i = 1; i < lp[k].top.size(); ++i) BOOST_TEST(lp[k].top[i - 1].logprob >= lp[k].top[i].logprob);
          if (!options.do_sample.value_or(false)) BOOST_TEST(lp[k].top[0].token == lp[k].token);  // greedy: the best
          // HF's log_softmax of this step's processed scores at each listed id
          const auto row = std::span<const float>(hf_scores.values).subspan(static_cast<size_t>((k * out.batch + b) * V), static_cast<size_t>(V));
          float mx = -INFINITY;
          for (float x : row) mx = std::max(mx, x);
          double z = 0;
          for (float x : row) z += std::isinf(x) ? 0.0 : std::exp(double(x) - mx);
          for (const auto& alt : lp[k].top)
            BOOST_TEST(std::fabs(alt.logprob - (row[static_cast<size_t>(alt.token)] - mx - std::log(z))) <= 1e-4);
        }
      }
      BOOST_TEST_MESSAGE("  scores/" << name << ": " << out.batch << " rows x " << out.steps << " steps of scores, logits, transition scores and logprobs checked");
    }
  }
  // logprobs of the raw logits instead (OpenAI-style "model" probabilities): HF's normalized transition scores
  // over outputs.logits
  const auto& run = fixture["runs"][1];
  auto options = dots1::GenerationConfig::from_json(run["options"]);
  options.output_logprobs = true;
  options.logprobs_from_logits = true;
  const auto out = dots1::generate(model, input_of(run), options);
  BOOST_TEST(out.scores.empty());  // only what was asked for is kept
  BOOST_TEST(out.logits.empty());
  const auto hf_tln = fixture_tensor(file, std::string(run["name"]) + ".transition_logits_normalized").values;
  for (int64_t b = 0; b < out.batch; ++b)
    for (size_t k = 0; k < out.logprobs[static_cast<size_t>(b)].size(); ++k)
      BOOST_TEST(std::fabs(out.logprobs[static_cast<size_t>(b)][k].logprob - hf_tln[static_cast<size_t>(b * out.steps) + k]) <= 1e-4);

  // HF's error for num_return_sequences with greedy, word for word
  for (const auto& err : fixture["errors"]) {
    try {
      dots1::generate(model, input_of(err), dots1::GenerationConfig::from_json(err["options"]));
      BOOST_ERROR("no GenerationError for " << err["name"]);
    } catch (const dots1::GenerationError& e) {
      BOOST_TEST(std::string(e.what()) == err["message"].get<std::string>());
    }
  }
}

BOOST_AUTO_TEST_CASE(num_return_sequences_interleaves_rows_and_draws_differ) {
  auto& model = dense_model();
  const auto in = dots1::GenerationInput::left_padded({{5, 9, 33}, {17, 2, 40, 41, 8}}, 0);
  dots1::GenerationConfig o;
  o.do_sample = true;
  o.temperature = 1.5;
  o.top_k = 0;
  o.max_new_tokens = 12;
  o.seed = 99;
  o.num_return_sequences = 3;
  const auto out = dots1::generate(model, in, o);
  BOOST_REQUIRE_EQUAL(out.batch, 6);
  for (int64_t r = 0; r < 6; ++r) {  // rows a a a b b b: each holds its prompt
    const auto& want = in.input_ids;
    BOOST_TEST(std::equal(want.begin() + (r / 3) * in.seq, want.begin() + (r / 3 + 1) * in.seq, out.sequences[static_cast<size_t>(r)].begin()));
  }
  BOOST_TEST(out.generated(0) != out.generated(1));  // three draws of one prompt
  // the expanded batch is exactly the batch of the copies: same rows, same random stream
  dots1::GenerationInput copies = dots1::GenerationInput::left_padded({{5, 9, 33}, {5, 9, 33}, {5, 9, 33}, {17, 2, 40, 41, 8},
                                                                       {17, 2, 40, 41, 8}, {17, 2, 40, 41, 8}}, 0);
  o.num_return_sequences.reset();
  BOOST_TEST(dots1::generate(model, copies, o).sequences == out.sequences);
}

// ---- the streaming callback, finish reasons ----

BOOST_AUTO_TEST_CASE(callback_stops_a_row_or_all_and_finish_reasons_say_why) {
  auto& model = dense_model();
  const auto run = read_json(fixtures_dir() / "generation" / "dense_gqa" / "runs.json")["runs"][2];  // eos_early
  BOOST_REQUIRE(run["name"] == "eos_early");
  const auto options = dots1::GenerationConfig::from_json(run["options"]);
  const auto plain = dots1::generate(model, input_of(run), options);
  using R = dots1::FinishReason;
  BOOST_TEST((plain.finish_reasons == std::vector<R>{R::length, R::eos, R::length}));
  // row 2 stopped after its 4th token; the others as before
  std::map<int64_t, int> seen;
  const auto out = dots1::generate(model, input_of(run), options, [&](int64_t row, int64_t) {
    return ++seen[row] == 4 && row == 2 ? dots1::StreamControl::stop_row : dots1::StreamControl::go_on;
  });
  BOOST_TEST((out.finish_reasons == std::vector<R>{R::length, R::eos, R::callback}));
  BOOST_TEST(out.num_generated == (std::vector<int64_t>{10, 2, 4}));
  const auto plain_row2 = plain.generated(2);
  BOOST_TEST(out.generated(2) == std::vector<int64_t>(plain_row2.begin(), plain_row2.begin() + 4));
  BOOST_TEST(out.generated(0) == plain.generated(0));
  for (int64_t s = out.prompt_length + 4; s < out.prompt_length + out.steps; ++s)
    BOOST_TEST(out.sequences[2][static_cast<size_t>(s)] == *options.pad_token_id);  // padded after, as an eos'd row
  // stop_all at the third step: every running row ends there, and the loop with it
  const auto all = dots1::generate(model, input_of(run), options, [&](int64_t, int64_t) -> dots1::StreamControl {
    return dots1::StreamControl::stop_all;
  });
  BOOST_TEST(all.steps == 1);
  BOOST_TEST((all.finish_reasons == std::vector<R>{R::callback, R::callback, R::callback}));
  BOOST_TEST(std::string(dots1::to_string(R::stop_string)) == "stop_string");
}

// ---- past max_position_embeddings ----

BOOST_AUTO_TEST_CASE(past_the_context_hf_warns_and_goes_on_or_the_rows_stop) {
  const auto dir = fixtures_dir() / "generation";
  const auto fixture = read_json(dir / "context.json");
  auto model = Model::from_pretrained(dir / "moe_groups");
  const int64_t context = model.config().max_position_embeddings;
  BOOST_REQUIRE_EQUAL(context, fixture["max_position_embeddings"].get<int64_t>());
  const auto& run = fixture["runs"][0];
  const auto options = dots1::GenerationConfig::from_json(run["options"]);
  const auto out = dots1::generate(model, input_of(run), options);
  BOOST_TEST(out.sequences == run["sequences"].get<std::vector<std::vector<int64_t>>>(), "sequences differ from HF past the context");
  BOOST_TEST(out.warnings == run["warnings"].get<std::vector<std::string>>(), boost::test_tools::per_element());
  BOOST_TEST((out.finish_reasons[0] == dots1::FinishReason::length));
  // ContextLimit::stop: the row ends when it holds max_position_embeddings tokens
  auto stop = options;
  stop.context_limit = dots1::ContextLimit::stop;
  const auto stopped = dots1::generate(model, input_of(run), stop);
  BOOST_TEST((stopped.finish_reasons[0] == dots1::FinishReason::context));
  BOOST_TEST(static_cast<int64_t>(stopped.sequences[0].size()) == context);
  BOOST_TEST(stopped.warnings.empty());
  BOOST_TEST(std::equal(stopped.sequences[0].begin(), stopped.sequences[0].end(), out.sequences[0].begin()));
  BOOST_CHECK_THROW(dots1::generate(model, dots1::GenerationInput::from_ids(std::vector<int64_t>(static_cast<size_t>(context), 3)), stop),
                    dots1::InputError);
}

// ---- KV cache crop ----

BOOST_AUTO_TEST_CASE(kv_cache_crop_then_refeed_equals_a_fresh_forward) {
  for (const char* name : {"dense_gqa", "sliding"}) {
    BOOST_TEST_CONTEXT(name) {
      auto model = Model::from_pretrained(fixtures_dir() / "generation" / name);
      const std::vector<int64_t> ids = {5, 9, 33, 17, 2, 40, 41, 8, 12, 60};
      const std::vector<int64_t> other = {7, 7, 21, 3};
      auto logits_of = [&](const std::vector<int64_t>& feed, const std::shared_ptr<Model::Cache>& cache) {
        return model.forward(dots1::ForwardInput::from_ids({feed}), cache).logits.values;
      };
      // fresh: ids[0:2] + other in one forward
      std::vector<int64_t> joined(ids.begin(), ids.begin() + 2);
      joined.insert(joined.end(), other.begin(), other.end());
      const auto fresh = logits_of(joined, nullptr);
      const std::vector<float> fresh_tail(fresh.end() - static_cast<std::ptrdiff_t>(other.size() * 64), fresh.end());

      // within the sliding window (4: layers keep 3 keys), so no layer has dropped any yet
      auto cache = std::make_shared<Model::Cache>(model.make_cache(1));
      logits_of(std::vector<int64_t>(ids.begin(), ids.begin() + 2), cache);
      BOOST_TEST(cache->crop(5));  // nothing to drop: a no-op
      BOOST_TEST(cache->seq_length() == 2);
      logits_of(std::vector<int64_t>(ids.begin() + 2, ids.begin() + 3), cache);
      BOOST_TEST(cache->seq_length() == 3);
      // back to 2 (crop(-1) removes one, HF 5's form), then the other tokens: the fresh forward's logits
      BOOST_TEST(cache->crop(-1));
      BOOST_TEST(cache->seq_length() == 2);
      const auto after = logits_of(other, cache);
      BOOST_TEST(max_abs_diff(after, fresh_tail) <= 1e-5);

      // past the window: a sliding layer has dropped keys, so cropping is refused and changes nothing
      auto long_cache = std::make_shared<Model::Cache>(model.make_cache(1));
      logits_of(ids, long_cache);
      const bool sliding = std::string(name) == "sliding";
      BOOST_TEST(long_cache->crop(2) == !sliding);
      BOOST_TEST(long_cache->seq_length() == (sliding ? 10 : 2));
      if (!sliding) BOOST_TEST(max_abs_diff(logits_of(other, long_cache), fresh_tail) <= 1e-5);
    }
  }
}

// ---- stop strings (HF's StopStringCriteria) on the embedded model with its own tokenizer ----

namespace {

const std::filesystem::path kKjv = std::filesystem::path(DOTS1_FIXTURES_DIR) / ".." / ".." / "examples" / "models" / "kjv-tiny";

std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(stop_strings_stop_where_hf_stops) {
  const auto fixture = read_json(fixtures_dir() / "generation" / "stop_strings.json");
  const auto tok = dots1::Tokenizer::from_folder(kKjv);
  const auto strings = std::make_shared<dots1::TokenStrings>(dots1::TokenStrings::of(tok));
  BOOST_REQUIRE(fixture["matching_mode"] == "byte_level");
  BOOST_TEST((strings->units() == dots1::TokenStrings::Units::bytes));

  // every token's string is HF's clean_tokenizer_vocab bytes
  const auto& hf_bytes = fixture["token_bytes"];
  BOOST_REQUIRE_EQUAL(hf_bytes.size(), strings->size());
  size_t differ = 0;
  for (size_t id = 0; id < hf_bytes.size(); ++id) {
    const std::u32string* ours = strings->at(static_cast<int64_t>(id));
    if (hf_bytes[id].is_null()) {
      differ += ours != nullptr;
      continue;
    }
    const std::string want = unhex(hf_bytes[id].get<std::string>());
    std::u32string want_units;
    for (unsigned char c : want) want_units.push_back(c);
    differ += !ours || *ours != want_units;
  }
  BOOST_TEST(differ == 0u, differ << " token strings differ from HF's");

  // the criterion at every end position of the fixture's sequences
  size_t positions = 0, matches = 0;
  for (const auto& c : fixture["criteria"]) {
    const auto stops = c["stop_strings"].get<std::vector<std::string>>();
    const dots1::StopStringCriteria criteria(stops, *strings);
    const auto ids = c["ids"].get<std::vector<int64_t>>();
    const auto want = c["matches"].get<std::vector<bool>>();
    for (size_t end = 1; end <= ids.size(); ++end) {
      const bool ours = criteria.match(std::span<const int64_t>(ids.data(), end)).has_value();
      BOOST_TEST(ours == want[end - 1], c["stop_strings"].dump() << " after " << end << " tokens: " << ours << ", HF " << want[end - 1]);
      ++positions;
      matches += want[end - 1];
    }
  }
  BOOST_TEST_MESSAGE("  stop-string criterion: " << positions << " positions (" << matches << " matches) as HF");

  // generate(stop_strings=..., tokenizer=...): HF's sequences; rows that stopped on a string say so
  auto model = Model::from_pretrained(kKjv);
  const auto checkpoint = dots1::GenerationConfig::for_checkpoint(kKjv, model.config());
  for (const auto& run : fixture["runs"]) {
    const std::string name = run["name"];
    BOOST_TEST_CONTEXT(name) {
      auto options = checkpoint.overridden_by(dots1::GenerationConfig::from_json(run["options"]));
      if (run["options"].contains("eos_token_id") && run["options"]["eos_token_id"].is_null()) {  // no eos at all
        options.eos_token_id.clear();
        options.pad_token_id.reset();
      }
      auto in = input_of(run);
      BOOST_CHECK_THROW(dots1::generate(model, in, options), dots1::GenerationError);  // stop strings need token strings
      in.token_strings = strings;
      const auto out = dots1::generate(model, in, options);
      const auto want = run["sequences"].get<std::vector<std::vector<int64_t>>>();
      BOOST_TEST(out.sequences == want, "sequences differ from HF generate");
      for (int64_t b = 0; b < out.batch; ++b) {
        const auto reason = out.finish_reasons[static_cast<size_t>(b)];
        const bool stopped = reason == dots1::FinishReason::stop_string;
        BOOST_TEST((stopped || reason == dots1::FinishReason::length || reason == dots1::FinishReason::eos), "row " << b);
        // the text up to the row's last token contains a stop string exactly when it stopped on one
        const auto gen = out.generated(b);
        const std::string text = tok.decode(std::vector<int32_t>(out.sequences[static_cast<size_t>(b)].begin(),
                                                                 out.sequences[static_cast<size_t>(b)].begin() + out.prompt_length + static_cast<int64_t>(gen.size())));
        bool contains = false;
        for (const auto& s : options.stop_strings) contains = contains || text.find(s) != std::string::npos;
        BOOST_TEST(contains == stopped, "row " << b << ": '" << text << "'");
        if (stopped) BOOST_TEST(out.stop_string_index[static_cast<size_t>(b)] >= 0);
      }
      BOOST_TEST_MESSAGE("  stop_strings/" << name << ": " << out.steps << " steps, finish " << dots1::to_string(out.finish_reasons[0]));
    }
  }
}
