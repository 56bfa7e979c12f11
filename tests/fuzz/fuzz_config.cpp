// libFuzzer target: config.json bytes -> nlohmann::json -> Dots1Config::from_json. Rejections must be
// ConfigError. An accepted config must satisfy the invariants the model relies on, survive save/load
// unchanged, and keep the RoPE and parameter-count arithmetic free of undefined behaviour (UBSan watches).
#include <cstddef>
#include <cstdint>

#include <dots1/config.hpp>
#include <dots1/model/rope.hpp>
#include <dots1/model/describe.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // not JSON: Dots1Config::load's concern, covered by the bad-input table
  dots1::Dots1Config c;
  try {
    c = dots1::Dots1Config::from_json(j);
  } catch (const dots1::ConfigError&) {
    return 0;
  }
  FUZZ_CHECK(c.head_dim() > 0 && c.head_dim() % 2 == 0, c.to_json().dump());
  FUZZ_CHECK(c.num_attention_heads % c.kv_heads() == 0, c.to_json().dump());
  FUZZ_CHECK(!c.any_moe_layer() || (c.n_routed_experts && c.num_experts_per_tok && c.n_shared_experts &&
                                    *c.num_experts_per_tok <= *c.n_routed_experts),
             c.to_json().dump());
  (void)dots1::compute_rope_frequencies(c);
  // int64 sums over every layer's tensors (signed overflow is UB). The count builds the model on the meta
  // backend, one declaration per tensor: only for the sizes a fuzz run can afford (a huge config's own
  // preflight is the bad-input table's concern).
  if (static_cast<double>(c.num_hidden_layers) * (3.0 * static_cast<double>(c.n_routed_experts.value_or(0)) + 32.0) <= 2e5)
    (void)dots1::count_parameters(c);
  // Work proportional to the layer count (layer plan, save): skipped for huge but valid counts, which only
  // cost time here.
  if (c.num_hidden_layers <= 4096) {
    FUZZ_CHECK(static_cast<int64_t>(dots1::Dots1::layer_kinds(c).size()) == c.num_hidden_layers, "layer plan");
    const auto saved = c.to_json();
    dots1::Dots1Config back;
    try {
      back = dots1::Dots1Config::from_json(saved);
    } catch (const dots1::ConfigError& e) {
      FUZZ_CHECK(false, std::string("a saved config does not load back: ") + e.what() + " in " + saved.dump());
    }
    FUZZ_CHECK(back.to_json() == saved, "save/load changed the config: " + saved.dump() + " vs " + back.to_json().dump());
  }
  return 0;
}
