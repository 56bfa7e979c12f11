// bf16 weights on the Thrust backend against the CPU backend's bf16 path (tests/unit/test_bf16.cpp checks
// that one against float32). Built for the OpenMP device system here (the GEMMs then compute on the host
// exactly the products the CUDA kernels and cuBLAS compute: see thrust_backend.hpp), and by nvcc as
// test_bf16_cuda for a GPU.
//
// Both models hold the same bf16 matrices (WeightFormat::bf16, or a bf16 checkpoint as stored); the
// backends differ in how they feed float32 activations to them:
//  * default (Bf16Activations::split): rows <= gemv_max_rows use float32 activations against the widened
//    weights (the CPU's arithmetic up to summation order), more rows use hi + lo bf16 activations on
//    tensor cores (~16 significant bits). Tolerance 2 x (6L + 1) x 2^-16 of max(1, max |logit|) per
//    position (0.00058 for the 3-layer fixtures).
//  * every path forced (gemv_max_rows 0: all tensor-core GEMMs; grouped_max_slots 0: the sorted per-expert
//    MoE path instead of the grouped one): the same tolerance.
//  * Bf16Activations::rounded (one GEMM on bf16(x), the usual bf16 inference numerics): rounding the
//    activations perturbs each projection by up to 2^-9 relative, like rounding the weights, so the bound
//    of test_bf16.cpp applies: 2 x (6L + 1) x 2^-9 of max(1, max |logit|) for L layers.
// Positions at or after a routing flip (a token choosing another expert than on the CPU, anywhere before
// it in its row) are checked only against kFlippedTolerance (one of top_k contributions swapped), as in
// test_bf16.cpp; the messages count them.
// The embedded model (examples/models/kjv-tiny, stored in bf16) then generates greedily on both backends:
// the tokens must be identical (and equal HF's, tests/fixtures/kjv_tiny/greedy.json); and samples from a
// left-padded batch with every processor on: the device's token choice gives the CPU's tokens for a seed.
#define BOOST_TEST_MODULE thrust_bf16
#include <boost/test/unit_test.hpp>

#include <iomanip>
#include <sstream>

#include <dots1/cuda.hpp>
#include <dots1/eigen.hpp>
#include <dots1/generation.hpp>
#include <dots1/tokenizer.hpp>

#include "../support/fixtures.hpp"

using namespace dots1_test;

namespace {

/// A backend that records every routing decision (indices [tokens, top_k] per MoE layer call).
template <class Base>
struct Logging : Base {
  static inline std::vector<std::vector<int32_t>> calls;
  static inline int64_t top_k = 0;
  static void route(const typename Base::Vector& logits, const typename Base::Vector& bias, int64_t tokens, const dots1::RouterShape& r,
                    typename Base::IndexVector& indices, typename Base::Vector& weights) {
    Base::route(logits, bias, tokens, r, indices, weights);
    calls.push_back(Base::download(indices));
    top_k = r.top_k;
  }
};
using CpuB = Logging<dots1::EigenBackend<float>>;
using GpuB = Logging<dots1::ThrustBackend<float>>;
using Thrust = dots1::ThrustBackend<float>;
static_assert(dots1::Backend<CpuB> && dots1::Backend<GpuB>);
using Cpu = dots1::Dots1ForCausalLM<CpuB>;
using Gpu = dots1::Dots1ForCausalLM<GpuB>;

constexpr double kFlippedTolerance = 0.5;  // positions at or after a routing flip
/// Rounded activations: each of the 6L + 1 projections on a token's path perturbed by up to 2^-9 relative.
double rounded_tolerance(int64_t layers) { return 2.0 * static_cast<double>(6 * layers + 1) / 512.0; }
/// Split activations: x - hi - lo is below 2^-18 |x|; with float32 summation-order noise on top, the bound
/// is taken at 2^-16 per projection (0.00058 for 3 layers; measured on OMP: at most 9.5e-5, median ~8e-6).
double split_tolerance(int64_t layers) { return 2.0 * static_cast<double>(6 * layers + 1) / 65536.0; }

std::string fmt(double x) {
  std::ostringstream s;
  s << std::scientific << std::setprecision(2) << x;
  return s.str();
}

/// Restores the backend's tunables at scope exit.
struct Settings {
  dots1::Bf16Activations act = Thrust::bf16_activations;
  int64_t gemv = Thrust::gemv_max_rows, grouped = Thrust::grouped_max_slots;
  ~Settings() {
    Thrust::bf16_activations = act;
    Thrust::gemv_max_rows = gemv;
    Thrust::grouped_max_slots = grouped;
  }
};

/// Per-position comparison with routing-flip tracking per batch row (across the calls of one sequence).
struct Comparison {
  Comparison(double tol, std::string what) : tolerance(tol), label(std::move(what)) {}
  double tolerance = 0;
  std::string label;
  std::vector<char> row_flipped;
  std::vector<double> clean;
  double worst_flipped = 0;
  size_t flipped = 0, positions = 0;

  void add(const std::vector<float>& a, const std::vector<float>& b, const std::vector<std::vector<int32_t>>& ra,
           const std::vector<std::vector<int32_t>>& rb, int64_t batch, int64_t seq, int64_t V, const std::string& where) {
    BOOST_REQUIRE_EQUAL(a.size(), b.size());
    BOOST_REQUIRE_EQUAL(ra.size(), rb.size());
    if (row_flipped.size() < static_cast<size_t>(batch)) row_flipped.resize(static_cast<size_t>(batch), 0);
    const auto k = static_cast<size_t>(CpuB::top_k);
    const int64_t kept = static_cast<int64_t>(a.size()) / (batch * V);  // logits rows per batch row
    for (int64_t row = 0; row < batch; ++row) {
      for (int64_t s = 0; s < seq; ++s) {
        const auto t = static_cast<size_t>(row * seq + s);
        for (size_t layer = 0; layer < ra.size(); ++layer) {
          std::vector<int32_t> x(ra[layer].begin() + static_cast<std::ptrdiff_t>(t * k), ra[layer].begin() + static_cast<std::ptrdiff_t>((t + 1) * k));
          std::vector<int32_t> y(rb[layer].begin() + static_cast<std::ptrdiff_t>(t * k), rb[layer].begin() + static_cast<std::ptrdiff_t>((t + 1) * k));
          std::sort(x.begin(), x.end());
          std::sort(y.begin(), y.end());
          if (x != y) row_flipped[static_cast<size_t>(row)] = 1;
        }
        const int64_t logit_row = kept == seq ? s : (s == seq - 1 ? 0 : -1);  // all positions, or the last only
        if (logit_row < 0) continue;
        double diff = 0, scale = 1;
        for (int64_t v = 0; v < V; ++v) {
          const auto i = static_cast<size_t>((row * kept + logit_row) * V + v);
          diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
          scale = std::max(scale, static_cast<double>(std::fabs(a[i])));
        }
        ++positions;
        if (row_flipped[static_cast<size_t>(row)]) {
          ++flipped;
          worst_flipped = std::max(worst_flipped, diff / scale);
          BOOST_TEST(diff / scale <= kFlippedTolerance, label << " " << where << " row " << row << " position " << s << " (after a routing flip): " << fmt(diff / scale));
        } else {
          clean.push_back(diff / scale);
          BOOST_TEST(diff / scale <= tolerance, label << " " << where << " row " << row << " position " << s << ": max |diff| / max(1, max |logit|) = " << fmt(diff / scale));
        }
      }
    }
  }
  void report() {
    std::sort(clean.begin(), clean.end());
    BOOST_TEST_MESSAGE("  " << label << ": " << clean.size() << " positions with the CPU's routing: median " << fmt(clean.empty() ? 0.0 : clean[clean.size() / 2])
                            << ", max " << fmt(clean.empty() ? 0.0 : clean.back()) << " of max(1, max |logit|) (tolerance " << fmt(tolerance) << "); " << flipped
                            << " of " << positions << " positions at or after a routing flip (max " << fmt(worst_flipped) << ")");
  }
};

template <class M, class B>
std::vector<float> logged_forward(const M& m, const dots1::ForwardInput& in, std::shared_ptr<typename M::Cache> cache,
                                  std::vector<std::vector<int32_t>>& routing) {
  B::calls.clear();
  auto logits = m.forward(in, std::move(cache)).logits.values;
  routing = B::calls;
  return logits;
}

/// Every run of the fixture (all positions) and its cached step sequence, CPU vs Thrust.
void compare_fixture(const Cpu& cpu, const Gpu& gpu, const nlohmann::json& cj, Comparison& cmp) {
  const int64_t V = cpu.config().vocab_size;
  std::vector<std::vector<int32_t>> ra, rb;
  for (const auto& run : cj["runs"]) {
    auto in = forward_input_from_json(run);
    in.output_hidden_states = in.output_attentions = false;
    in.labels.clear();
    in.logits_to_keep = dots1::LogitsToKeep(int64_t{0});
    const auto a = logged_forward<Cpu, CpuB>(cpu, in, nullptr, ra);
    const auto b = logged_forward<Gpu, GpuB>(gpu, in, nullptr, rb);
    cmp.row_flipped.clear();
    cmp.add(a, b, ra, rb, in.batch, in.seq, V, run["name"].get<std::string>());
  }
  // prefill + one-token steps (the decode paths: GEMV rows, grouped experts)
  if (!cj.contains("steps") || cj["steps"].is_null()) return;
  const auto& steps = cj["steps"];
  if (steps.contains("attention_mask")) return;  // padded step sequences are covered by test_reference_forward_thrust_omp
  const auto batch = static_cast<int64_t>(steps["prefill"].size());
  auto in = dots1::ForwardInput::from_ids(steps["prefill"].get<std::vector<std::vector<int64_t>>>());
  in.logits_to_keep = dots1::LogitsToKeep(int64_t{1});
  auto ca = std::make_shared<Cpu::Cache>(cpu.make_cache(batch));
  auto cb = std::make_shared<Gpu::Cache>(gpu.make_cache(batch));
  cmp.row_flipped.clear();
  int step = 0;
  for (;;) {
    const auto a = logged_forward<Cpu, CpuB>(cpu, in, ca, ra);
    const auto b = logged_forward<Gpu, GpuB>(gpu, in, cb, rb);
    cmp.add(a, b, ra, rb, in.batch, in.seq, V, "step " + std::to_string(step));
    if (step == static_cast<int>(steps["tokens"].size())) break;
    in = dots1::ForwardInput::from_ids({});
    in.batch = batch;
    in.seq = 1;
    in.input_ids = flatten<int64_t>(steps["tokens"][static_cast<size_t>(step)]);
    in.logits_to_keep = dots1::LogitsToKeep(int64_t{1});
    ++step;
  }
}

void check_fixture(const std::string& name) {
  const auto dir = fixtures_dir() / "model" / name;
  const auto ck = dots1::Checkpoint::open(dir);
  const Cpu cpu(ck.config(), ck, dots1::WeightFormat::bf16);
  const Gpu gpu(ck.config(), ck, dots1::WeightFormat::bf16);
  const auto cj = read_json(dir / "case.json");
  BOOST_TEST_MESSAGE("fixture " << name);
  Settings restore;
  {
    Comparison c{split_tolerance(ck.config().num_hidden_layers), "default (split activations, GEMV decode, grouped experts)"};
    compare_fixture(cpu, gpu, cj, c);
    c.report();
  }
  {
    Thrust::gemv_max_rows = 0;
    Thrust::grouped_max_slots = 0;
    Comparison c{split_tolerance(ck.config().num_hidden_layers), "tensor-core split GEMMs only, sorted per-expert MoE"};
    compare_fixture(cpu, gpu, cj, c);
    c.report();
    Thrust::gemv_max_rows = restore.gemv;
    Thrust::grouped_max_slots = restore.grouped;
  }
  {
    Thrust::bf16_activations = dots1::Bf16Activations::rounded;
    Thrust::gemv_max_rows = 0;
    Comparison c{rounded_tolerance(ck.config().num_hidden_layers), "rounded bf16 activations (every GEMM)"};
    compare_fixture(cpu, gpu, cj, c);
    c.report();
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(weights_stay_bf16_on_the_device) {
  const auto ck = dots1::Checkpoint::open(fixtures_dir() / "model" / "groups_moe0");
  const dots1::CastWeights bf16(ck, dots1::WeightFormat::bf16, Cpu::describe(ck.config()));
  const auto t = bf16.get("model.layers.1.self_attn.q_proj.weight");
  const auto m = Thrust::matrix(t);
  BOOST_TEST((m.dtype == dots1::DType::BF16));
  BOOST_TEST(Thrust::bytes(m) == static_cast<size_t>(t.numel()) * 2);
  const auto router = Thrust::matrix(bf16.get("model.layers.1.mlp.gate.weight"));  // HF keeps the router in float32
  BOOST_TEST((router.dtype == dots1::DType::F32));
  const auto d = dots1::ThrustBackend<double>::matrix(t);  // double compute converts
  BOOST_TEST((d.dtype == dots1::DType::F64));
}

BOOST_AUTO_TEST_CASE(gqa_dense2) { check_fixture("gqa_dense2"); }
BOOST_AUTO_TEST_CASE(groups_moe0) { check_fixture("groups_moe0"); }
BOOST_AUTO_TEST_CASE(sliding_mqa) { check_fixture("sliding_mqa"); }
BOOST_AUTO_TEST_CASE(rope_yarn) { check_fixture("rope_yarn"); }
BOOST_AUTO_TEST_CASE(rope_llama3) { check_fixture("rope_llama3"); }

BOOST_AUTO_TEST_CASE(embedded_model_greedy_tokens_equal_the_cpu) {
  const auto dir = fixtures_dir() / ".." / ".." / "examples" / "models" / "kjv-tiny";
  const auto fixture = read_json(fixtures_dir() / "kjv_tiny" / "greedy.json");
  using PlainCpu = dots1::Dots1ForCausalLM<dots1::EigenBackend<float>>;
  using PlainGpu = dots1::Dots1ForCausalLM<Thrust>;
  auto cpu = PlainCpu::from_pretrained(dir);  // bf16 as stored on both
  auto gpu = PlainGpu::from_pretrained(dir);
  const auto tok = dots1::Tokenizer::from_folder(dir);
  dots1::GenerationConfig greedy;
  greedy.do_sample = false;
  greedy.max_new_tokens = fixture["max_new_tokens"].get<int64_t>();
  const auto options = dots1::GenerationConfig::for_checkpoint(dir, cpu.config()).overridden_by(greedy);
  for (const auto& c : fixture["cases"]) {
    BOOST_TEST_CONTEXT(c["prompt"].get<std::string>()) {
      const auto ids = tok.encode(c["prompt"].get<std::string>());
      const auto input = dots1::GenerationInput::from_ids(std::vector<int64_t>(ids.begin(), ids.end()));
      const auto a = dots1::generate(cpu, input, options);
      const auto b = dots1::generate(gpu, input, options);
      BOOST_TEST(b.sequences[0] == a.sequences[0], boost::test_tools::per_element());
      BOOST_TEST(b.sequences[0] == c["output_ids"].get<std::vector<int64_t>>(), boost::test_tools::per_element());
      {
        Settings restore;  // information only: the usual bf16 numerics (one rounding of the prefill's activations)
        Thrust::bf16_activations = dots1::Bf16Activations::rounded;
        const auto r = dots1::generate(gpu, input, options);
        size_t same = 0;
        while (same < r.sequences[0].size() && r.sequences[0][same] == a.sequences[0][same]) ++same;
        BOOST_TEST_MESSAGE("  rounded activations: first " << same << " of " << a.sequences[0].size() << " tokens equal the CPU's");
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(embedded_model_sampled_tokens_equal_the_cpu) {
  // Sampling with every processor on, a left-padded batch of two prompts: the Thrust backend chooses the
  // tokens on the device (ThrustTokenSelector), the CPU on the host, from the same seed: the same tokens.
  const auto dir = fixtures_dir() / ".." / ".." / "examples" / "models" / "kjv-tiny";
  using PlainCpu = dots1::Dots1ForCausalLM<dots1::EigenBackend<float>>;
  using PlainGpu = dots1::Dots1ForCausalLM<Thrust>;
  auto cpu = PlainCpu::from_pretrained(dir);
  auto gpu = PlainGpu::from_pretrained(dir);
  const auto tok = dots1::Tokenizer::from_folder(dir);
  auto options = dots1::GenerationConfig::for_checkpoint(dir, cpu.config());
  options.do_sample = true;
  options.max_new_tokens = 40;
  options.repetition_penalty = 1.1;
  const int64_t pad = options.pad_token_id ? *options.pad_token_id : options.eos_token_id.at(0);
  std::vector<std::vector<int64_t>> prompts;
  for (const char* p : {"And God said unto Moses,", "In the beginning"}) {
    const auto ids = tok.encode(p);
    prompts.emplace_back(ids.begin(), ids.end());
  }
  const auto input = dots1::GenerationInput::left_padded(prompts, pad);
  struct Warpers {
    double temperature;
    int64_t top_k;
    double top_p;
    std::optional<double> min_p;
  };
  for (const Warpers& w : {Warpers{0.8, 40, 0.95, std::nullopt}, Warpers{1.3, 0, 1.0, 0.02}, Warpers{1.0, 50, 0.7, std::nullopt}}) {
    auto o = options;
    o.temperature = w.temperature, o.top_k = w.top_k, o.top_p = w.top_p, o.min_p = w.min_p;
    for (uint64_t seed : {7u, 8u}) {
      o.seed = seed;
      const auto a = dots1::generate(cpu, input, o);
      const auto b = dots1::generate(gpu, input, o);
      BOOST_TEST_CONTEXT("temperature " << w.temperature << " top_k " << w.top_k << " top_p " << w.top_p << " seed " << seed) {
        for (size_t r = 0; r < prompts.size(); ++r) BOOST_TEST(b.sequences[r] == a.sequences[r], boost::test_tools::per_element());
        BOOST_TEST_MESSAGE("  seed " << seed << ": " << tok.decode(std::vector<int32_t>(a.sequences[0].begin() + a.prompt_length, a.sequences[0].end()), true));
      }
    }
  }
}
