// The research instruments against HF transformers (tests/fixtures/instrument, made by
// tests/make_instrument_fixtures.py): what the Recorder records equals HF's forward hooks; what the
// Intervention does equals the same edit made to HF's model (forced and forbidden experts, zeroed heads and
// experts, a steering vector); NoInstrument and the Recorder leave the logits bit-identical; traces and
// reports round-trip.
#define BOOST_TEST_MODULE instruments
#include <boost/test/unit_test.hpp>

#include <iomanip>
#include <set>
#include <sstream>

#include <dots1/generation.hpp>
#include <dots1/instrument/intervention.hpp>
#include <dots1/instrument/recorder.hpp>
#include <dots1/instrument/report.hpp>
#include <dots1/instrument/trace_io.hpp>

#include "../support/backend_under_test.hpp"
#include "../support/fixtures.hpp"

using namespace dots1_test;
using Model = dots1::Dots1ForCausalLM<TestBackend>;

namespace {

constexpr double kTolerance = 1e-4;

std::string fmt(double x) {
  std::ostringstream s;
  s << std::scientific << std::setprecision(2) << x;
  return s.str();
}

struct Fixture {
  std::filesystem::path dir = fixtures_dir() / "instrument";
  Model model = Model::from_pretrained(dir);
  nlohmann::json c = read_json(dir / "case.json");
  dots1::SafetensorsFile expected = dots1::SafetensorsFile::open(dir / "expected.safetensors");
  dots1::ForwardInput input() const {
    auto in = dots1::ForwardInput::from_ids(c["input_ids"].get<std::vector<std::vector<int64_t>>>());
    in.use_cache = false;
    return in;
  }
  std::vector<float> want(const std::string& name) const { return expected.at(name).to_vector<float>(); }
  std::vector<int64_t> want_ids(const std::string& name) const { return expected.at(name).to_int64(); }
  std::vector<int64_t> moe_layers() const { return c["moe_layers"].get<std::vector<int64_t>>(); }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

/// The (expert, weight) pairs of each token sorted by expert: HF's topk(sorted=False) order is unspecified.
std::vector<std::pair<int64_t, float>> sorted_choice(const std::vector<int64_t>& idx, const std::vector<float>& w, int64_t t, int64_t K) {
  std::vector<std::pair<int64_t, float>> out;
  for (int64_t k = 0; k < K; ++k) out.emplace_back(idx[static_cast<size_t>(t * K + k)], w[static_cast<size_t>(t * K + k)]);
  std::sort(out.begin(), out.end());
  return out;
}

/// Recorded choices and weights of every MoE layer against HF's `<run>.topk_*.<layer>`; returns the max |diff| of the weights.
double check_routing(const dots1::Recording& r, const std::string& run) {
  auto& f = fixture();
  double worst = 0;
  for (auto l : f.moe_layers()) {
    const auto& rec = r.layers.at(static_cast<size_t>(l));
    BOOST_REQUIRE(rec.moe);
    const int64_t K = rec.top_k, T = r.batch * r.seq;
    const auto hf_idx = f.want_ids(run + ".topk_indices." + std::to_string(l));
    const auto hf_w = f.want(run + ".topk_weights." + std::to_string(l));
    const std::vector<int64_t> our_idx(rec.topk_indices.begin(), rec.topk_indices.end());
    BOOST_REQUIRE_EQUAL(our_idx.size(), hf_idx.size());
    int64_t mismatched = 0;
    for (int64_t t = 0; t < T; ++t) {
      const auto a = sorted_choice(our_idx, rec.topk_weights, t, K), b = sorted_choice(hf_idx, hf_w, t, K);
      for (int64_t k = 0; k < K; ++k) {
        if (a[static_cast<size_t>(k)].first != b[static_cast<size_t>(k)].first) ++mismatched;
        worst = std::max(worst, static_cast<double>(std::fabs(a[static_cast<size_t>(k)].second - b[static_cast<size_t>(k)].second)));
      }
    }
    BOOST_TEST(mismatched == 0, run << " layer " << l << ": " << mismatched << " chosen experts differ from HF's");
  }
  BOOST_TEST(worst <= kTolerance, run << ": routing weights max |diff| " << fmt(worst));
  return worst;
}

template <class Output>
double check_logits(const Output& out, const std::string& run) {
  const double e = max_abs_diff(out.logits.values, fixture().want(run + ".logits"));
  BOOST_TEST_MESSAGE("  " << run << ": logits max |diff| vs HF " << fmt(e));
  BOOST_TEST(e <= kTolerance, run << ": logits max |diff| " << fmt(e));
  return e;
}

}  // namespace

BOOST_AUTO_TEST_CASE(no_instrument_and_recorder_leave_the_model_unchanged) {
  auto& f = fixture();
  const auto plain = f.model.forward(f.input());
  dots1::NoInstrument none;
  const auto with_none = f.model.forward(f.input(), nullptr, none);
  dots1::Recorder rec;
  const auto recorded = f.model.forward(f.input(), nullptr, rec);
  BOOST_TEST(plain.logits.values == with_none.logits.values);  // bit-identical
  BOOST_TEST(plain.logits.values == recorded.logits.values);
  check_logits(plain, "natural");
  BOOST_TEST(rec.recordings().size() == 1u);
}

BOOST_AUTO_TEST_CASE(recorded_values_equal_hf_hooks) {
  auto& f = fixture();
  dots1::Recorder rec;
  f.model.forward(f.input(), nullptr, rec);
  const auto& r = rec.last();
  BOOST_TEST(r.batch == 2);
  BOOST_TEST(r.seq == 7);
  BOOST_TEST(r.input_ids == f.input().input_ids);
  BOOST_TEST(r.moe_layers() == f.moe_layers());
  double worst = 0;
  for (size_t l = 0; l < r.layers.size(); ++l) {
    const auto& rec_l = r.layers[l];
    const std::string s = std::string(".").append(std::to_string(l));
    for (auto [name, values] : {std::pair{"resid_pre", &rec_l.resid_pre}, std::pair{"resid_mid", &rec_l.resid_mid},
                                std::pair{"resid_post", &rec_l.resid_post}, std::pair{"attn_weights", &rec_l.attn_weights}}) {
      const double e = max_abs_diff(*values, f.want(std::string("natural.") + name + s));
      worst = std::max(worst, e);
      BOOST_TEST(e <= kTolerance, name << s << " max |diff| " << fmt(e));
    }
    if (!rec_l.moe) continue;
    for (auto [name, values] : {std::pair{"router_logits", &rec_l.router_logits}, std::pair{"router_scores", &rec_l.router_scores}}) {
      const double e = max_abs_diff(*values, f.want(std::string("natural.") + name + s));
      worst = std::max(worst, e);
      BOOST_TEST(e <= kTolerance, name << s << " max |diff| " << fmt(e));
    }
  }
  worst = std::max(worst, check_routing(r, "natural"));
  BOOST_TEST_MESSAGE("recorded residuals, attention, router logits/scores/weights: max |diff| vs HF hooks " << fmt(worst));
}

BOOST_AUTO_TEST_CASE(forcing_hf_forced_experts_reproduces_hf_logits) {
  auto& f = fixture();
  dots1::Intervention edit;
  for (const auto& x : f.c["forced"])
    edit.force_experts(x["layer"], x["experts"].get<std::vector<int64_t>>(), dots1::Tokens::at(x["row"], x["position"]));
  dots1::Recorder rec;
  dots1::Chain both{edit, rec};
  const auto out = f.model.forward(f.input(), nullptr, both);
  check_logits(out, "forced");
  check_routing(rec.last(), "forced");
  // the forced choice really differs from the natural one
  const auto natural = f.want_ids("natural.topk_indices.1");
  const auto& forced = rec.last().layers[1].topk_indices;
  for (size_t i = 0; i < forced.size(); ++i) BOOST_TEST(forced[i] != natural[i]);
}

BOOST_AUTO_TEST_CASE(forbidding_experts_equals_hf_with_an_infinite_bias) {
  auto& f = fixture();
  dots1::Intervention edit;
  for (const auto& x : f.c["forbid"])
    for (auto e : x["experts"]) edit.forbid_expert(x["layer"], e);
  dots1::Recorder rec;
  dots1::Chain both{edit, rec};
  check_logits(f.model.forward(f.input(), nullptr, both), "forbid");
  check_routing(rec.last(), "forbid");
  for (const auto& x : f.c["forbid"])
    for (auto e : x["experts"]) {
      const auto& idx = rec.last().layers.at(x["layer"].get<size_t>()).topk_indices;
      BOOST_TEST(std::count(idx.begin(), idx.end(), e.get<int32_t>()) == 0);
    }
}

BOOST_AUTO_TEST_CASE(zeroing_heads_equals_hf_with_zeroed_o_proj_columns) {
  auto& f = fixture();
  dots1::Intervention edit;
  for (const auto& x : f.c["zero_heads"]) edit.zero_head(x["layer"], x["head"]);
  check_logits(f.model.forward(f.input(), nullptr, edit), "zero_heads");
}

BOOST_AUTO_TEST_CASE(zeroing_experts_equals_hf_with_zeroed_down_proj) {
  auto& f = fixture();
  dots1::Intervention edit;
  for (const auto& x : f.c["zero_experts"]) edit.zero_expert(x["layer"], x["expert"]);
  check_logits(f.model.forward(f.input(), nullptr, edit), "zero_experts");
}

BOOST_AUTO_TEST_CASE(steering_the_residual_stream_equals_hf_pre_hook) {
  auto& f = fixture();
  const auto& s = f.c["steer"];
  dots1::Intervention edit;
  for (const auto& t : s["tokens"])
    edit.add_to_residual(s["layer"], dots1::ResidualPoint::layer_input, s["vector"].get<std::vector<float>>(), dots1::Tokens::at(t[0], t[1]));
  check_logits(f.model.forward(f.input(), nullptr, edit), "steer");
}

BOOST_AUTO_TEST_CASE(instruments_work_on_a_compile_time_stack) {
  using B = TestBackend;
  using Stack = dots1::StaticStack<B, dots1::DecoderLayer<B, dots1::FullAttention, dots1::DenseMlp>, dots1::DecoderLayer<B, dots1::FullAttention, dots1::MoE>,
                                   dots1::DecoderLayer<B, dots1::FullAttention, dots1::MoE>>;
  auto& f = fixture();
  const auto checkpoint = dots1::Checkpoint::open(f.dir);
  const dots1::Dots1ForCausalLM<B, Stack> model(checkpoint.config(), checkpoint);
  dots1::Intervention edit;
  for (const auto& x : f.c["zero_heads"]) edit.zero_head(x["layer"], x["head"]);
  dots1::Recorder rec;
  check_logits(model.forward(f.input(), nullptr, dots1::Chain{edit, rec}), "zero_heads");
  BOOST_TEST(rec.last().moe_layers() == f.moe_layers());
}

BOOST_AUTO_TEST_CASE(instruments_follow_a_cached_decode) {
  // prefill + steps through the cache: token positions are cache indices, one recording per call
  auto& f = fixture();
  const auto all = f.input();
  const int64_t S = all.seq;
  std::vector<std::vector<int64_t>> first(2), rest(2);
  for (int64_t b = 0; b < 2; ++b) {
    first[static_cast<size_t>(b)].assign(all.input_ids.begin() + b * S, all.input_ids.begin() + b * S + 4);
    rest[static_cast<size_t>(b)].assign(all.input_ids.begin() + b * S + 4, all.input_ids.begin() + (b + 1) * S);
  }
  dots1::Intervention edit;
  for (const auto& x : f.c["forced"])
    edit.force_experts(x["layer"], x["experts"].get<std::vector<int64_t>>(), dots1::Tokens::at(x["row"], x["position"]));
  dots1::Recorder rec;
  dots1::Chain both{edit, rec};
  auto cache = std::make_shared<Model::Cache>(f.model.make_cache(2));
  f.model.forward(dots1::ForwardInput::from_ids(first), cache, both);
  std::vector<float> last_logits;
  for (int64_t s = 0; s < S - 4; ++s) {
    const auto step = f.model.forward(dots1::ForwardInput::from_ids({{rest[0][static_cast<size_t>(s)]}, {rest[1][static_cast<size_t>(s)]}}), cache, both);
    if (s == S - 5) last_logits = step.logits.values;
  }
  BOOST_TEST(rec.recordings().size() == static_cast<size_t>(1 + S - 4));
  BOOST_TEST(rec.recordings().back().past == S - 1);
  // the last position's logits equal HF's forced run at that position
  const auto want = f.want("forced.logits");
  const int64_t V = f.model.config().vocab_size;
  double e = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t v = 0; v < V; ++v)
      e = std::max(e, static_cast<double>(std::fabs(last_logits[static_cast<size_t>(b * V + v)] - want[static_cast<size_t>((b * S + S - 1) * V + v)])));
  BOOST_TEST(e <= kTolerance, "cached forced decode, last position: max |diff| " << fmt(e));
}

BOOST_AUTO_TEST_CASE(generation_runs_under_instruments) {
  // generate(..., instrument): the instrument runs in every forward (the prompt's, then one per step); a
  // Recorder leaves the tokens as they are, an Intervention's edits shape every step exactly as a
  // hand-written greedy loop of edited forwards.
  auto& f = fixture();
  const auto prompt = f.c["input_ids"].get<std::vector<std::vector<int64_t>>>()[0];
  const auto S = static_cast<int64_t>(prompt.size());
  const auto input = dots1::GenerationInput::from_ids(prompt);
  dots1::GenerationConfig greedy;
  greedy.do_sample = false;
  greedy.max_new_tokens = 6;

  dots1::Recorder rec;
  const auto plain = dots1::generate(f.model, input, greedy);
  const auto recorded = dots1::generate(f.model, input, greedy, {}, rec);
  BOOST_TEST(recorded.sequences[0] == plain.sequences[0], boost::test_tools::per_element());
  BOOST_REQUIRE(rec.recordings().size() == static_cast<size_t>(1 + recorded.decode_forwards));
  BOOST_TEST(rec.recordings()[0].seq == S);
  BOOST_TEST(rec.recordings()[0].input_ids == prompt, boost::test_tools::per_element());
  const auto generated = recorded.generated(0);
  for (size_t k = 1; k < rec.recordings().size(); ++k) {
    const auto& r = rec.recordings()[k];
    BOOST_TEST(r.seq == 1);
    BOOST_TEST(r.past == S + static_cast<int64_t>(k) - 1);
    BOOST_TEST(r.input_ids.at(0) == generated.at(k - 1), "step " << k << " fed the token chosen before it");
  }

  dots1::Intervention edit;
  edit.zero_head(0, 0);
  for (int64_t layer : f.moe_layers()) edit.forbid_expert(layer, 0).forbid_expert(layer, 1);
  const auto edited = dots1::generate(f.model, input, greedy, {}, edit);
  std::vector<int64_t> by_hand;
  auto cache = std::make_shared<Model::Cache>(f.model.make_cache(1));
  auto in = dots1::ForwardInput::from_ids({prompt});
  in.logits_to_keep = dots1::LogitsToKeep(int64_t{1});
  for (int k = 0; k < 6; ++k) {
    const auto out = f.model.forward(in, cache, edit);
    by_hand.push_back(dots1::argmax_token(std::span<const float>(out.logits.values)));
    in = dots1::ForwardInput::from_ids({{by_hand.back()}});
    in.logits_to_keep = dots1::LogitsToKeep(int64_t{1});
  }
  BOOST_TEST(edited.generated(0) == by_hand, boost::test_tools::per_element());
  auto join = [](const std::vector<int64_t>& v) {
    std::ostringstream o;
    for (auto t : v) o << t << ' ';
    return o.str();
  };
  BOOST_TEST_MESSAGE("  greedy tokens plain " << join(plain.generated(0)) << "/ edited " << join(by_hand));
}

BOOST_AUTO_TEST_CASE(bad_edits_are_refused) {
  auto& f = fixture();
  auto refused = [&](dots1::Intervention edit) { BOOST_CHECK_THROW(f.model.forward(f.input(), nullptr, edit), dots1::InputError); };
  refused(dots1::Intervention().zero_head(3, 0));             // no layer 3
  refused(dots1::Intervention().zero_head(0, 4));             // 4 heads
  refused(dots1::Intervention().zero_expert(0, 1));           // layer 0 is dense
  refused(dots1::Intervention().zero_expert(1, 12));          // 12 experts
  refused(dots1::Intervention().force_experts(1, {1, 2}));    // K = 3
  refused(dots1::Intervention().force_experts(1, {1, 2, 1})); // twice
  refused(dots1::Intervention().add_to_residual(1, dots1::ResidualPoint::layer_input, {1.0f, 2.0f}));
}

BOOST_AUTO_TEST_CASE(traces_round_trip_and_reports_render) {
  auto& f = fixture();
  dots1::Recorder rec;
  const auto out = f.model.forward(f.input(), nullptr, rec);
  dots1::TraceInfo info;
  info.model = f.dir.string();
  info.config = f.model.config().to_json();
  for (int i = 0; i < 7; ++i) info.tokens.push_back("tok<" + std::to_string(i) + ">");
  const auto dir = std::filesystem::temp_directory_path() / ("dots1_test_trace_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  dots1::write_trace(dir / "a.safetensors", rec.last(), info, &out.logits);
  const auto file = dots1::SafetensorsFile::open(dir / "a.safetensors");
  BOOST_TEST(file.at("input_ids").shape == (std::vector<int64_t>{2, 7}));
  BOOST_TEST(file.at("layers.1.topk_indices").shape == (std::vector<int64_t>{2, 7, 3}));
  BOOST_TEST(file.at("layers.2.router_scores").shape == (std::vector<int64_t>{2, 7, 12}));
  BOOST_TEST(file.at("layers.0.attn_weights").shape == (std::vector<int64_t>{2, 4, 7, 7}));
  BOOST_TEST(file.at("layers.2.resid_post").shape == (std::vector<int64_t>{2, 7, 32}));
  BOOST_TEST(!file.contains("layers.0.topk_indices"));  // a dense layer
  BOOST_TEST(file.at("logits").shape == (std::vector<int64_t>{2, 7, 64}));
  const auto tr = dots1::read_trace(dir / "a.safetensors");
  BOOST_TEST(tr.info.tokens == info.tokens);
  BOOST_TEST(tr.recording.moe_layers() == f.moe_layers());
  BOOST_TEST(tr.layer(1).topk_indices == rec.last().layers[1].topk_indices);
  BOOST_TEST(tr.layer(2).router_bias == rec.last().layers[2].router_bias);
  BOOST_TEST(tr.layer(2).router.n_group == 3);
  BOOST_TEST(tr.layer(0).attn_weights == rec.last().layers[0].attn_weights);

  const std::string html = dots1::render_report(tr);
  auto count = [](const std::string& s, const std::string& what) {
    size_t n = 0;
    for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
  };
  // load heatmap, per-token grid, 2 weight maps, margin heatmap + bars, 8 attention maps
  BOOST_TEST(count(html, "<svg ") == 14u);
  BOOST_TEST(html.find("<meta name=\"dots1-svg-count\" content=\"14\">") != std::string::npos);
  BOOST_TEST(html.find("tok&lt;3&gt;") != std::string::npos);  // labels are escaped
  BOOST_TEST(html.find("<script") == std::string::npos);
  BOOST_TEST(html.find("http://") == html.find("http://www.w3.org/2000/svg"));  // the only URL is the SVG namespace

  // the comparison of the natural and the forced routing: layer 1 changed everywhere
  dots1::Intervention edit;
  for (const auto& x : f.c["forced"])
    edit.force_experts(x["layer"], x["experts"].get<std::vector<int64_t>>(), dots1::Tokens::at(x["row"], x["position"]));
  dots1::RecorderOptions routing_only;
  routing_only.residual = routing_only.attention = false;
  dots1::Recorder rec_b(routing_only);
  dots1::Chain both{edit, rec_b};
  f.model.forward(f.input(), nullptr, both);
  dots1::write_trace(dir / "b.safetensors", rec_b.last(), info);
  const auto trb = dots1::read_trace(dir / "b.safetensors");
  BOOST_TEST(!trb.recording.layers[1].topk_indices.empty());
  BOOST_TEST(trb.recording.layers[1].resid_pre.empty());
  const std::string cmp = dots1::render_comparison(tr, trb);
  BOOST_TEST(cmp.find("<td>1</td><td>100.0%</td>") != std::string::npos, "layer 1: every top-k choice changed");
  BOOST_TEST(count(cmp, "<svg ") == 3u);
  std::filesystem::remove_all(dir);
}
