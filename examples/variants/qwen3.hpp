// examples/variants/qwen3.hpp — Qwen3 (HF Qwen3ForCausalLM, model_type "qwen3") composed from dots1's own
// blocks: Dots1's attention is Qwen3's (grouped-query attention with q/k RMSNorm before RoPE, full or
// sliding per layer_types), and every layer's feed-forward is the dense SwiGLU MLP. What a variant adds is
// only this file: how its config.json reads, which layer types it can have, and which kind each layer is.
//
//   using Qwen3ForCausalLM = dots1::CausalLM<dots1::EigenBackend<float>, dots1::variants::Qwen3>;
//   auto model = Qwen3ForCausalLM::from_pretrained("path/to/qwen3-checkpoint");   // as HF saves it
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <dots1/config.hpp>
#include <dots1/error.hpp>
#include <dots1/model/dots1.hpp>

namespace dots1::variants {

/// HF's Qwen3Config (configuration_qwen3.py) / Qwen3MoeConfig (configuration_qwen3_moe.py) read into the
/// config every dots1 family uses. Keys a config.json leaves out get Qwen3's defaults (not Dots1's: e.g.
/// head_dim 128 for Qwen3); sliding_window counts only with use_sliding_window; layer_types is derived as
/// HF derives it and stored explicitly. Qwen3's own keys (use_sliding_window, decoder_sparse_step,
/// mlp_only_layers, ...) stay in Dots1Config::extra, where the families read them.
inline Dots1Config read_qwen3_config(const nlohmann::json& hf, bool moe) {
  if (!hf.is_object()) throw ConfigError("<root>", hf.dump().substr(0, 40), "config.json must hold a JSON object");
  nlohmann::json j = hf;
  auto default_to = [&](const char* key, nlohmann::json v) {
    if (!j.contains(key) || j[key].is_null()) j[key] = std::move(v);
  };
  default_to("vocab_size", 151936);
  default_to("hidden_size", moe ? 2048 : 4096);
  default_to("intermediate_size", moe ? 6144 : 22016);
  default_to("num_hidden_layers", moe ? 24 : 32);
  default_to("num_attention_heads", 32);
  if (moe) default_to("num_key_value_heads", 4);  // Qwen3: null means num_attention_heads, as in Dots1Config
  if (!moe) default_to("head_dim", 128);         // Qwen3-MoE: hidden_size / num_attention_heads when absent
  default_to("max_position_embeddings", 32768);
  default_to("rms_norm_eps", 1e-6);
  default_to("tie_word_embeddings", false);
  default_to("attention_bias", false);
  default_to("use_sliding_window", false);
  if (!j["use_sliding_window"].is_boolean()) throw ConfigError("use_sliding_window", j["use_sliding_window"].dump(), "expected true or false");
  const bool sliding = j["use_sliding_window"].get<bool>();
  default_to("sliding_window", 4096);
  if (!sliding) j["sliding_window"] = nullptr;  // HF: sliding_window = sliding_window if use_sliding_window else None
  if (!j["num_hidden_layers"].is_number_integer() || j["num_hidden_layers"].get<int64_t>() < 1 || j["num_hidden_layers"].get<int64_t>() > (1 << 24))
    throw ConfigError("num_hidden_layers", j["num_hidden_layers"].dump(), "expected a positive integer");
  const int64_t layers = j["num_hidden_layers"].get<int64_t>();
  if (moe) {
    // Every layer slides or none: Qwen3-MoE has no layer_types and no max_window_layers.
    j["layer_types"] = std::vector<std::string>(static_cast<size_t>(layers), j["sliding_window"].is_null() ? "full_attention" : "sliding_attention");
    if (j.contains("num_experts") && !j["num_experts"].is_null()) {
      if (j.contains("num_local_experts") && !j["num_local_experts"].is_null() && j["num_local_experts"] != j["num_experts"])
        throw ConfigError("num_experts", j["num_experts"].dump(), "disagrees with num_local_experts (" + j["num_local_experts"].dump() + ")");
      j["num_local_experts"] = j["num_experts"];
      j.erase("num_experts");
    }
    default_to("num_local_experts", 128);
    default_to("num_experts_per_tok", 8);
    default_to("moe_intermediate_size", 768);
    default_to("norm_topk_prob", false);
    default_to("decoder_sparse_step", 1);
    default_to("mlp_only_layers", nlohmann::json::array());
  } else if (!j.contains("layer_types") || j["layer_types"].is_null()) {
    default_to("max_window_layers", 28);
    if (!j["max_window_layers"].is_number_integer()) throw ConfigError("max_window_layers", j["max_window_layers"].dump(), "expected an integer");
    const int64_t full = j["max_window_layers"].get<int64_t>();
    std::vector<std::string> types;
    for (int64_t i = 0; i < layers; ++i) types.push_back(!j["sliding_window"].is_null() && i >= full ? "sliding_attention" : "full_attention");
    j["layer_types"] = types;
  }
  j["first_k_dense_replace"] = layers;  // Dots1's rule (MoE from layer k on) does not apply: the family says which layers are MoE
  j.erase("model_type");
  return Dots1Config::from_json(j);
}

/// Qwen3 (model_type "qwen3"): every layer Dots1's attention (full or sliding, per layer_types) + the dense MLP.
struct Qwen3 {
  static constexpr const char* model_type = "qwen3";
  static Dots1Config read_config(const nlohmann::json& j) { return read_qwen3_config(j, /*moe=*/false); }
  static std::vector<LayerKind> layer_kinds(const Dots1Config& c) {
    std::vector<LayerKind> kinds;
    for (const auto& t : c.resolved_layer_types()) kinds.push_back({t, DenseMlp::name});
    return kinds;
  }
  template <class B>
  using layers = typename LayerProduct<DecoderLayer, B, TypeList<FullAttention, SlidingWindowAttention>, TypeList<DenseMlp>>::type;
};

}  // namespace dots1::variants
