// dots1/config.hpp — Dots1Config: every field of HF's `Dots1Config`, its derived values, the
// per-layer plan, JSON load/save and the validation rules of spec section 1.3.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/base/atomic_file.hpp"
#include "dots1/base/json_input.hpp"
#include "dots1/base/limits.hpp"

namespace dots1 {

using json = nlohmann::json;

/// RoPE variant and its parameters: both HF spellings (`rope_theta` + `rope_scaling` with `type` or
/// `rope_type`, and `rope_parameters`) load into this.
struct RopeParameters {
  std::string rope_type = "default";  // default, linear, dynamic, yarn, longrope, llama3, proportional
  double rope_theta = 10000.0;
  std::optional<double> factor;
  std::optional<double> attention_factor;
  std::optional<double> beta_fast, beta_slow;          // yarn
  std::optional<double> mscale, mscale_all_dim;        // yarn
  std::optional<bool> truncate;                        // yarn
  std::optional<double> low_freq_factor, high_freq_factor;  // llama3
  std::optional<int64_t> original_max_position_embeddings;
  std::vector<double> short_factor, long_factor;       // longrope
  std::optional<double> partial_rotary_factor;         // inside rope_parameters (HF main)
  friend bool operator==(const RopeParameters&, const RopeParameters&) = default;
};

struct Dots1Config {
  // ---- fields of HF's Dots1Config signature, with HF's defaults ----
  int64_t vocab_size = 152064;
  int64_t hidden_size = 4608;
  int64_t intermediate_size = 10944;
  int64_t moe_intermediate_size = 1408;
  int64_t num_hidden_layers = 62;
  int64_t num_attention_heads = 32;
  std::optional<int64_t> num_key_value_heads = 32;  // null -> num_attention_heads
  std::optional<int64_t> n_shared_experts;
  std::optional<int64_t> n_routed_experts;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  std::optional<int64_t> num_experts_per_tok;
  int64_t first_k_dense_replace = 0;
  bool norm_topk_prob = false;
  std::string hidden_act = "silu";
  int64_t max_position_embeddings = 2048;
  double initializer_range = 0.02;
  double rms_norm_eps = 1e-6;
  bool use_cache = true;
  bool tie_word_embeddings = false;
  RopeParameters rope;
  bool attention_bias = false;
  double attention_dropout = 0.0;
  double routed_scaling_factor = 1.0;
  std::optional<int64_t> sliding_window = 4096;
  int64_t max_window_layers = 62;
  std::optional<std::vector<std::string>> layer_types;  // null -> derived
  std::optional<int64_t> pad_token_id, bos_token_id;
  std::vector<int64_t> eos_token_id;  // empty = none; one id or a list in JSON
  // ---- extra keys HF keeps as attributes ----
  std::optional<int64_t> head_dim_override;  // `head_dim` when present
  std::optional<double> partial_rotary_factor;  // top-level attribute (HF v4 rope functions)
  std::string scoring_func = "sigmoid";  // accepted; HF hard-codes sigmoid + correction bias
  std::string topk_method = "noaux_tc";  // accepted; HF hard-codes group-limited top-k
  json extra = json::object();           // every other key, kept for save()
  bool rope_as_parameters = false;       // save with `rope_parameters` (HF main) instead of rope_theta/rope_scaling

  // ---- derived values (spec 1.2) ----
  int64_t head_dim() const { return head_dim_override ? *head_dim_override : hidden_size / num_attention_heads; }
  int64_t kv_heads() const { return num_key_value_heads ? *num_key_value_heads : num_attention_heads; }
  int64_t kv_groups() const { return num_attention_heads / kv_heads(); }
  double attention_scaling() const { return std::pow(static_cast<double>(head_dim()), -0.5); }
  int64_t shared_intermediate_size() const { return moe_intermediate_size * n_shared_experts.value_or(0); }
  bool is_moe_layer(int64_t i) const { return i >= first_k_dense_replace; }
  bool any_moe_layer() const { return first_k_dense_replace < num_hidden_layers; }

  /// layer_types as given, or derived: sliding when sliding_window is set and i >= max_window_layers.
  std::vector<std::string> resolved_layer_types() const {
    if (layer_types) return *layer_types;
    std::vector<std::string> t;
    for (int64_t i = 0; i < num_hidden_layers; ++i)
      t.push_back(sliding_window && i >= max_window_layers ? "sliding_attention" : "full_attention");
    return t;
  }

  /// The window a sliding layer uses (only meaningful when some layer is sliding).
  int64_t window() const { return sliding_window.value_or(0); }

  /// partial_rotary_factor as HF folds it into the rope dict (the dict's value wins); 1.0 when absent.
  double effective_partial_rotary_factor() const {
    return rope.partial_rotary_factor ? *rope.partial_rotary_factor : partial_rotary_factor.value_or(1.0);
  }

  // ---- validation (spec 1.3 plus what a working model needs) ----
  void validate() const;

  // ---- JSON ----
  static Dots1Config from_json(const json& j);
  json to_json() const;
  /// Reads config.json; `read` parses it (from_json for dots1, a model family's reader for another model type).
  static Dots1Config load(const std::filesystem::path& config_json, Dots1Config (*read)(const json&) = &Dots1Config::from_json);
  void save(const std::filesystem::path& config_json) const;
};

namespace detail {

inline std::string show(const json& v) { return io::shown_json(v); }

/// The model types this config reads (config.json "model_type"; a file without one is taken as Dots1). Other
/// architectures have their own config types and loaders; add a type here only when Dots1Config describes it.
inline const std::vector<std::string>& accepted_model_types() {
  static const std::vector<std::string> types = {"dots1"};
  return types;
}

/// Refuses a config.json written for another architecture: its fields would be read with Dots1's meaning.
inline void check_model_type(const json& j) {
  if (!j.contains("model_type") || j.at("model_type").is_null()) return;
  const json& v = j.at("model_type");
  if (v.is_string())
    for (const auto& t : accepted_model_types())
      if (v.get_ref<const std::string&>() == t) return;
  std::string accepted;
  for (const auto& t : accepted_model_types()) accepted += (accepted.empty() ? "\"" : ", \"") + t + "\"";
  throw ConfigError("model_type", show(v), "this config is for another architecture; Dots1Config reads model_type " + accepted +
                                               " (or a config without model_type)");
}

template <class T>
std::string show_value(const T& v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

/// A JSON integer above INT64_MAX (nlohmann keeps those unsigned), which get<int64_t>() would wrap negative.
inline bool beyond_int64(const json& v) {
  return v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

/// Reads an integer field; JSON floats with no fraction are accepted (HF would accept them too).
inline int64_t read_int(const json& j, const char* field) {
  const json& v = j.at(field);
  if (beyond_int64(v)) throw ConfigError(field, show(v), "is absurdly large (does not fit a 64-bit integer)");
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return static_cast<int64_t>(d);
  }
  throw ConfigError(field, show(v), "expected an integer");
}

inline double read_number(const json& j, const char* field) {
  const json& v = j.at(field);
  if (!v.is_number()) throw ConfigError(field, show(v), "expected a number");
  double d = v.get<double>();
  if (!std::isfinite(d)) throw ConfigError(field, show(v), "expected a finite number");
  return d;
}

inline bool read_bool(const json& j, const char* field) {
  const json& v = j.at(field);
  if (!v.is_boolean()) throw ConfigError(field, show(v), "expected true or false");
  return v.get<bool>();
}

inline std::string read_string(const json& j, const char* field) {
  const json& v = j.at(field);
  if (!v.is_string()) throw ConfigError(field, show(v), "expected a string");
  return v.get<std::string>();
}

inline std::optional<int64_t> read_optional_int(const json& j, const char* field) {
  if (!j.contains(field) || j.at(field).is_null()) return std::nullopt;
  return read_int(j, field);
}

inline std::vector<double> read_number_list(const json& j, const char* field, const std::string& name) {
  const json& v = j.at(field);
  if (!v.is_array()) throw ConfigError(name, show(v), "expected a list of numbers");
  std::vector<double> out;
  for (const auto& x : v) {
    if (!x.is_number() || !std::isfinite(x.get<double>())) throw ConfigError(name, show(v), "expected a list of numbers (finite)");
    out.push_back(x.get<double>());
  }
  return out;
}

/// Parses a RoPE dict (rope_scaling or rope_parameters); `name` is the key it came from.
inline void read_rope_dict(const json& d, const std::string& name, RopeParameters& r) {
  if (!d.is_object()) throw ConfigError(name, show(d), "expected an object (or null)");
  for (const char* k : {"rope_type", "type"}) {  // HF's two spellings; rope_type wins
    if (!d.contains(k) || d[k].is_null()) continue;
    if (!d[k].is_string()) throw ConfigError(name + "." + k, show(d[k]), "expected a string");
    r.rope_type = d[k].get<std::string>();
    break;
  }
  auto num = [&](const char* k, std::optional<double>& out) {
    if (d.contains(k) && !d[k].is_null()) {
      if (!d[k].is_number() || !std::isfinite(d[k].get<double>()))
        throw ConfigError(name + "." + k, show(d[k]), "expected a number (finite)");
      out = d[k].get<double>();
    }
  };
  if (d.contains("rope_theta") && !d["rope_theta"].is_null()) {
    std::optional<double> theta;
    num("rope_theta", theta);
    r.rope_theta = *theta;
  }
  num("factor", r.factor);
  num("attention_factor", r.attention_factor);
  num("beta_fast", r.beta_fast);
  num("beta_slow", r.beta_slow);
  num("mscale", r.mscale);
  num("mscale_all_dim", r.mscale_all_dim);
  num("low_freq_factor", r.low_freq_factor);
  num("high_freq_factor", r.high_freq_factor);
  num("partial_rotary_factor", r.partial_rotary_factor);
  if (d.contains("truncate") && !d["truncate"].is_null()) {
    if (!d["truncate"].is_boolean()) throw ConfigError(name + ".truncate", show(d["truncate"]), "expected true or false");
    r.truncate = d["truncate"].get<bool>();
  }
  if (d.contains("original_max_position_embeddings") && !d["original_max_position_embeddings"].is_null()) {
    const json& v = d["original_max_position_embeddings"];
    if (!v.is_number_integer() || beyond_int64(v))
      throw ConfigError(name + ".original_max_position_embeddings", show(v), "expected a 64-bit integer");
    r.original_max_position_embeddings = v.get<int64_t>();
  }
  if (d.contains("short_factor") && !d["short_factor"].is_null())
    r.short_factor = read_number_list(d, "short_factor", name + ".short_factor");
  if (d.contains("long_factor") && !d["long_factor"].is_null())
    r.long_factor = read_number_list(d, "long_factor", name + ".long_factor");
}

inline json rope_dict_to_json(const RopeParameters& r, bool with_theta) {
  json d = json::object();
  d["rope_type"] = r.rope_type;
  if (with_theta) d["rope_theta"] = r.rope_theta;
  auto put = [&](const char* k, const auto& v) {
    if (v) d[k] = *v;
  };
  put("factor", r.factor);
  put("attention_factor", r.attention_factor);
  put("beta_fast", r.beta_fast);
  put("beta_slow", r.beta_slow);
  put("mscale", r.mscale);
  put("mscale_all_dim", r.mscale_all_dim);
  put("truncate", r.truncate);
  put("low_freq_factor", r.low_freq_factor);
  put("high_freq_factor", r.high_freq_factor);
  put("original_max_position_embeddings", r.original_max_position_embeddings);
  put("partial_rotary_factor", r.partial_rotary_factor);
  if (!r.short_factor.empty()) d["short_factor"] = r.short_factor;
  if (!r.long_factor.empty()) d["long_factor"] = r.long_factor;
  return d;
}

}  // namespace detail

inline Dots1Config Dots1Config::from_json(const json& j) {
  using namespace detail;
  if (!j.is_object()) throw ConfigError("<root>", show(j), "config.json must hold a JSON object");
  check_model_type(j);
  Dots1Config c;
  static const char* known[] = {
      "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
      "num_attention_heads", "num_key_value_heads", "n_shared_experts", "n_routed_experts", "num_local_experts",
      "n_group", "topk_group", "num_experts_per_tok", "first_k_dense_replace", "norm_topk_prob", "hidden_act",
      "max_position_embeddings", "initializer_range", "rms_norm_eps", "use_cache", "tie_word_embeddings",
      "rope_theta", "rope_scaling", "rope_parameters", "attention_bias", "attention_dropout",
      "routed_scaling_factor", "sliding_window", "max_window_layers", "layer_types", "pad_token_id",
      "bos_token_id", "eos_token_id", "head_dim", "partial_rotary_factor", "scoring_func", "topk_method"};
  auto has = [&](const char* k) { return j.contains(k) && !j.at(k).is_null(); };
  auto int_field = [&](const char* k, int64_t& out) {
    if (has(k)) out = read_int(j, k);
  };
  int_field("vocab_size", c.vocab_size);
  int_field("hidden_size", c.hidden_size);
  int_field("intermediate_size", c.intermediate_size);
  int_field("moe_intermediate_size", c.moe_intermediate_size);
  int_field("num_hidden_layers", c.num_hidden_layers);
  int_field("num_attention_heads", c.num_attention_heads);
  if (j.contains("num_key_value_heads")) c.num_key_value_heads = read_optional_int(j, "num_key_value_heads");
  c.n_shared_experts = read_optional_int(j, "n_shared_experts");
  c.n_routed_experts = read_optional_int(j, "n_routed_experts");
  if (!c.n_routed_experts) c.n_routed_experts = read_optional_int(j, "num_local_experts");  // attribute_map alias
  int_field("n_group", c.n_group);
  int_field("topk_group", c.topk_group);
  c.num_experts_per_tok = read_optional_int(j, "num_experts_per_tok");
  int_field("first_k_dense_replace", c.first_k_dense_replace);
  if (has("norm_topk_prob")) c.norm_topk_prob = read_bool(j, "norm_topk_prob");
  if (has("hidden_act")) c.hidden_act = read_string(j, "hidden_act");
  int_field("max_position_embeddings", c.max_position_embeddings);
  if (has("initializer_range")) c.initializer_range = read_number(j, "initializer_range");
  if (has("rms_norm_eps")) c.rms_norm_eps = read_number(j, "rms_norm_eps");
  if (has("use_cache")) c.use_cache = read_bool(j, "use_cache");
  if (has("tie_word_embeddings")) c.tie_word_embeddings = read_bool(j, "tie_word_embeddings");
  if (has("attention_bias")) c.attention_bias = read_bool(j, "attention_bias");
  if (has("attention_dropout")) c.attention_dropout = read_number(j, "attention_dropout");
  if (has("routed_scaling_factor")) c.routed_scaling_factor = read_number(j, "routed_scaling_factor");
  if (j.contains("sliding_window")) c.sliding_window = read_optional_int(j, "sliding_window");
  int_field("max_window_layers", c.max_window_layers);
  if (has("layer_types")) {
    const json& v = j.at("layer_types");
    if (!v.is_array()) throw ConfigError("layer_types", show(v), "expected a list of strings");
    std::vector<std::string> t;
    for (const auto& x : v) {
      if (!x.is_string()) throw ConfigError("layer_types", show(v), "expected a list of strings");
      t.push_back(x.get<std::string>());
    }
    c.layer_types = std::move(t);
  }
  c.pad_token_id = read_optional_int(j, "pad_token_id");
  c.bos_token_id = read_optional_int(j, "bos_token_id");
  if (has("eos_token_id")) {
    const json& v = j.at("eos_token_id");
    if (v.is_array()) {
      for (const auto& x : v) {
        if (!x.is_number_integer() || beyond_int64(x))
          throw ConfigError("eos_token_id", show(v), "expected an integer or a list of integers");
        c.eos_token_id.push_back(x.get<int64_t>());
      }
    } else {
      c.eos_token_id.push_back(read_int(j, "eos_token_id"));
    }
  }
  c.head_dim_override = read_optional_int(j, "head_dim");
  if (has("partial_rotary_factor")) c.partial_rotary_factor = read_number(j, "partial_rotary_factor");
  if (has("scoring_func")) c.scoring_func = read_string(j, "scoring_func");
  if (has("topk_method")) c.topk_method = read_string(j, "topk_method");

  // RoPE, as HF's convert_rope_params_to_dict / standardize_rope_params fold it: a non-null `rope_scaling`
  // (v4 spelling) wins over `rope_parameters`; the dict's own rope_theta wins over the top-level one; a
  // top-level original_max_position_embeddings wins over the dict's (HF's Phi3 exception).
  if (has("rope_theta")) c.rope.rope_theta = read_number(j, "rope_theta");
  if (has("rope_scaling")) {
    read_rope_dict(j.at("rope_scaling"), "rope_scaling", c.rope);
  } else if (has("rope_parameters")) {
    c.rope_as_parameters = true;
    read_rope_dict(j.at("rope_parameters"), "rope_parameters", c.rope);
  }
  if (has("original_max_position_embeddings"))
    c.rope.original_max_position_embeddings = read_int(j, "original_max_position_embeddings");

  for (auto it = j.begin(); it != j.end(); ++it) {
    bool is_known = false;
    for (const char* k : known) is_known = is_known || it.key() == k;
    if (!is_known) c.extra[it.key()] = it.value();
  }
  c.validate();
  return c;
}

inline json Dots1Config::to_json() const {
  json j = extra;
  j["model_type"] = "dots1";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["moe_intermediate_size"] = moe_intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads ? json(*num_key_value_heads) : json(nullptr);
  j["n_shared_experts"] = n_shared_experts ? json(*n_shared_experts) : json(nullptr);
  j["n_routed_experts"] = n_routed_experts ? json(*n_routed_experts) : json(nullptr);
  j["n_group"] = n_group;
  j["topk_group"] = topk_group;
  j["num_experts_per_tok"] = num_experts_per_tok ? json(*num_experts_per_tok) : json(nullptr);
  j["first_k_dense_replace"] = first_k_dense_replace;
  j["norm_topk_prob"] = norm_topk_prob;
  j["hidden_act"] = hidden_act;
  j["max_position_embeddings"] = max_position_embeddings;
  j["initializer_range"] = initializer_range;
  j["rms_norm_eps"] = rms_norm_eps;
  j["use_cache"] = use_cache;
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (rope_as_parameters) {
    j["rope_parameters"] = detail::rope_dict_to_json(rope, true);
  } else {
    j["rope_theta"] = rope.rope_theta;
    j["rope_scaling"] = rope.rope_type == "default" && !rope.factor && !rope.partial_rotary_factor
                            ? json(nullptr)
                            : detail::rope_dict_to_json(rope, false);
  }
  j["attention_bias"] = attention_bias;
  j["attention_dropout"] = attention_dropout;
  j["routed_scaling_factor"] = routed_scaling_factor;
  j["sliding_window"] = sliding_window ? json(*sliding_window) : json(nullptr);
  j["max_window_layers"] = max_window_layers;
  j["layer_types"] = resolved_layer_types();
  j["pad_token_id"] = pad_token_id ? json(*pad_token_id) : json(nullptr);
  j["bos_token_id"] = bos_token_id ? json(*bos_token_id) : json(nullptr);
  if (eos_token_id.empty())
    j["eos_token_id"] = nullptr;
  else if (eos_token_id.size() == 1)
    j["eos_token_id"] = eos_token_id[0];
  else
    j["eos_token_id"] = eos_token_id;
  if (head_dim_override) j["head_dim"] = *head_dim_override;
  if (partial_rotary_factor) j["partial_rotary_factor"] = *partial_rotary_factor;
  j["scoring_func"] = scoring_func;
  j["topk_method"] = topk_method;
  return j;
}

inline void Dots1Config::validate() const {
  using detail::show_value;
  auto positive = [](const char* field, int64_t v) {
    if (v <= 0) throw ConfigError(field, show_value(v), "must be a positive integer");
  };
  // Sizes that multiply into tensor byte counts stay far below 2^63 when each is below this bound.
  constexpr int64_t kMaxDim = int64_t(1) << 24;
  auto bounded = [&](const char* field, int64_t v) {
    positive(field, v);
    if (v > kMaxDim) throw ConfigError(field, show_value(v), "is absurdly large (limit " + show_value(kMaxDim) + ")");
  };
  bounded("vocab_size", vocab_size);
  bounded("hidden_size", hidden_size);
  bounded("num_hidden_layers", num_hidden_layers);
  bounded("num_attention_heads", num_attention_heads);
  if (num_key_value_heads) bounded("num_key_value_heads", *num_key_value_heads);
  if (num_attention_heads % kv_heads() != 0)
    throw ConfigError("num_key_value_heads", show_value(kv_heads()),
                      "num_attention_heads (" + show_value(num_attention_heads) + ") must be divisible by it");
  if (head_dim_override) bounded("head_dim", *head_dim_override);
  if (head_dim() <= 0)
    throw ConfigError("hidden_size", show_value(hidden_size),
                      "hidden_size / num_attention_heads gives head_dim 0; set head_dim");
  if (head_dim() % 2 != 0)
    throw ConfigError(head_dim_override ? "head_dim" : "hidden_size", show_value(head_dim()),
                      "head_dim must be even (RoPE rotates halves)");
  if (!head_dim_override && hidden_size % num_attention_heads != 0)
    throw ConfigError("hidden_size", show_value(hidden_size),
                      "must be divisible by num_attention_heads (" + show_value(num_attention_heads) +
                          ") when head_dim is not given");
  if (max_position_embeddings <= 0)
    throw ConfigError("max_position_embeddings", show_value(max_position_embeddings), "must be a positive integer");
  // Positions are int32 in every kernel and cache; no model has a context of 2^31 tokens.
  if (max_position_embeddings > std::numeric_limits<int32_t>::max())
    throw ConfigError("max_position_embeddings", show_value(max_position_embeddings), "is absurdly large (limit 2^31 - 1)");
  // RMSNorm divides by sqrt(mean(x^2) + eps): models use 1e-5 or 1e-6. An eps of 0 or one below float's
  // resolution divides by zero on a zero row; one near 1 or above swamps the activations.
  if (!(rms_norm_eps >= 1e-12 && rms_norm_eps <= 0.1))
    throw ConfigError("rms_norm_eps", show_value(rms_norm_eps), "must be > 0 and within [1e-12, 0.1] (models use 1e-5 or 1e-6)");
  if (attention_dropout < 0 || attention_dropout >= 1)
    throw ConfigError("attention_dropout", show_value(attention_dropout), "must be in [0, 1)");
  if (first_k_dense_replace < 0)
    throw ConfigError("first_k_dense_replace", show_value(first_k_dense_replace), "must be >= 0");
  if (first_k_dense_replace > 0) bounded("intermediate_size", intermediate_size);
  static const char* acts[] = {"silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu"};
  bool act_ok = false;
  for (const char* a : acts) act_ok = act_ok || hidden_act == a;
  if (!act_ok)
    throw ConfigError("hidden_act", "\"" + hidden_act + "\"",
                      "unsupported activation (supported: silu, swish, gelu, gelu_new, gelu_pytorch_tanh, relu)");
  if (scoring_func != "sigmoid" && scoring_func != "noaux_tc")
    throw ConfigError("scoring_func", "\"" + scoring_func + "\"",
                      "HF Dots1 always scores experts with sigmoid + e_score_correction_bias; only \"sigmoid\" or "
                      "\"noaux_tc\" describe that");
  if (topk_method != "noaux_tc" && topk_method != "greedy" && topk_method != "group_limited_greedy")
    throw ConfigError("topk_method", "\"" + topk_method + "\"", "expected \"noaux_tc\"");

  if (any_moe_layer()) {
    auto required = [&](const char* field, const std::optional<int64_t>& v) {
      if (!v)
        throw ConfigError(field, "null",
                          "required because layers >= first_k_dense_replace (" + show_value(first_k_dense_replace) +
                              ") are MoE");
      bounded(field, *v);
    };
    required("n_routed_experts", n_routed_experts);
    required("num_experts_per_tok", num_experts_per_tok);
    required("n_shared_experts", n_shared_experts);
    bounded("moe_intermediate_size", moe_intermediate_size);
    positive("n_group", n_group);
    positive("topk_group", topk_group);
    const int64_t experts = *n_routed_experts;
    if (experts % n_group != 0)
      throw ConfigError("n_group", show_value(n_group),
                        "must divide n_routed_experts (" + show_value(experts) + ")");
    if (n_group > 1 && experts / n_group < 2)
      throw ConfigError("n_group", show_value(n_group),
                        "each group needs at least 2 experts (group score = sum of its top-2)");
    if (topk_group > n_group)
      throw ConfigError("topk_group", show_value(topk_group), "must be <= n_group (" + show_value(n_group) + ")");
    const int64_t allowed = topk_group * (experts / n_group);
    if (*num_experts_per_tok > allowed)
      throw ConfigError("num_experts_per_tok", show_value(*num_experts_per_tok),
                        "must be <= topk_group * n_routed_experts / n_group = " + show_value(allowed));
    if (!std::isfinite(routed_scaling_factor))
      throw ConfigError("routed_scaling_factor", show_value(routed_scaling_factor), "must be finite");
  }
  if (sliding_window && *sliding_window <= 0)
    throw ConfigError("sliding_window", show_value(*sliding_window), "must be a positive integer or null");

  // Each size is bounded above, but products over experts and layers can still overflow the int64 parameter
  // and byte counts (count_parameters, `dots1 info`, weight loading). An upper estimate of the parameter
  // count, in double (ample for a bound), must stay below 2^50; dots.llm1 has 1.4e11 (about 2^37).
  {
    const double H = static_cast<double>(hidden_size), d = static_cast<double>(head_dim());
    const double nh = static_cast<double>(num_attention_heads), nkv = static_cast<double>(kv_heads());
    double layer = 2 * H * (nh + nkv) * d + (nh + 2 * nkv) * d + 2 * d + 3 * H;  // attention, biases, norms
    double ffn = first_k_dense_replace > 0 ? 3 * H * static_cast<double>(intermediate_size) : 0;
    if (any_moe_layer()) {
      const double E = static_cast<double>(*n_routed_experts), Im = static_cast<double>(moe_intermediate_size);
      ffn = std::max(ffn, E * H + 3 * H * Im * static_cast<double>(*n_shared_experts) + E * 3 * H * Im);
    }
    const double total = 2 * static_cast<double>(vocab_size) * H + static_cast<double>(num_hidden_layers) * (layer + ffn);
    if (total >= 0x1p50)
      throw ConfigError("<model size>", show_value(total) + " parameters",
                        "the sizes multiply to more than 2^50 parameters, beyond what 64-bit size arithmetic can hold");
  }

  if (layer_types) {
    if (static_cast<int64_t>(layer_types->size()) != num_hidden_layers)
      throw ConfigError("layer_types", show_value(layer_types->size()) + " entries",
                        "must have num_hidden_layers (" + show_value(num_hidden_layers) + ") entries");
    for (const auto& t : *layer_types) {
      if (t != "full_attention" && t != "sliding_attention")
        throw ConfigError("layer_types", "\"" + t + "\"", "each entry must be \"full_attention\" or \"sliding_attention\"");
      if (t == "sliding_attention" && !sliding_window)
        throw ConfigError("layer_types", "\"sliding_attention\"", "a sliding layer needs sliding_window to be set");
    }
  }

  // RoPE
  const auto& r = rope;
  const std::string rt = r.rope_type;
  const std::string where = rope_as_parameters ? "rope_parameters" : "rope_scaling";
  if (!(r.rope_theta > 0)) throw ConfigError(rope_as_parameters ? "rope_parameters.rope_theta" : "rope_theta",
                                             show_value(r.rope_theta), "must be > 0");
  auto need = [&](bool present, const char* key) {
    if (!present) throw ConfigError(where + "." + key, "missing", "required by rope_type \"" + rt + "\"");
  };
  if (rt == "default") {
  } else if (rt == "linear" || rt == "dynamic") {
    need(r.factor.has_value(), "factor");
  } else if (rt == "yarn") {
    need(r.factor.has_value() || r.original_max_position_embeddings.has_value(), "factor");
  } else if (rt == "longrope") {
    need(!r.short_factor.empty(), "short_factor");
    need(!r.long_factor.empty(), "long_factor");
  } else if (rt == "proportional") {
  } else if (rt == "llama3") {
    need(r.factor.has_value(), "factor");
    need(r.low_freq_factor.has_value(), "low_freq_factor");
    need(r.high_freq_factor.has_value(), "high_freq_factor");
    need(r.original_max_position_embeddings.has_value(), "original_max_position_embeddings");
    if (*r.high_freq_factor == *r.low_freq_factor)
      throw ConfigError(where + ".high_freq_factor", show_value(*r.high_freq_factor), "must differ from low_freq_factor");
  } else {
    throw ConfigError(where + ".rope_type", "\"" + rt + "\"",
                      "unknown rope type (supported: default, linear, dynamic, yarn, longrope, llama3, proportional)");
  }
  if (r.factor && !(*r.factor > 0)) throw ConfigError(where + ".factor", show_value(*r.factor), "must be > 0");
  for (const auto& [key, v] : {std::pair{"attention_factor", r.attention_factor}, std::pair{"low_freq_factor", r.low_freq_factor},
                               std::pair{"high_freq_factor", r.high_freq_factor}, std::pair{"beta_fast", r.beta_fast},
                               std::pair{"beta_slow", r.beta_slow}})
    if (v && !(*v > 0)) throw ConfigError(where + "." + key, show_value(*v), "must be > 0");
  for (const auto& [key, list] : {std::pair{"short_factor", &r.short_factor}, std::pair{"long_factor", &r.long_factor}})
    for (double f : *list)  // HF divides the inverse frequencies by these
      if (!(f > 0)) throw ConfigError(where + "." + key, show_value(f), "every entry must be > 0 (the frequencies are divided by it)");
  if (r.original_max_position_embeddings && *r.original_max_position_embeddings <= 0)
    throw ConfigError(where + ".original_max_position_embeddings", show_value(*r.original_max_position_embeddings),
                      "must be a positive integer");
  // Range first: head_dim * factor is converted to an integer below, which is undefined for huge factors.
  for (const auto& [field, prf] : {std::pair{std::string("partial_rotary_factor"), partial_rotary_factor},
                                   std::pair{where + ".partial_rotary_factor", r.partial_rotary_factor}})
    if (prf && !(*prf > 0 && *prf <= 1)) throw ConfigError(field, show_value(*prf), "must be in (0, 1]");
  const double prf = effective_partial_rotary_factor();
  if (rt != "default" && rt != "proportional" &&
      static_cast<int64_t>(static_cast<double>(head_dim()) * prf) != head_dim())
    throw ConfigError(r.partial_rotary_factor ? where + ".partial_rotary_factor" : "partial_rotary_factor", show_value(prf),
                      "HF Dots1 rotates the whole head (its apply_rotary_pos_emb has no pass-through part), so rope_type \"" +
                          rt + "\" with a partial rotary factor fails there; use 1.0, or rope_type \"proportional\"");
  if (rt == "longrope") {
    const auto half = static_cast<size_t>(head_dim() / 2);
    if (r.short_factor.size() != half)
      throw ConfigError(where + ".short_factor", show_value(r.short_factor.size()) + " entries",
                        "must have rotary_dim/2 = " + show_value(half) + " entries");
    if (r.long_factor.size() != half)
      throw ConfigError(where + ".long_factor", show_value(r.long_factor.size()) + " entries",
                        "must have rotary_dim/2 = " + show_value(half) + " entries");
  }
}

inline Dots1Config Dots1Config::load(const std::filesystem::path& path, Dots1Config (*read)(const json&)) {
  const json j = io::read_json_file(path, "config file", limits::kMaxSmallJsonBytes, [&](const std::string& problem) {
    throw ConfigError("<file " + path.string() + ">", "unparsable", "not valid JSON: " + problem);
  });
  try {
    return read(j);
  } catch (const ConfigError& e) {
    throw ConfigError(e.field(), e.value(), e.rule() + " (in " + path.string() + ")");
  }
}

inline void Dots1Config::save(const std::filesystem::path& path) const {
  io::write_file_atomically(path, to_json().dump(2) + "\n");
}

}  // namespace dots1
