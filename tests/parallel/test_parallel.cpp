// The model split across MPI processes (expert and tensor parallel, include/dots1/parallel/): run by CTest
// as `mpirun -np 2` and `mpirun -np 4` on one machine (loopback). For every plan ep=a,tp=b that fits the
// number of ranks and every reference fixture (tests/fixtures/model), each rank loads only its shard, and
//   - logits, hidden states, attentions and loss equal the single-process model's within 1e-5 (times the
//     largest |value| when that exceeds 1; in Release the largest difference is 6.4e-6 absolute) and HF's
//     within 1e-4, as test_reference_forward requires, also through the KV cache step by step;
//   - greedy generation gives the single-process tokens, token for token;
//   - the weight bytes each rank holds equal what the sharding rules predict from the tensor shapes, and
//     are about 1/N of the model (the replicated embeddings, norms and routers aside);
// plus a config whose expert count is not a multiple of the ranks (handled: uneven expert ranges), plans
// and configs that cannot be split (rejected, naming the field), and a stray tensor still reported.
#define BOOST_TEST_MODULE parallel
#include <boost/test/unit_test.hpp>

#include <functional>

#include <cstdlib>
#include <iomanip>
#include <memory>
#include <sstream>

#include "../support/backend_under_test.hpp"
#include <dots1/parallel/mpi.hpp>

#include "../support/fixtures.hpp"

using namespace dots1_test;
using Model = dots1::CpuModel;

namespace {

constexpr double kVsSingleTolerance = 1e-5;  // the same model, summed in another order
constexpr double kVsHfTolerance = 1e-4;      // as test_reference_forward

std::unique_ptr<dots1::MpiSession> mpi;

struct MpiFixture {
  MpiFixture() {
    mpi = std::make_unique<dots1::MpiSession>();
    if (mpi->world()->rank() != 0) boost::unit_test::unit_test_log.set_threshold_level(boost::unit_test::log_all_errors);
  }
  ~MpiFixture() { mpi.reset(); }
};

std::shared_ptr<dots1::MpiCommunicator> world() { return mpi->world(); }

std::string fmt(double x) {
  std::ostringstream s;
  s << std::scientific << std::setprecision(2) << x;
  return s.str();
}

/// Every plan ep=a,tp=b with a and b dividing the number of ranks, except the unsplit one.
std::vector<dots1::ParallelPlan> plans() {
  const int n = world()->size();
  std::vector<dots1::ParallelPlan> out;
  for (int ep = 1; ep <= n; ++ep)
    for (int tp = 1; tp <= n; ++tp)
      if (n % ep == 0 && n % tp == 0 && (ep > 1 || tp > 1)) out.push_back({ep, tp});
  return out;
}

/// Bytes of one tensor, given its HF name and (held) shape.
using NamedBytes = std::function<double(const std::string& name, const std::vector<int64_t>& shape)>;

double float32_bytes(const std::string&, const std::vector<int64_t>& shape) {
  double n = 4;
  for (auto d : shape) n *= static_cast<double>(d);
  return n;
}

/// Bytes per element of each tensor as the checkpoint stores it (fused expert tensors for per-expert names).
NamedBytes stored_bytes(const dots1::Checkpoint& ck) {
  return [&ck](const std::string& name, const std::vector<int64_t>& shape) {
    std::string stored = name;
    if (!ck.contains(name)) {
      const auto at = name.find(".mlp.experts.");
      stored = name.substr(0, at) + ".mlp.experts." + (name.find("down_proj") != std::string::npos ? "down_proj" : "gate_up_proj");
    }
    double n = static_cast<double>(dots1::dtype_size(ck.get(stored).dtype));
    for (auto d : shape) n *= static_cast<double>(d);
    return n;
  };
}

bool ends_with(const std::string& s, const std::string& tail) { return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0; }

/// The weight bytes the rank of `par` holds for config `c`, from the tensor names and shapes alone by the
/// sharding rules of parallel/plan.hpp: an oracle independent of the blocks' own declarations.
double weight_bytes_by_the_rules(const dots1::Dots1Config& c, const dots1::Parallel& par, const NamedBytes& bytes = float32_bytes) {
  const int64_t d = c.head_dim(), H = c.hidden_size;
  const dots1::IndexRange heads = par.heads(c), kv = par.kv_heads(c);
  const dots1::IndexRange experts = par.experts(c.n_routed_experts.value_or(0));
  double total = 0;
  for (auto [name, shape] : dots1::model_tensor_shapes(c)) {
    const auto at = name.find(".mlp.experts.");
    if (at != std::string::npos) {  // model.layers.L.mlp.experts.E.*: whole, on its owner only
      if (experts.contains(std::stoll(name.substr(at + 13)))) total += bytes(name, shape);
      continue;
    }
    if (ends_with(name, "q_proj.weight") || ends_with(name, "q_proj.bias")) shape[0] = heads.size() * d;
    else if (ends_with(name, "k_proj.weight") || ends_with(name, "k_proj.bias") || ends_with(name, "v_proj.weight") || ends_with(name, "v_proj.bias"))
      shape[0] = kv.size() * d;
    else if (ends_with(name, "o_proj.weight")) shape[1] = heads.size() * d;
    else if (ends_with(name, "o_proj.bias")) shape[0] = par.tp_rank() == 0 ? H : 0;  // added once, after the all-reduce
    else if (ends_with(name, "gate_proj.weight") || ends_with(name, "up_proj.weight")) shape[0] = par.tp_rows(shape[0]).size();
    else if (ends_with(name, "down_proj.weight")) shape[1] = par.tp_rows(shape[1]).size();
    else if (name == "lm_head.weight") shape[0] = par.tp_rows(shape[0]).size();
    total += bytes(name, shape);
  }
  return total;
}

/// The bytes every rank holds whole whatever the plan: embeddings, norms, routers and correction biases.
double replicated_bytes_by_the_rules(const dots1::Dots1Config& c, const NamedBytes& bytes) {
  double total = 0;
  for (const auto& [name, shape] : dots1::model_tensor_shapes(c))
    if (name == "model.embed_tokens.weight" || ends_with(name, "norm.weight") || ends_with(name, "mlp.gate.weight") ||
        ends_with(name, "e_score_correction_bias"))
      total += bytes(name, shape);
  return total;
}

/// A rank's shares as the blocks declare them (CausalLM::describe), in the checkpoint's dtypes.
double declared_bytes(const dots1::Dots1Config& c, const dots1::Parallel& par, const NamedBytes& bytes) {
  const std::shared_ptr<const dots1::Parallel> view(std::shared_ptr<const dots1::Parallel>(), &par);  // not owned
  double total = 0;
  for (const auto& t : Model::describe(c, view)) total += t.held.empty() ? 0 : bytes(t.name, t.held);
  return total;
}

/// Weight bytes held: this rank's, checked against the shapes; the fraction of the whole printed.
void check_weight_bytes(const Model& split, const Model& whole, const NamedBytes& bytes) {
  const auto& par = split.parallel();
  const double expected = weight_bytes_by_the_rules(split.config(), par, bytes);
  const double total = weight_bytes_by_the_rules(whole.config(), *dots1::Parallel::single(), bytes);
  BOOST_TEST(declared_bytes(split.config(), par, bytes) == expected);
  BOOST_TEST(static_cast<double>(whole.weight_bytes()) == total);
  BOOST_TEST(static_cast<double>(split.weight_bytes()) == expected, "rank " << par.rank() << " holds " << split.weight_bytes() << " bytes, the shapes say " << expected);
  // Every rank's bytes, and the sum over the ranks of one replica (the first ep x tp ranks do not
  // necessarily form one; the sum over all ranks counts each split part size/ep or size/tp times).
  std::vector<int64_t> mine{static_cast<int64_t>(split.weight_bytes())}, all(static_cast<size_t>(par.size()));
  par.world().all_gather_host(mine.data(), 1, all.data());
  std::ostringstream line;
  double largest = 0;
  for (auto b : all) {
    line << " " << b;
    largest = std::max(largest, static_cast<double>(b));
  }
  BOOST_TEST_MESSAGE("    " << par.plan().str() << ": weight bytes per rank" << line.str() << " of " << total << " (largest " << std::fixed
                            << std::setprecision(3) << largest / total << " of the model; 1/N = " << 1.0 / par.size() << ")");
  // About 1/N: the experts split ep ways, the rest tp ways, the replicated tensors whole; KV heads are
  // replicated when tp exceeds their number, and uneven splits differ by a row or an expert: 25% slack.
  const double replicated = replicated_bytes_by_the_rules(split.config(), bytes);
  const double bound = replicated + (total - replicated) / std::min(par.plan().ep, par.plan().tp) * 1.25;
  BOOST_TEST(largest <= bound, "largest rank holds " << largest << " bytes, bound " << bound);
}

/// Within 1e-5 of the single process, relative to the largest |value| when that exceeds 1 (float32 rounding
/// grows with the values, as test_reference_forward's cached-vs-full bound); within 1e-4 of HF.
void compare(const std::vector<float>& got, const std::vector<float>& single, const std::vector<float>& hf, const std::string& what, double& worst) {
  const double e = max_abs_diff(got, single);
  double scale = 1;
  for (float x : single) scale = std::max(scale, static_cast<double>(std::fabs(x)));
  worst = std::max(worst, e);
  BOOST_TEST(e <= kVsSingleTolerance * scale, what << " vs single process max |diff| " << fmt(e) << " (largest |value| " << scale << ")");
  if (!hf.empty()) {
    const double h = max_abs_diff(got, hf);
    BOOST_TEST(h <= kVsHfTolerance, what << " vs HF max |diff| " << fmt(h));
  }
}

/// One fixture under one plan: every run of case.json, then its cached steps.
void check_fixture(const std::string& name, const dots1::ParallelPlan& plan) {
  const auto dir = fixtures_dir() / "model" / name;
  const auto par = dots1::Parallel::create(world(), plan);
  auto split = Model::from_pretrained(dir, par);
  auto whole = Model::from_pretrained(dir);
  const auto ck = dots1::Checkpoint::open(dir);
  const auto cj = read_json(dir / "case.json");
  const auto expected = dots1::SafetensorsFile::open(dir / "expected.safetensors");
  double worst = 0;
  for (const auto& run : cj["runs"]) {
    const std::string run_name = run["name"];
    BOOST_TEST_CONTEXT(name << " " << plan.str() << " run " << run_name) {
      const auto in = forward_input_from_json(run);
      const auto a = split.forward(in), b = whole.forward(in);
      BOOST_TEST(a.logits.shape == b.logits.shape);
      compare(a.logits.values, b.logits.values, expected.at(run_name + ".logits").to_vector<float>(), "logits", worst);
      BOOST_TEST(a.loss.has_value() == b.loss.has_value());
      if (a.loss && b.loss) BOOST_TEST(std::fabs(*a.loss - *b.loss) <= kVsSingleTolerance * std::max(1.0, std::fabs(*b.loss)));
      BOOST_TEST(a.hidden_states.size() == b.hidden_states.size());
      for (size_t i = 0; i < std::min(a.hidden_states.size(), b.hidden_states.size()); ++i)
        compare(a.hidden_states[i].values, b.hidden_states[i].values, {}, "hidden_states." + std::to_string(i), worst);
      BOOST_TEST(a.attentions.size() == b.attentions.size());
      for (size_t i = 0; i < std::min(a.attentions.size(), b.attentions.size()); ++i) {
        BOOST_TEST(a.attentions[i].shape == b.attentions[i].shape);
        compare(a.attentions[i].values, b.attentions[i].values, {}, "attentions." + std::to_string(i), worst);
      }
    }
  }
  if (!cj["steps"].is_null()) {  // prefill + one token at a time through each model's cache
    const auto& steps = cj["steps"];
    const auto batch = static_cast<int64_t>(steps["prefill"].size());
    auto ca = std::make_shared<Model::Cache>(split.make_cache(batch)), cb = std::make_shared<Model::Cache>(whole.make_cache(batch));
    dots1::ForwardInput in;
    in.batch = batch;
    in.seq = static_cast<int64_t>(steps["prefill"][0].size());
    in.input_ids = flatten<int64_t>(steps["prefill"]);
    if (steps.contains("attention_mask")) {  // generate()'s positions for left padding: cumsum(mask) - 1
      in.attention_mask = flatten<int64_t>(steps["attention_mask"]);
      in.position_ids.resize(in.attention_mask.size());
      for (int64_t r = 0; r < batch; ++r)
        for (int64_t s = 0, c = 0; s < in.seq; ++s) {
          const auto i = static_cast<size_t>(r * in.seq + s);
          c += in.attention_mask[i];
          in.position_ids[i] = in.attention_mask[i] ? c - 1 : 0;
        }
    }
    compare(split.forward(in, ca).logits.values, whole.forward(in, cb).logits.values, expected.at("steps.logits.0").to_vector<float>(),
            name + " " + plan.str() + " prefill", worst);
    if (!steps.contains("attention_mask")) {
      size_t k = 1;
      for (const auto& tok : steps["tokens"]) {
        dots1::ForwardInput s;
        s.batch = batch;
        s.seq = 1;
        s.input_ids = flatten<int64_t>(tok);
        compare(split.forward(s, ca).logits.values, whole.forward(s, cb).logits.values,
                expected.at("steps.logits." + std::to_string(k)).to_vector<float>(), name + " " + plan.str() + " step " + std::to_string(k), worst);
        ++k;
      }
    }
  }
  check_weight_bytes(split, whole, stored_bytes(ck));
  BOOST_TEST_MESSAGE("  " << name << " " << plan.str() << ": largest |diff| vs single process " << fmt(worst) << ", communication "
                          << std::fixed << std::setprecision(4) << par->stats().seconds << " s in " << par->stats().calls << " collectives");
}

std::vector<int64_t> greedy(Model& model, const std::vector<int64_t>& prompt, int64_t n) {
  dots1::GenerationConfig options;
  options.max_new_tokens = n;
  options.do_sample = false;
  return dots1::generate(model, dots1::GenerationInput::from_ids(prompt), options).generated(0);
}

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

BOOST_AUTO_TEST_CASE(plans_parse_and_reject_clearly) {
  using dots1::ParallelPlan;
  const auto p = ParallelPlan::parse("ep=4,tp=2", 4);
  BOOST_TEST(p.ep == 4);
  BOOST_TEST(p.tp == 2);
  BOOST_TEST(ParallelPlan::parse("tp=2", 2).ep == 1);
  BOOST_TEST(ParallelPlan::parse("", 4).ep == 4);  // default: experts over all ranks
  for (const char* bad : {"ep=3", "xp=2", "ep=0", "ep=2,ep=2", "ep=two", "ep=2;tp=2", "tp=8"}) {
    BOOST_CHECK_THROW(ParallelPlan::parse(bad, 4), dots1::InputError);
  }
  auto c = dots1::Checkpoint::open(fixtures_dir() / "model" / "gqa_dense2").config();
  c.num_attention_heads = 6;
  c.num_key_value_heads = 3;
  c.head_dim_override = 8;
  try {
    ParallelPlan{1, 4}.check_config(c);
    BOOST_ERROR("6 heads split 4 ways must be rejected");
  } catch (const dots1::ConfigError& e) {
    BOOST_TEST(e.field() == "num_attention_heads");
  }
  try {
    ParallelPlan{1, 2}.check_config(c);
    BOOST_ERROR("3 KV heads split 2 ways must be rejected");
  } catch (const dots1::ConfigError& e) {
    BOOST_TEST(e.field() == "num_key_value_heads");
  }
  c.n_routed_experts = 2;
  c.num_experts_per_tok = 1;
  try {
    ParallelPlan{4, 1}.check_config(c);
    BOOST_ERROR("2 experts over 4 ranks must be rejected");
  } catch (const dots1::ConfigError& e) {
    BOOST_TEST(e.field() == "n_routed_experts");
  }
  // uneven but possible splits are handled
  BOOST_TEST(dots1::split_evenly(6, 4, 0).size() == 1);
  BOOST_TEST(dots1::split_evenly(6, 4, 3).size() == 2);
  for (int64_t e = 0; e < 6; ++e) BOOST_TEST(dots1::split_evenly(6, 4, dots1::part_holding(e, 6, 4)).contains(e));
}

BOOST_AUTO_TEST_CASE(every_fixture_under_every_plan_equals_the_single_process_model) {
  for (const auto& plan : plans())
    for (const char* name : {"gqa_dense2", "groups_moe0", "sliding_mqa", "rope_dynamic", "rope_yarn", "rope_longrope", "rope_llama3", "rope_proportional"})
      check_fixture(name, plan);
}

BOOST_AUTO_TEST_CASE(expert_count_not_a_multiple_of_the_ranks) {
  // 6 (or 5) experts over 2 or 4 ranks: rank r holds experts [r*E/N, (r+1)*E/N).
  auto c = dots1::Checkpoint::open(fixtures_dir() / "model" / "gqa_dense2").config();
  for (int64_t experts : {int64_t{5}, int64_t{6}}) {
    c.n_routed_experts = experts;
    const auto input = dots1::ForwardInput::from_ids({{5, 17, 3, 88, 41, 9, 60}, {1, 2, 3, 4, 5, 6, 7}});
    auto whole = Model::random(c, 11);
    const auto want = whole.forward(input).logits.values;
    for (const auto& plan : plans()) {
      BOOST_TEST_CONTEXT("E = " << experts << ", " << plan.str()) {
        const auto par = dots1::Parallel::create(world(), plan);
        auto split = Model(c, dots1::RandomWeights(dots1::model_tensors(c), 11), par);
        const double e = max_abs_diff(split.forward(input).logits.values, want);
        BOOST_TEST(e <= kVsSingleTolerance, "max |diff| " << fmt(e));
        const auto mine = par->experts(experts);
        BOOST_TEST_MESSAGE("  E = " << experts << " " << plan.str() << ": rank " << par->rank() << " holds experts [" << mine.begin << ", " << mine.end
                                    << "), max |diff| " << fmt(e));
        BOOST_TEST(static_cast<double>(split.weight_bytes()) == weight_bytes_by_the_rules(c, *par));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(greedy_generation_is_identical_token_for_token) {
  const auto kjv = std::filesystem::path(DOTS1_SOURCE_DIR) / "examples" / "models" / "kjv-tiny";
  auto whole = Model::from_pretrained(kjv);
  const std::vector<int64_t> prompt{12, 345, 67, 890, 11, 4, 150};
  const auto want = greedy(whole, prompt, 24);
  for (const auto& plan : plans()) {
    BOOST_TEST_CONTEXT("kjv-tiny " << plan.str()) {
      auto split = Model::from_pretrained(kjv, dots1::Parallel::create(world(), plan));
      const auto got = greedy(split, prompt, 24);
      BOOST_TEST(got == want, boost::test_tools::per_element());
      check_weight_bytes(split, whole, stored_bytes(dots1::Checkpoint::open(kjv)));
    }
  }
  // and on a reference fixture with MoE in every layer
  auto fixture = Model::from_pretrained(fixtures_dir() / "model" / "groups_moe0");
  const auto want2 = greedy(fixture, {3, 1, 4, 1, 5}, 16);
  for (const auto& plan : plans()) {
    auto split = Model::from_pretrained(fixtures_dir() / "model" / "groups_moe0", dots1::Parallel::create(world(), plan));
    BOOST_TEST(greedy(split, {3, 1, 4, 1, 5}, 16) == want2, boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_CASE(a_tensor_no_rank_uses_is_still_reported) {
  auto c = dots1::Checkpoint::open(fixtures_dir() / "model" / "gqa_dense2").config();
  auto tensors = dots1::model_tensors(c);
  tensors.push_back({"model.layers.3.mlp.experts.99.up_proj.weight", {c.moe_intermediate_size, c.hidden_size}});
  const auto par = dots1::Parallel::create(world(), plans().front());
  BOOST_CHECK_THROW(Model(c, dots1::RandomWeights(tensors, 1), par), dots1::CheckpointError);
}
