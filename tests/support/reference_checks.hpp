// The checks of a forward against HF transformers, for any model type: a fixture folder (case.json +
// expected.safetensors, as tests/make_model_fixtures.py and tests/make_qwen3_fixtures.py write them) holds
// runs (logits, loss, hidden states, attentions) and a cached step sequence; a generation fixture
// (runs.json) holds HF generate() sequences. Used by test_reference_forward (Dots1) and test_variants (Qwen3).
#pragma once

#include <filesystem>
#include <iomanip>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <dots1/generation.hpp>

#include "fixtures.hpp"

namespace dots1_test {

constexpr double kLogitsTolerance = 1e-4;
constexpr double kLossRelativeTolerance = 1e-5;
constexpr double kCachedVsFullTolerance = 1e-5;

inline std::string fmt(double x) {
  std::ostringstream s;
  s << std::scientific << std::setprecision(2) << x;
  return s.str();
}

/// Positions generate() uses for a left-padded row: cumsum(mask) - 1, pads at 0.
inline std::vector<int64_t> padded_positions(const std::vector<int64_t>& mask, int64_t batch) {
  const auto len = static_cast<int64_t>(mask.size()) / batch;
  std::vector<int64_t> pos(mask.size());
  for (int64_t b = 0; b < batch; ++b) {
    int64_t c = 0;
    for (int64_t s = 0; s < len; ++s) {
      c += mask[static_cast<size_t>(b * len + s)];
      pos[static_cast<size_t>(b * len + s)] = mask[static_cast<size_t>(b * len + s)] ? c - 1 : 0;
    }
  }
  return pos;
}

template <class Model>
void check_runs(Model& model, const nlohmann::json& runs, const dots1::SafetensorsFile& expected, double& worst) {
  for (const auto& run : runs) {
    const std::string name = run["name"];
    BOOST_TEST_CONTEXT("run " << name) {
      const auto in = forward_input_from_json(run);
      const auto out = model.forward(in);
      const auto& want = expected.at(name + ".logits");
      BOOST_TEST(out.logits.shape == want.shape, "logits shape");
      const double e = max_abs_diff(out.logits.values, want.to_vector<float>());
      worst = std::max(worst, e);
      BOOST_TEST_MESSAGE("  " << name << ": logits max |diff| " << fmt(e));
      BOOST_TEST(e <= kLogitsTolerance);
      if (const auto* loss = expected.find(name + ".loss")) {
        BOOST_REQUIRE(out.loss.has_value());
        const double want_loss = loss->float_at(0);
        const double rel = std::fabs(*out.loss - want_loss) / std::fabs(want_loss);
        BOOST_TEST_MESSAGE("  " << name << ": loss " << *out.loss << " vs HF " << want_loss << " (rel " << fmt(rel) << ")");
        BOOST_TEST(rel <= kLossRelativeTolerance);
      } else {
        BOOST_TEST(!out.loss.has_value());
      }
      if (in.output_hidden_states) {
        BOOST_TEST(out.hidden_states.size() == static_cast<size_t>(model.config().num_hidden_layers + 1));
        for (size_t i = 0; i < out.hidden_states.size(); ++i) {
          const double h = max_abs_diff(out.hidden_states[i].values, expected.at(name + ".hidden_states." + std::to_string(i)).to_vector<float>());
          worst = std::max(worst, h);
          BOOST_TEST(h <= kLogitsTolerance, "hidden_states." << i << " max |diff| " << fmt(h));
        }
      }
      if (in.output_attentions) {
        BOOST_TEST(out.attentions.size() == static_cast<size_t>(model.config().num_hidden_layers));
        for (size_t i = 0; i < out.attentions.size(); ++i) {
          const auto& w = expected.at(name + ".attentions." + std::to_string(i));
          BOOST_TEST(out.attentions[i].shape == w.shape, "attentions." << i << " shape");
          const double a = max_abs_diff(out.attentions[i].values, w.to_vector<float>());
          worst = std::max(worst, a);
          BOOST_TEST(a <= kLogitsTolerance, "attentions." << i << " max |diff| " << fmt(a));
        }
      }
    }
  }
}

/// Prefill + one-token steps through a cache, as generate() drives the model.
template <class Model>
void check_steps(Model& model, const nlohmann::json& steps, const dots1::SafetensorsFile& expected, double& worst) {
  auto prefill = flatten<int64_t>(steps["prefill"]);
  const auto batch = static_cast<int64_t>(steps["prefill"].size());
  const auto prefill_len = static_cast<int64_t>(steps["prefill"][0].size());
  const bool padded = steps.contains("attention_mask");
  std::vector<int64_t> mask = padded ? flatten<int64_t>(steps["attention_mask"]) : std::vector<int64_t>{};
  auto cache = std::make_shared<typename Model::Cache>(model.make_cache(batch));

  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(batch));  // every token per row, for the full forward
  for (int64_t b = 0; b < batch; ++b)
    rows[static_cast<size_t>(b)].assign(prefill.begin() + b * prefill_len, prefill.begin() + (b + 1) * prefill_len);

  dots1::ForwardInput in;
  in.batch = batch;
  in.seq = prefill_len;
  in.input_ids = prefill;
  if (padded) {
    in.attention_mask = mask;
    in.position_ids = padded_positions(mask, batch);
  }
  std::vector<std::vector<float>> step_logits;
  auto out = model.forward(in, cache);
  step_logits.push_back(out.logits.values);
  for (const auto& tok : steps["tokens"]) {
    dots1::ForwardInput s;
    s.batch = batch;
    s.seq = 1;
    s.input_ids = flatten<int64_t>(tok);
    for (int64_t b = 0; b < batch; ++b) rows[static_cast<size_t>(b)].push_back(s.input_ids[static_cast<size_t>(b)]);
    if (padded) {
      const auto len = static_cast<int64_t>(mask.size()) / batch;
      std::vector<int64_t> grown;
      for (int64_t b = 0; b < batch; ++b) {
        grown.insert(grown.end(), mask.begin() + b * len, mask.begin() + (b + 1) * len);
        grown.push_back(1);
      }
      mask = grown;
      s.attention_mask = mask;
      const auto pos = padded_positions(mask, batch);
      for (int64_t b = 0; b < batch; ++b) s.position_ids.push_back(pos[static_cast<size_t>(b * (len + 1) + len)]);
    }
    step_logits.push_back(model.forward(s, cache).logits.values);
  }
  for (size_t k = 0; k < step_logits.size(); ++k) {
    const double e = max_abs_diff(step_logits[k], expected.at("steps.logits." + std::to_string(k)).to_vector<float>());
    worst = std::max(worst, e);
    BOOST_TEST(e <= kLogitsTolerance, "cached step " << k << " vs HF max |diff| " << fmt(e));
  }
  // Our own full forward over the same tokens gives the same logits at every step position, except for
  // RoPE types that change their frequencies with the sequence length: HF (and we) never re-rotate cached
  // keys, so there the cached path differs from a full forward by design (spec 3.4).
  const auto& rope_type = model.config().rope.rope_type;
  if (rope_type == "dynamic" || rope_type == "longrope") {
    BOOST_TEST_MESSAGE("  steps: cached vs full forward not compared for rope_type " << rope_type);
    return;
  }
  dots1::ForwardInput full = dots1::ForwardInput::from_ids(rows);
  if (padded) {
    full.attention_mask = mask;
    full.position_ids = padded_positions(mask, batch);
  }
  const auto all = model.forward(full).logits;
  const int64_t V = model.config().vocab_size, S = full.seq;
  double cached_vs_full = 0, scale = 1;
  for (float x : all.values) scale = std::max(scale, static_cast<double>(std::fabs(x)));
  for (size_t k = 0; k < step_logits.size(); ++k) {
    const int64_t first = k == 0 ? 0 : prefill_len + static_cast<int64_t>(k) - 1;
    const int64_t count = k == 0 ? prefill_len : 1;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t p = 0; p < count; ++p)
        for (int64_t v = 0; v < V; ++v) {
          // Padding query rows attend to nothing; HF makes them uniform over whatever keys exist, which
          // differs between a prefill and a longer full forward. Only real tokens are compared.
          if (padded && mask[static_cast<size_t>(b * S + first + p)] == 0) continue;
          const double a = step_logits[k][static_cast<size_t>((b * count + p) * V + v)];
          const double f = all.values[static_cast<size_t>((b * S + first + p) * V + v)];
          cached_vs_full = std::max(cached_vs_full, std::fabs(a - f));
        }
  }
  // float32 rounding grows with the logits' size: the bound is relative to the largest |logit| (>= 1).
  BOOST_TEST_MESSAGE("  steps: " << step_logits.size() << " calls, cached vs own full forward max |diff| " << fmt(cached_vs_full)
                                 << " (largest |logit| " << scale << ")");
  BOOST_TEST(cached_vs_full <= kCachedVsFullTolerance * scale);
}

/// Every run and the cached steps of one HF fixture folder (case.json, expected.safetensors).
template <class Model>
void check_reference_case(const std::filesystem::path& dir) {
  const std::string name = dir.filename().string();
  auto model = Model::from_pretrained(dir);
  const auto cj = read_json(dir / "case.json");
  const auto expected = dots1::SafetensorsFile::open(dir / "expected.safetensors");
  double worst = 0;
  check_runs(model, cj["runs"], expected, worst);
  if (!cj["steps"].is_null()) check_steps(model, cj["steps"], expected, worst);
  BOOST_TEST_MESSAGE("fixture " << name << ": largest |diff| vs HF " << fmt(worst));
}


/// HF generate()'s inputs of one run of a runs.json.
inline dots1::GenerationInput generation_input_of(const nlohmann::json& run) {
  dots1::GenerationInput in;
  in.batch = static_cast<int64_t>(run["input_ids"].size());
  in.seq = static_cast<int64_t>(run["input_ids"][0].size());
  in.input_ids = flatten<int64_t>(run["input_ids"]);
  if (run.contains("attention_mask")) in.attention_mask = flatten<int64_t>(run["attention_mask"]);
  return in;
}

/// Every run of a generation fixture (dir/runs.json, the model in dir): the sequences equal HF's, token for
/// token, and the streamed tokens equal the generated ones.
template <class Model>
void check_generation_runs(const std::filesystem::path& dir) {
  const std::string name = dir.filename().string();
  auto model = Model::from_pretrained(dir);
  const auto checkpoint_options = dots1::GenerationConfig::for_checkpoint(dir, model.config());
  const auto runs = read_json(dir / "runs.json");
  BOOST_REQUIRE(runs["runs"].size() >= 2);
  for (const auto& run : runs["runs"]) {
    const std::string run_name = run["name"];
    BOOST_TEST_CONTEXT(name << "/" << run_name) {
      const auto in = generation_input_of(run);
      // the run's options are HF generate() keyword arguments: the same names as generation_config.json
      const auto options = checkpoint_options.overridden_by(dots1::GenerationConfig::from_json(run["options"]));
      std::map<int64_t, std::vector<int64_t>> streamed;
      const auto out = dots1::generate(model, in, options, [&](int64_t row, int64_t token) { streamed[row].push_back(token); });
      const auto want = run["sequences"].get<std::vector<std::vector<int64_t>>>();
      BOOST_TEST(out.sequences == want, "sequences differ from HF generate");
      for (size_t b = 0; b < want.size(); ++b) {
        BOOST_TEST_INFO("row " << b);
        BOOST_TEST(out.generated(static_cast<int64_t>(b)) == streamed[static_cast<int64_t>(b)]);
      }
      BOOST_TEST(out.steps == static_cast<int64_t>(want[0].size()) - in.seq);
    }
    BOOST_TEST_MESSAGE("  " << name << "/" << run_name << ": " << run["sequences"].size() << " x "
                            << run["sequences"][0].size() - run["input_ids"][0].size() << " new tokens checked (HF's smallest greedy margin "
                            << run["min_margin"].get<double>() << ")");
  }
}

}  // namespace dots1_test
