// libFuzzer target: the input JSON of `dots1 forward` (forward_input_from_json), then Dots1ForCausalLM
// forward on the tiny fixture checkpoint tests/fixtures/model/gqa_dense2 (vocab 96, or $DOTS1_FUZZ_MODEL),
// so that input validation is exercised end to end, then once more continuing the cache the first call
// filled. Rejections must be InputError; an accepted input must give logits of the right shape with finite
// values.
//
// One thread (omp_set_num_threads(1)): the CPU backend's parallel loops would make runs non-deterministic,
// which libFuzzer's coverage feedback handles badly; races are tests/run-sanitizers.sh's ThreadSanitizer job.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <omp.h>

#include <dots1/eigen.hpp>

#include "fuzz_support.hpp"

namespace {
std::unique_ptr<dots1::CpuModel> model;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  omp_set_num_threads(1);
  const auto dir = dots1_fuzz::data_path("DOTS1_FUZZ_MODEL", std::filesystem::path(DOTS1_FIXTURES_DIR) / "model" / "gqa_dense2");
  try {
    model = std::make_unique<dots1::CpuModel>(dots1::CpuModel::from_pretrained(dir));
  } catch (const dots1::Error& e) {
    std::fprintf(stderr, "fuzz_forward: cannot load %s (set DOTS1_FUZZ_MODEL): %s\n", dir.c_str(), e.what());
    std::exit(1);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // `dots1 forward` reports unparsable files before this point
  dots1::ForwardInput in;
  try {
    in = dots1::forward_input_from_json(j);
  } catch (const dots1::InputError&) {
    return 0;
  }
  // Cost cap, not a validity rule: long inputs only make each run slower (attention is quadratic).
  if (in.batch * in.seq > 256) return 0;
  const int64_t V = model->config().vocab_size;
  auto check = [&](const dots1::CpuModel::Output& out) {
    FUZZ_CHECK(out.logits.shape.size() == 3 && out.logits.shape[0] == in.batch && out.logits.shape[2] == V, "logits shape");
    FUZZ_CHECK(out.logits.values.size() == static_cast<size_t>(out.logits.shape[0] * out.logits.shape[1] * V), "logits size");
    for (float x : out.logits.values) FUZZ_CHECK(std::isfinite(x), "non-finite logit");
    // NaN is HF's loss when every label is -100; anything else must be finite.
    if (out.loss) FUZZ_CHECK(!std::isinf(*out.loss), "infinite loss");
  };
  try {
    in.use_cache = true;
    const auto first = model->forward(in);
    check(first);
    FUZZ_CHECK(first.past_key_values && first.past_key_values->seq_length() == in.seq, "cache length");
    // The same input again, continuing that cache: the checks that depend on what the cache holds
    // (attention_mask must now cover past + seq) and the cached attention path.
    check(model->forward(in, first.past_key_values));
  } catch (const dots1::InputError&) {
  }
  return 0;
}
