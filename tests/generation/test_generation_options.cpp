// Generation pieces that need no model: the logits processors against HF's on saved score vectors
// (tests/fixtures/generation/processors.*, made by tests/make_generation_fixtures.py), the sampler's
// reproducibility and distribution (chi-square), and GenerationConfig: JSON, defaults, length rules, errors.
// Built again against the Thrust backend (DOTS1_TEST_THRUST: OpenMP device system here, CUDA on a GPU), it
// also runs the processors and the token choice on the device (ThrustTokenSelector) against HF's fixtures
// and against the host pipeline.
#define BOOST_TEST_MODULE generation_options
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <map>
#include <string>

#include <dots1/generation.hpp>
#include <dots1/io/safetensors.hpp>
#if defined(DOTS1_TEST_THRUST)
#include <cstring>
#include <dots1/backend/thrust/token_selection.hpp>
#endif

#include "../support/fixtures.hpp"

using namespace dots1_test;

namespace {

/// Applies one processor spec of processors.json (type and HF arguments) to row r.
void apply_spec(const nlohmann::json& spec, std::span<float> scores, std::span<const int64_t> ids, int64_t r) {
  const std::string type = spec["type"];
  if (type == "repetition_penalty") {
    const int64_t skip = spec["prompt_ignore_length"].is_null() ? 0 : spec["prompt_ignore_length"][static_cast<size_t>(r)].get<int64_t>();
    dots1::logits::repetition_penalty(scores, ids.subspan(static_cast<size_t>(skip)), spec["penalty"].get<double>());
  } else if (type == "temperature") {
    dots1::logits::temperature(scores, spec["value"].get<double>());
  } else if (type == "top_k") {
    dots1::logits::top_k(scores, spec["value"].get<int64_t>());
  } else if (type == "top_p") {
    dots1::logits::top_p(scores, spec["value"].get<double>());
  } else if (type == "min_p") {
    dots1::logits::min_p(scores, spec["value"].get<double>());
  } else if (type == "min_length") {
    const auto eos = spec["eos"].get<std::vector<int64_t>>();
    dots1::logits::min_length(scores, static_cast<int64_t>(ids.size()), spec["value"].get<int64_t>(), eos);
  } else if (type == "min_new_tokens") {
    const auto eos = spec["eos"].get<std::vector<int64_t>>();
    dots1::logits::min_new_tokens(scores, static_cast<int64_t>(ids.size()), spec["prompt_length"].get<int64_t>(),
                                  spec["value"].get<int64_t>(), eos);
  } else {
    BOOST_FAIL("unknown processor type " << type);
  }
}

/// Upper 0.1% point of chi-square with `dof` degrees of freedom (Wilson-Hilferty; accurate to ~1% here).
double chi2_critical_999(int dof) {
  const double z = 3.0902, k = dof;
  const double c = 1 - 2 / (9 * k) + z * std::sqrt(2 / (9 * k));
  return k * c * c * c;
}

dots1::ResolvedGenerationConfig resolved(const std::string& json, int64_t prompt = 4, int64_t max_pos = 64, int64_t vocab = 100) {
  return dots1::resolve(dots1::GenerationConfig::from_json(nlohmann::json::parse(json)), prompt, max_pos, vocab);
}

/// Runs every case of processors.json through `apply(spec, row, ids, r)` (one processor on one row's
/// float32 scores) and compares with HF's output: the same kept set, kept scores within 1e-6.
template <class Apply>
void check_processors_against_hf(const Apply& apply) {
  const auto dir = fixtures_dir() / "generation";
  const auto cases = read_json(dir / "processors.json")["cases"];
  const auto file = dots1::SafetensorsFile::open(dir / "processors.safetensors");
  const auto& scores_t = file.at("scores");
  const auto scores = scores_t.to_vector<float>();
  const auto ids = file.at("input_ids").to_int64();
  const int64_t R = scores_t.shape[0], V = scores_t.shape[1], L = file.at("input_ids").shape[1];
  BOOST_REQUIRE(cases.size() >= 10);
  for (const auto& c : cases) {
    const std::string name = c["name"];
    const auto want = file.at(name).to_vector<float>();
    int64_t kept = 0;
    double worst = 0;
    for (int64_t r = 0; r < R; ++r) {
      std::vector<float> row(scores.begin() + r * V, scores.begin() + (r + 1) * V);
      const std::span<const int64_t> row_ids(ids.data() + r * L, static_cast<size_t>(L));
      for (const auto& spec : c["processors"]) apply(spec, row, row_ids, r);
      for (int64_t v = 0; v < V; ++v) {
        const float a = row[static_cast<size_t>(v)], b = want[static_cast<size_t>(r * V + v)];
        const bool a_kept = a != dots1::logits::kFiltered, b_kept = b != dots1::logits::kFiltered;
        BOOST_TEST(a_kept == b_kept, name << " row " << r << " token " << v << ": kept " << a_kept << ", HF " << b_kept);
        if (a_kept && b_kept) worst = std::max(worst, static_cast<double>(std::fabs(a - b)));
        kept += a_kept;
      }
    }
    BOOST_TEST_MESSAGE("  " << name << ": " << kept << " kept of " << R * V << ", max |diff| " << worst);
    BOOST_TEST(worst <= 1e-6, name << ": max |diff| " << worst);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(processors_match_hf_exactly) {
  check_processors_against_hf([](const nlohmann::json& spec, std::vector<float>& row, std::span<const int64_t> ids, int64_t r) {
    apply_spec(spec, row, ids, r);
  });
}

#if defined(DOTS1_TEST_THRUST)
// ---- the same processors and token choice where the Thrust backend keeps the logits (on the device)

namespace {

/// Applies one processor spec of processors.json with ThrustTokenSelector's pieces on a device copy of the row.
void apply_spec_on_backend(const nlohmann::json& spec, std::vector<float>& row, std::span<const int64_t> ids, int64_t r) {
  const auto V = static_cast<int64_t>(row.size());
  dots1::ThrustTokenSelector sel(dots1::ResolvedGenerationConfig{}, V);
  sel.load(thrust::device_vector<float>(row.begin(), row.end()));
  const std::string type = spec["type"];
  if (type == "repetition_penalty") {
    const int64_t skip = spec["prompt_ignore_length"].is_null() ? 0 : spec["prompt_ignore_length"][static_cast<size_t>(r)].get<int64_t>();
    sel.repetition_penalty(0, ids.subspan(static_cast<size_t>(skip)), spec["penalty"].get<double>());
  } else if (type == "temperature") {
    sel.temperature(0, spec["value"].get<double>());
  } else if (type == "top_k") {
    sel.top_k(0, spec["value"].get<int64_t>());
  } else if (type == "top_p") {
    sel.top_p(0, spec["value"].get<double>());
  } else if (type == "min_p") {
    sel.min_p(0, spec["value"].get<double>());
  } else if (type == "min_length" || type == "min_new_tokens") {
    const auto eos = spec["eos"].get<std::vector<int64_t>>();
    const int64_t length = static_cast<int64_t>(ids.size()) - (type == "min_new_tokens" ? spec["prompt_length"].get<int64_t>() : 0);
    if (length < spec["value"].get<int64_t>()) sel.filter_ids(0, eos);
  } else {
    BOOST_FAIL("unknown processor type " << type);
  }
  row = sel.scores(0);
}

/// Random score rows with what makes selection hard: ties at the top, -inf tokens, a narrow and a flat
/// distribution.
std::vector<float> hard_rows(int64_t rows, int64_t V, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> s(static_cast<size_t>(rows * V));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = s.data() + r * V;
    const float scale = r % 3 == 0 ? 8.0f : r % 3 == 1 ? 2.0f : 0.25f;
    for (int64_t v = 0; v < V; ++v) row[v] = scale * normal(g);
    if (r % 4 == 1) {  // a tie for the maximum, the later index first in the row
      const auto top = *std::max_element(row, row + V);
      row[V / 3] = row[V / 2] = top + 1.0f;
    }
    if (r % 5 == 2)
      for (int64_t v = 0; v < V; v += 7) row[v] = dots1::logits::kFiltered;
  }
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(backend_processors_match_hf_exactly) { check_processors_against_hf(apply_spec_on_backend); }

BOOST_AUTO_TEST_CASE(backend_selection_equals_the_host_pipeline) {
  // Every option set, on the same rows, histories and random stream: the same processed scores (bit for
  // bit) and the same tokens as LogitsPipeline + argmax_token / sample_token.
  const int64_t rows = 12, V = 3001, L = 9;
  const auto logits = hard_rows(rows, V, 77);
  std::vector<std::vector<int64_t>> sequences(static_cast<size_t>(rows));
  std::vector<int64_t> ignore(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < L; ++i) sequences[static_cast<size_t>(r)].push_back((r * 131 + i * 977) % V);
    sequences[static_cast<size_t>(r)].push_back(V + 5);  // out of the vocabulary: skipped, as HF
    ignore[static_cast<size_t>(r)] = r % 3;
  }
  const char* option_sets[] = {
      R"({})",
      R"({"repetition_penalty": 1.3, "eos_token_id": [5, 17], "min_new_tokens": 4})",
      R"({"do_sample": true})",
      R"({"do_sample": true, "top_k": 0, "temperature": 0.7, "top_p": 0.9})",
      R"({"do_sample": true, "top_k": 0, "top_p": 0.5, "min_p": 0.05, "repetition_penalty": 0.8})",
      R"({"do_sample": true, "top_k": 1})",
      R"({"do_sample": true, "top_k": 7, "temperature": 1.6, "top_p": 0.3})",
      R"({"do_sample": true, "top_k": 0, "temperature": 2.5})",
      R"({"do_sample": true, "top_k": 0, "min_p": 0.3})",
  };
  const thrust::device_vector<float> device_logits(logits.begin(), logits.end());
  for (const char* json : option_sets) {
    BOOST_TEST_CONTEXT(json) {
      const auto rc = resolved(json, L + 1, 1024, V);
      dots1::ThrustTokenSelector selector(rc, V);
      for (uint64_t seed : {1u, 2u, 3u}) {
        dots1::SamplingRng device_rng(seed), host_rng(seed);
        const auto tokens = selector.select(device_logits, rows, std::span<const std::vector<int64_t>>(sequences),
                                            std::span<const int64_t>(ignore), device_rng);
        const dots1::LogitsPipeline pipeline(rc);
        for (int64_t r = 0; r < rows; ++r) {
          std::vector<float> row(logits.begin() + r * V, logits.begin() + (r + 1) * V);
          pipeline(row, sequences[static_cast<size_t>(r)], ignore[static_cast<size_t>(r)]);
          const int64_t want = rc.do_sample ? dots1::sample_token(row, host_rng) : dots1::argmax_token(row);
          BOOST_TEST(tokens[static_cast<size_t>(r)] == want, "row " << r << " seed " << seed);
          const auto processed = selector.scores(r);
          size_t differ = 0;
          for (int64_t v = 0; v < V; ++v) differ += std::memcmp(&processed[static_cast<size_t>(v)], &row[static_cast<size_t>(v)], sizeof(float)) != 0;
          BOOST_TEST(differ == 0u, "row " << r << ": " << differ << " processed scores differ from the host's");
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(backend_selection_errors_match_the_host) {
  const int64_t V = 64;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<std::vector<int64_t>> seq = {{1, 2}};
  const std::vector<int64_t> ignore = {0};
  dots1::SamplingRng rng(1);
  {  // greedy over NaN only
    dots1::ThrustTokenSelector sel(resolved("{}", 2, 64, V), V);
    const thrust::device_vector<float> all_nan(static_cast<size_t>(V), nan);
    BOOST_CHECK_EXCEPTION(sel.select(all_nan, 1, seq, ignore, rng), dots1::GenerationError, [](const auto& e) {
      return std::string(e.what()).find("every next-token score is NaN") != std::string::npos;
    });
    // NaN never wins; the first of the largest does
    std::vector<float> some(static_cast<size_t>(V), 1.0f);
    some[3] = nan, some[10] = 4.0f, some[40] = 4.0f;
    BOOST_TEST(sel.select(thrust::device_vector<float>(some.begin(), some.end()), 1, seq, ignore, rng)[0] == 10);
  }
  {  // sampling with every token filtered
    dots1::ThrustTokenSelector sel(resolved(R"({"do_sample": true})", 2, 64, V), V);
    const thrust::device_vector<float> filtered(static_cast<size_t>(V), dots1::logits::kFiltered);
    BOOST_CHECK_EXCEPTION(sel.select(filtered, 1, seq, ignore, rng), dots1::GenerationError, [](const auto& e) {
      return std::string(e.what()).find("no token has a finite score") != std::string::npos;
    });
  }
  {  // logits of the wrong size
    dots1::ThrustTokenSelector sel(resolved("{}", 2, 64, V), V);
    BOOST_CHECK_THROW(sel.select(thrust::device_vector<float>(static_cast<size_t>(V - 1)), 1, seq, ignore, rng), dots1::InputError);
  }
}
#endif

BOOST_AUTO_TEST_CASE(pipeline_order_is_hf_order) {
  // The repetition penalty acts before the sampling warpers: it must be able to push a repeated token out
  // of the top-k set (top-k first would keep token 0 and only then penalise it).
  auto c = resolved(R"({"do_sample": true, "repetition_penalty": 4.0, "top_k": 1, "temperature": 0.5})");
  dots1::LogitsPipeline pipeline(c);
  std::vector<float> scores = {3.0f, 2.0f, 1.0f};
  const std::vector<int64_t> ids = {9, 0, 0};  // token 0 repeated after one pad-like token at index 0
  pipeline(scores, ids, 1);
  BOOST_TEST(scores[0] == dots1::logits::kFiltered);  // 3/4/0.5 = 1.5 < 2/0.5 = 4
  BOOST_TEST(scores[1] == 4.0f);
  BOOST_TEST(scores[2] == dots1::logits::kFiltered);
  // greedy: only the repetition penalty and min length act
  auto g = resolved(R"({"repetition_penalty": 2.0, "top_k": 1, "temperature": 0.5, "eos_token_id": 2, "min_new_tokens": 3})");
  dots1::LogitsPipeline greedy(g);
  scores = {3.0f, 2.0f, 1.0f};
  greedy(scores, std::vector<int64_t>{0, 5, 6, 7, 8}, 0);  // length 5 < min_length 4 + 3
  BOOST_TEST(scores[0] == 1.5f);
  BOOST_TEST(scores[1] == 2.0f);
  BOOST_TEST(scores[2] == dots1::logits::kFiltered);
}

BOOST_AUTO_TEST_CASE(sampling_is_reproducible_for_a_seed) {
  std::vector<float> scores(50);
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = static_cast<float>(std::sin(0.7 * static_cast<double>(i)));
  auto draw = [&](uint64_t seed) {
    dots1::SamplingRng rng(seed);
    std::vector<int64_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(dots1::sample_token(scores, rng));
    return out;
  };
  BOOST_TEST(draw(7) == draw(7));
  BOOST_TEST(draw(7) != draw(8));
  // the generator's stream is fixed by the standard: the same numbers on every platform
  dots1::SamplingRng rng(42);
  BOOST_TEST(rng.uniform() == static_cast<double>(std::mt19937_64(42)() >> 11) * 0x1.0p-53);
}

BOOST_AUTO_TEST_CASE(sampled_frequencies_match_the_filtered_softmax) {
  // Scores -> temperature 0.8 -> top-k 8 -> top-p 0.9 through the pipeline, then 40000 draws. The expected
  // distribution is computed here independently: softmax over the tokens HF keeps.
  const std::vector<float> raw = {2.0f, 1.5f, 1.2f, 1.0f, 0.8f, 0.5f, 0.3f, 0.0f, -0.5f, -1.0f, -2.0f, -3.0f};
  auto c = resolved(R"({"do_sample": true, "temperature": 0.8, "top_k": 8, "top_p": 0.9})");
  std::vector<float> scores = raw;
  const dots1::LogitsPipeline pipeline(c);
  pipeline(scores, std::vector<int64_t>{}, 0);
  // top-k 8 keeps 0..7; top-p 0.9 then drops the tail whose cumulative mass is <= 0.1
  std::vector<double> p(raw.size(), 0.0);
  {
    double z = 0;
    for (size_t i = 0; i < 8; ++i) z += std::exp(raw[i] / 0.8);
    double tail = 0;
    std::vector<bool> keep(raw.size(), false);
    for (size_t i = 8; i-- > 0;) keep[i] = true;
    for (size_t i = 7; i > 0; --i) {  // ascending order = from index 7 down
      tail += std::exp(raw[i] / 0.8) / z;
      if (tail <= 0.1) keep[i] = false;
      else break;
    }
    double zk = 0;
    for (size_t i = 0; i < raw.size(); ++i)
      if (keep[i]) zk += std::exp(raw[i] / 0.8);
    for (size_t i = 0; i < raw.size(); ++i) p[i] = keep[i] ? std::exp(raw[i] / 0.8) / zk : 0.0;
  }
  int kept = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    BOOST_TEST((scores[i] != dots1::logits::kFiltered) == (p[i] > 0), "token " << i);
    kept += p[i] > 0;
  }
  BOOST_REQUIRE(kept >= 4);

  const int N = 40000;
  std::vector<int> counts(raw.size(), 0);
  dots1::SamplingRng rng(20240601);
  for (int n = 0; n < N; ++n) ++counts[static_cast<size_t>(dots1::sample_token(scores, rng))];
  auto chi2_against = [&](const std::vector<double>& q) {
    double chi2 = 0;
    for (size_t i = 0; i < raw.size(); ++i)
      if (q[i] > 0) chi2 += (counts[i] - N * q[i]) * (counts[i] - N * q[i]) / (N * q[i]);
    return chi2;
  };
  for (size_t i = 0; i < raw.size(); ++i)
    if (p[i] == 0) BOOST_TEST(counts[i] == 0, "filtered token " << i << " was drawn " << counts[i] << " times");
  const double critical = chi2_critical_999(kept - 1);
  const double chi2 = chi2_against(p);
  BOOST_TEST_MESSAGE("chi-square " << chi2 << " with " << kept - 1 << " dof, critical (p = 0.001) " << critical);
  BOOST_TEST(chi2 < critical);
  // The test has power: the same draws are far from plausible wrong samplers (temperature ignored, or
  // the kept set renormalised uniformly).
  std::vector<double> no_temperature(raw.size(), 0.0), uniform(raw.size(), 0.0);
  double z = 0;
  for (size_t i = 0; i < raw.size(); ++i)
    if (p[i] > 0) z += std::exp(raw[i]);
  for (size_t i = 0; i < raw.size(); ++i)
    if (p[i] > 0) no_temperature[i] = std::exp(raw[i]) / z, uniform[i] = 1.0 / kept;
  BOOST_TEST(chi2_against(no_temperature) > 10 * critical);
  BOOST_TEST(chi2_against(uniform) > 10 * critical);
}

BOOST_AUTO_TEST_CASE(greedy_takes_the_first_maximum) {
  const std::vector<float> s = {0.5f, 2.0f, -1.0f, 2.0f};
  BOOST_TEST(dots1::argmax_token(s) == 1);
  const std::vector<float> filtered = {dots1::logits::kFiltered, dots1::logits::kFiltered, 0.0f};
  dots1::SamplingRng rng(1);
  for (int i = 0; i < 20; ++i) BOOST_TEST(dots1::sample_token(filtered, rng) == 2);
}

BOOST_AUTO_TEST_CASE(config_defaults_and_length_rules) {
  // HF defaults: 20 new tokens capped at max_position_embeddings, greedy, top_k 50, top_p 1, no eos
  auto d = resolved("{}", 10, 64);
  BOOST_TEST(d.max_length == 30);
  BOOST_TEST(d.min_length == 0);
  BOOST_TEST(!d.do_sample);
  BOOST_TEST(d.top_k == 50);
  BOOST_TEST(d.top_p == 1.0);
  BOOST_TEST(d.temperature == 1.0);
  BOOST_TEST(d.repetition_penalty == 1.0);
  BOOST_TEST(!d.min_p);
  BOOST_TEST(d.eos.empty());
  BOOST_TEST(!d.pad);
  BOOST_TEST(resolved("{}", 10, 25).max_length == 25);                                       // capped
  BOOST_TEST(resolved(R"({"max_length": 40})", 10, 25).max_length == 40);                    // explicit: not capped
  BOOST_TEST(resolved(R"({"max_length": 40, "max_new_tokens": 5})", 10).max_length == 15);   // max_new_tokens wins
  BOOST_TEST(resolved(R"({"min_length": 3, "min_new_tokens": 5})", 10).min_length == 15);    // min_new_tokens wins
  BOOST_TEST(resolved(R"({"min_length": 13})", 10).min_length == 13);
  // eos as one id or a list; pad falls back to eos[0]
  auto e = resolved(R"({"eos_token_id": [7, 3]})");
  BOOST_TEST(e.eos == (std::vector<int64_t>{7, 3}));
  BOOST_TEST(*e.pad == 7);
  BOOST_TEST(resolved(R"({"eos_token_id": 5, "pad_token_id": 0})").eos == std::vector<int64_t>{5});
  BOOST_TEST(*resolved(R"({"eos_token_id": 5, "pad_token_id": 0})").pad == 0);
  // no-op values of unsupported options are accepted, nulls are "unset"
  BOOST_CHECK_NO_THROW(resolved(R"({"num_beams": 1, "typical_p": 1.0, "top_h": null, "transformers_version": "5.24.0",
                                   "max_length": null, "_from_model_config": true})"));
  // caller's options win over the checkpoint's
  dots1::GenerationConfig ck = dots1::GenerationConfig::from_json(nlohmann::json::parse(R"({"eos_token_id": 3, "temperature": 0.6, "do_sample": true})"));
  dots1::GenerationConfig user;
  user.temperature = 0.9;
  auto m = ck.overridden_by(user);
  BOOST_TEST(*m.temperature == 0.9);
  BOOST_TEST(*m.do_sample);
  BOOST_TEST(m.eos_token_id == std::vector<int64_t>{3});
  // a checkpoint folder without generation_config.json takes config.json's token ids
  dots1::Dots1Config mc;
  mc.eos_token_id = {11, 12};
  mc.pad_token_id = 4;
  auto from_model = dots1::GenerationConfig::from_model_config(mc);
  BOOST_TEST(from_model.eos_token_id == (std::vector<int64_t>{11, 12}));
  BOOST_TEST(*from_model.pad_token_id == 4);
  // a fixture checkpoint's generation_config.json (written by save_pretrained) sets nothing
  auto fixture = dots1::GenerationConfig::load(fixtures_dir() / "generation" / "dense_gqa" / "generation_config.json");
  BOOST_TEST(!fixture.max_length);
  BOOST_TEST(fixture.eos_token_id.empty());
}

BOOST_AUTO_TEST_CASE(invalid_options_raise_generation_error) {
  auto expect_error = [](const std::string& json, const std::string& needle, int64_t prompt = 4, int64_t max_pos = 64) {
    BOOST_TEST_CONTEXT(json) {
      try {
        resolved(json, prompt, max_pos);
        BOOST_ERROR("no GenerationError for " << json);
      } catch (const dots1::GenerationError& e) {
        BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos, "message: " << e.what());
      }
    }
  };
  expect_error(R"({"max_new_tokens": 0})", "max_new_tokens");
  expect_error(R"({"max_new_tokens": -3})", "max_new_tokens");
  expect_error(R"({"max_length": 4})", "max_length");           // prompt 4 fills it
  expect_error("{}", "max_position_embeddings", 4, 4);           // the capped default leaves nothing
  expect_error(R"({"do_sample": true, "temperature": 0})", "temperature");
  expect_error(R"({"do_sample": true, "temperature": -1.0})", "temperature");
  expect_error(R"({"top_p": 0})", "top_p");
  expect_error(R"({"top_p": 1.5})", "top_p");
  expect_error(R"({"top_k": -1})", "top_k");
  expect_error(R"({"min_p": 1.5})", "min_p");
  expect_error(R"({"repetition_penalty": 0})", "repetition_penalty");
  expect_error(R"({"min_length": -1})", "min_length");
  expect_error(R"({"min_new_tokens": -2})", "min_new_tokens");
  expect_error(R"({"eos_token_id": 100})", "eos_token_id");     // vocabulary 100
  expect_error(R"({"eos_token_id": [1, -1]})", "eos_token_id");
  expect_error(R"({"pad_token_id": 1000})", "pad_token_id");
  expect_error(R"({"num_beams": 4})", "num_beams");
  expect_error(R"({"typical_p": 0.9})", "typical_p");
  expect_error(R"({"no_repeat_ngram_size": 3})", "no_repeat_ngram_size");
  expect_error(R"({"top_k": "fifty"})", "top_k");
  expect_error(R"({"do_sample": 1})", "do_sample");
  expect_error(R"({"eos_token_id": "x"})", "eos_token_id");
  // greedy ignores temperature 0 (HF only warns)
  BOOST_CHECK_NO_THROW(resolved(R"({"temperature": 0.0})"));
}

BOOST_AUTO_TEST_CASE(new_options_read_resolve_and_refuse) {
  // stop strings: one string or a list; num_return_sequences; the output flags
  auto one = dots1::GenerationConfig::from_json(nlohmann::json::parse(R"({"stop_strings": "\n\n"})"));
  BOOST_TEST(one.stop_strings == std::vector<std::string>{"\n\n"});
  auto r = resolved(R"({"stop_strings": ["a", "bc"], "num_return_sequences": 3, "do_sample": true, "output_scores": true,
                       "output_logits": false, "return_dict_in_generate": true})");
  BOOST_TEST(r.stop_strings == (std::vector<std::string>{"a", "bc"}));
  BOOST_TEST(r.num_return_sequences == 3);
  BOOST_TEST(r.output_scores);
  BOOST_TEST(!r.output_logits);
  BOOST_TEST(!r.output_logprobs);
  BOOST_TEST(resolved("{}").num_return_sequences == 1);
  BOOST_TEST((resolved("{}").context_limit == dots1::ContextLimit::warn));
  // top_logprobs implies logprobs
  dots1::GenerationConfig g;
  g.top_logprobs = 3;
  BOOST_TEST(dots1::resolve(g, 4, 64, 100).output_logprobs);
  // the caller's new options win over the checkpoint's
  auto ck = dots1::GenerationConfig::from_json(nlohmann::json::parse(R"({"stop_strings": ["x"], "num_return_sequences": 1})"));
  dots1::GenerationConfig user;
  user.stop_strings = {"y"};
  user.num_return_sequences = 2;
  user.context_limit = dots1::ContextLimit::stop;
  const auto m = ck.overridden_by(user);
  BOOST_TEST(m.stop_strings == std::vector<std::string>{"y"});
  BOOST_TEST(*m.num_return_sequences == 2);
  BOOST_TEST((*m.context_limit == dots1::ContextLimit::stop));

  auto expect_error = [](const std::string& json, const std::string& needle) {
    BOOST_TEST_CONTEXT(json) {
      try {
        resolved(json);
        BOOST_ERROR("no GenerationError for " << json);
      } catch (const dots1::GenerationError& e) {
        BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos, "message: " << e.what());
      }
    }
  };
  // HF's own ValueError text for greedy with several sequences
  expect_error(R"({"num_return_sequences": 2})",
               "Greedy methods (do_sample != True) without beam search do not support `num_return_sequences` different than 1 (got 2).");
  expect_error(R"({"num_return_sequences": 0, "do_sample": true})", "num_return_sequences");
  expect_error(R"({"stop_strings": [""]})", "stop_strings[0]");
  expect_error(R"({"stop_strings": [1]})", "stop_strings");
  expect_error(R"({"stop_strings": {"a": 1}})", "stop_strings");
  expect_error(R"({"output_scores": "yes"})", "output_scores");
  g.top_logprobs = -1;
  BOOST_CHECK_THROW(dots1::resolve(g, 4, 64, 100), dots1::GenerationError);
  g.top_logprobs = 101;
  BOOST_CHECK_THROW(dots1::resolve(g, 4, 64, 100), dots1::GenerationError);
}

// ---- StopStringCriteria on hand-made vocabularies: the examples of HF's docstring, exactly ----

namespace {

/// A vocabulary of the given token texts (id = index).
dots1::TokenStrings vocabulary(const std::vector<std::string>& tokens, dots1::TokenStrings::Units units) {
  std::vector<std::optional<std::string>> t(tokens.begin(), tokens.end());
  return dots1::TokenStrings(t, units);
}

}  // namespace

BOOST_AUTO_TEST_CASE(stop_string_criteria_follow_hf_docstring_examples) {
  const std::vector<std::string> tokens = {"st", "op", "stop", "opera", "sto", "pper", "las", "topper", "s", "to", "pped", "at", "tion", "x"};
  auto id = [&](const std::string& t) { return static_cast<int64_t>(std::find(tokens.begin(), tokens.end(), t) - tokens.begin()); };
  auto seq = [&](std::initializer_list<const char*> ts) {
    std::vector<int64_t> ids;
    for (const char* t : ts) ids.push_back(id(t));
    return ids;
  };
  for (auto units : {dots1::TokenStrings::Units::bytes, dots1::TokenStrings::Units::code_points}) {
    const auto vocab = vocabulary(tokens, units);
    const dots1::StopStringCriteria stop({"stop"}, vocab);
    BOOST_TEST(stop.window() == 4);
    // "any of the following token sequences would trigger the match"
    for (const auto& s : {seq({"st", "op"}), seq({"stop"}), seq({"st", "opera"}), seq({"sto", "pper"}), seq({"las", "topper"}),
                          seq({"s", "to", "pped"}), seq({"x", "x", "st", "op"})})
      BOOST_TEST(stop.match(s).has_value());
    // "these sequences will not trigger a match"
    for (const auto& s : {seq({"stop", "at"}), seq({"st", "op", "at"}), seq({"st", "opera", "tion"}), seq({"op"}), seq({"x", "op"})})
      BOOST_TEST(!stop.match(s).has_value());
    BOOST_TEST(!stop.match({}).has_value());
    // the first of several strings that matches; ids outside the table never match
    const dots1::StopStringCriteria two({"zz", "op"}, vocab);
    BOOST_TEST(*two.match(seq({"st", "op"})) == 1u);
    BOOST_TEST(!two.match(std::vector<int64_t>{999}).has_value());
  }
  // bytes and code points differ for a character split across tokens: "é" is C3 A9
  const std::vector<std::optional<std::string>> split = {std::string("\xC3"), std::string("\xA9"), std::string("caf")};
  const dots1::TokenStrings bytes(split, dots1::TokenStrings::Units::bytes);
  BOOST_TEST(dots1::StopStringCriteria({"é"}, bytes).match(std::vector<int64_t>{2, 0, 1}).has_value());
  BOOST_TEST(dots1::StopStringCriteria({"café"}, bytes).match(std::vector<int64_t>{2, 0, 1}).has_value());
  BOOST_CHECK_THROW(dots1::TokenStrings(split, dots1::TokenStrings::Units::code_points), dots1::InputError);  // not UTF-8 text
  // bad stop strings: invalid UTF-8, empty, or no token can end them
  const auto vocab = vocabulary(tokens, dots1::TokenStrings::Units::bytes);
  BOOST_CHECK_THROW(dots1::StopStringCriteria({"\xFF"}, vocab), dots1::InputError);
  BOOST_CHECK_THROW(dots1::StopStringCriteria({""}, vocab), dots1::GenerationError);
  BOOST_CHECK_THROW(dots1::StopStringCriteria({}, vocab), dots1::GenerationError);
  BOOST_CHECK_THROW(dots1::StopStringCriteria({"Q"}, vocab), dots1::GenerationError);
}

BOOST_AUTO_TEST_CASE(logprobs_are_log_softmax_and_top_n_is_ordered) {
  const std::vector<float> s = {1.0f, 3.0f, dots1::logits::kFiltered, 3.0f, -2.0f};
  const auto g = dots1::detail::logprob_of(s, 1, 10);
  double z = 0;
  for (float x : s) z += std::isinf(x) ? 0.0 : std::exp(double(x) - 3.0);
  BOOST_TEST(std::fabs(g.logprob - (0.0 - std::log(z))) <= 1e-7);
  BOOST_REQUIRE_EQUAL(g.top.size(), 4u);  // the filtered token is left out
  BOOST_TEST(g.top[0].token == 1);        // equal scores: lower id first
  BOOST_TEST(g.top[1].token == 3);
  BOOST_TEST(g.top[2].token == 0);
  BOOST_TEST(g.top[3].token == 4);
  BOOST_TEST(std::isinf(dots1::detail::logprob_of(s, 2, 0).logprob));
  BOOST_TEST(dots1::detail::logprob_of(s, 1, 2).top.size() == 2u);
}
