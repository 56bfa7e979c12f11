// Memory planning: what a load will hold is known before loading, and a model that cannot fit fails
// early with a ResourceError saying how much it needs and how much is available.
#define BOOST_TEST_MODULE memory_plan
#include <boost/test/unit_test.hpp>

#include <cstdlib>

#include "../support/backend_under_test.hpp"
#include <dots1/io/memory_plan.hpp>

#include "../support/fixtures.hpp"

namespace {

const std::filesystem::path kKjvTiny = std::filesystem::path(DOTS1_FIXTURES_DIR) / ".." / ".." / "examples" / "models" / "kjv-tiny";
const std::filesystem::path kRealConfig = std::filesystem::path(DOTS1_FIXTURES_DIR) / ".." / ".." / "examples" / "configs" / "dots.llm1.json";

/// Sets DOTS1_MEMORY_LIMIT for the scope.
struct MemoryLimit {
  explicit MemoryLimit(const std::string& v) { ::setenv("DOTS1_MEMORY_LIMIT", v.c_str(), 1); }
  ~MemoryLimit() { ::unsetenv("DOTS1_MEMORY_LIMIT"); }
};

bool message_has(const dots1::Error& e, std::initializer_list<const char*> words) {
  const std::string m = e.what();
  for (const char* w : words)
    if (m.find(w) == std::string::npos) return false;
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(random_weights_of_the_real_model_fail_early) {
  const auto c = dots1::Dots1Config::load(kRealConfig);
  const auto p = dots1::count_parameters(c);
  const auto tensors = dots1::model_tensors(c);
  const auto f32 = dots1::random_weights_memory(tensors, dots1::WeightFormat::as_stored);
  const auto bf16 = dots1::random_weights_memory(tensors, dots1::WeightFormat::bf16);
  // Parameters plus the routers' correction-bias buffers (E per MoE layer; HF does not count buffers).
  BOOST_TEST(f32.owned == 4 * static_cast<uint64_t>(p.total + *c.n_routed_experts * (c.num_hidden_layers - c.first_k_dense_replace)));
  BOOST_TEST(f32.mapped == 0u);
  // bf16 halves every matrix but the routers (float32 in HF) and the 1-D tensors.
  BOOST_TEST(bf16.owned > 2 * static_cast<uint64_t>(p.total));
  BOOST_TEST(bf16.owned < 2 * static_cast<uint64_t>(p.total) + 200'000'000u);
  BOOST_TEST(dots1::format_bytes(f32.total()) == "571.10 GB");
  // 4 GB of memory (or less, on a smaller machine): both fail at once, nothing allocated (this would otherwise
  // take minutes and then be killed).
  MemoryLimit limit("4000000000");
  for (auto format : {dots1::WeightFormat::as_stored, dots1::WeightFormat::bf16}) {
    BOOST_CHECK_EXCEPTION(dots1::CpuModel::random(c, 1, format), dots1::ResourceError, [](const dots1::ResourceError& e) {
      BOOST_TEST_MESSAGE(e.what());
      return message_has(e, {"needs", "GB of memory", "is available"});
    });
  }
}

BOOST_AUTO_TEST_CASE(checkpoint_memory_counts_mapped_and_converted_tensors) {
  // kjv-tiny stores its matrices in bf16 (the routers in float32): read in place; 1-D tensors (norms, the
  // routers' correction bias) become float32.
  const auto ck = dots1::Checkpoint::open(kKjvTiny);
  uint64_t matrix_bytes = 0, matrices = 0, vectors = 0, f32_matrix_bytes = 0;
  for (const auto& f : ck.files())
    for (const auto& [name, t] : f.tensors()) {
      BOOST_TEST_REQUIRE((t.dtype == dots1::DType::BF16 || t.dtype == dots1::DType::F32 || t.shape.size() < 2));
      if (t.shape.size() < 2) {
        vectors += static_cast<uint64_t>(t.numel());
      } else {
        matrix_bytes += t.nbytes;
        matrices += static_cast<uint64_t>(t.numel());
        if (t.dtype == dots1::DType::F32) f32_matrix_bytes += t.nbytes;
      }
    }
  BOOST_TEST(f32_matrix_bytes > 0u);  // the routers
  // What a load of this checkpoint holds, as the blocks declare it, with the checkpoint's stored dtypes.
  const auto tensors = dots1::CpuModel::describe(ck.config(), dots1::Parallel::single(), &ck);
  auto in_place = [](dots1::DType d) { return d == dots1::DType::F32 || d == dots1::DType::BF16; };
  const auto stored = dots1::loaded_memory(tensors, dots1::WeightFormat::as_stored, in_place, 4);
  BOOST_TEST(stored.mapped == matrix_bytes);
  BOOST_TEST(stored.owned == 4 * vectors);
  // Converted to float32: the bf16 matrices become owned copies; float32 ones stay in place.
  const auto f32 = dots1::loaded_memory(tensors, dots1::WeightFormat::f32, in_place, 4);
  BOOST_TEST(f32.mapped == f32_matrix_bytes);
  BOOST_TEST(f32.owned == 4 * (matrices + vectors) - f32_matrix_bytes);
  // A backend that converts everything (double compute) owns it all.
  const auto f64 = dots1::loaded_memory(tensors, dots1::WeightFormat::as_stored, [](dots1::DType) { return false; }, 8);
  BOOST_TEST(f64.owned == 8 * (matrices + vectors));
}

BOOST_AUTO_TEST_CASE(a_checkpoint_that_does_not_fit_fails_before_loading) {
  {
    MemoryLimit limit("1000000");  // 1 MB
    BOOST_CHECK_EXCEPTION(dots1::CpuModel::from_pretrained(kKjvTiny), dots1::ResourceError, [](const dots1::ResourceError& e) {
      BOOST_TEST_MESSAGE(e.what());
      return message_has(e, {"loading checkpoint", "kjv-tiny", "needs 18.", "memory-mapped", "1.0 MB is available"});
    });
  }
  {
    MemoryLimit limit("off");
    BOOST_CHECK_NO_THROW(dots1::CpuModel::from_pretrained(kKjvTiny));
  }
  {
    MemoryLimit limit("lots");
    BOOST_CHECK_THROW(dots1::CpuModel::from_pretrained(kKjvTiny), dots1::ConfigError);
  }
  // Without a limit, this machine's own memory: the tiny model fits.
  BOOST_CHECK_NO_THROW(dots1::CpuModel::from_pretrained(kKjvTiny));
  BOOST_TEST(dots1::available_memory().value_or(0) > 100'000'000u);
}
