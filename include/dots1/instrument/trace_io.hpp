// dots1/instrument/trace_io.hpp — a Recording as a safetensors file (a "trace"), and back.
//
// Tensor names (B batch rows, S tokens, H hidden, nh heads, kv keys, E routed experts, K experts per token;
// a tensor is present only when it was recorded; layer l as in HF's model.layers.{l}):
//   input_ids                   I64 [B, S]
//   logits                      F32 [B, S, V]        (when given to write_trace)
//   layers.{l}.resid_pre        F32 [B, S, H]        residual stream entering layer l (HF hidden_states[l])
//   layers.{l}.resid_mid        F32 [B, S, H]        after the attention sub-block
//   layers.{l}.resid_post       F32 [B, S, H]        leaving layer l
//   layers.{l}.attn_weights     F32 [B, nh, S, kv]   post-softmax attention weights
//   layers.{l}.router_logits    F32 [B, S, E]        MoE layers: x . W_gate^T
//   layers.{l}.router_scores    F32 [B, S, E]        sigmoid(router_logits)
//   layers.{l}.router_bias      F32 [E]              e_score_correction_bias (selection only)
//   layers.{l}.topk_indices     I64 [B, S, K]        chosen experts, in descending selection score
//   layers.{l}.topk_weights     F32 [B, S, K]        their weights (renormalised, routed_scaling_factor applied)
// String metadata: format = "dots1-trace", version = "1", tokens (JSON array of the decoded text of each
// token of row 0), model (the checkpoint path), config (the model's config.json, JSON), router (JSON:
// experts, top_k, n_group, topk_group, norm_topk_prob, routed_scaling_factor), past (cache length before
// the traced call). In Python: `safetensors.torch.load_file(path)` and `safe_open(path, "pt").metadata()`.
#pragma once

#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/instrument/recorder.hpp"
#include "dots1/base/json_input.hpp"
#include "dots1/base/memory_check.hpp"
#include "dots1/io/safetensors.hpp"
#include "dots1/base/forward_io.hpp"

namespace dots1 {

/// What a trace holds besides the recording.
struct TraceInfo {
  std::vector<std::string> tokens;  // decoded text of each token (row 0), for labels
  std::string model;                // where the weights came from
  nlohmann::json config = nlohmann::json::object();  // config.json of the model
};

/// A trace read back.
struct Trace {
  std::string path;
  Recording recording;
  TraceInfo info;
  HostTensor<float> logits;  // empty when the trace has none

  const LayerRecord& layer(int64_t l) const { return recording.layers.at(static_cast<size_t>(l)); }
};

inline constexpr const char* kTraceFormat = "dots1-trace";

/// Writes `r` (one forward call) with `info` and optionally the logits [B, S, V] to `path` (atomically).
inline void write_trace(const std::filesystem::path& path, const Recording& r, const TraceInfo& info, const HostTensor<float>* logits = nullptr) {
  const int64_t B = r.batch, S = r.seq, H = r.hidden;
  std::vector<TensorToWrite> t;
  if (!r.input_ids.empty()) t.push_back(TensorToWrite::from<int64_t>("input_ids", {B, S}, r.input_ids));
  if (logits && !logits->values.empty()) t.push_back(TensorToWrite::from<float>("logits", logits->shape, logits->values));
  nlohmann::json router = nlohmann::json::object();
  for (const auto& l : r.layers) {
    const std::string p = "layers." + std::to_string(l.layer) + ".";
    if (!l.resid_pre.empty()) t.push_back(TensorToWrite::from<float>(p + "resid_pre", {B, S, H}, l.resid_pre));
    if (!l.resid_mid.empty()) t.push_back(TensorToWrite::from<float>(p + "resid_mid", {B, S, H}, l.resid_mid));
    if (!l.resid_post.empty()) t.push_back(TensorToWrite::from<float>(p + "resid_post", {B, S, H}, l.resid_post));
    if (!l.attn_weights.empty())
      t.push_back(TensorToWrite::from<float>(p + "attn_weights", {B, l.attention.heads, S, l.attention.kv_len}, l.attn_weights));
    if (l.moe && !l.topk_indices.empty()) {
      const int64_t E = l.experts, K = l.top_k;
      t.push_back(TensorToWrite::from<float>(p + "router_logits", {B, S, E}, l.router_logits));
      t.push_back(TensorToWrite::from<float>(p + "router_scores", {B, S, E}, l.router_scores));
      t.push_back(TensorToWrite::from<float>(p + "router_bias", {E}, l.router_bias));
      const std::vector<int64_t> idx(l.topk_indices.begin(), l.topk_indices.end());
      t.push_back(TensorToWrite::from<int64_t>(p + "topk_indices", {B, S, K}, idx));
      t.push_back(TensorToWrite::from<float>(p + "topk_weights", {B, S, K}, l.topk_weights));
      router = {{"experts", E}, {"top_k", K}, {"n_group", l.router.n_group}, {"topk_group", l.router.topk_group},
                {"norm_topk_prob", l.router.norm_topk_prob}, {"routed_scaling_factor", l.router.routed_scaling_factor}};
    }
  }
  std::map<std::string, std::string> meta{{"format", kTraceFormat},
                                          {"version", "1"},
                                          {"tokens", nlohmann::json(info.tokens).dump()},
                                          {"model", info.model},
                                          {"config", info.config.dump()},
                                          {"router", router.dump()},
                                          {"layers", std::to_string(r.layers.size())},
                                          {"past", std::to_string(r.past)}};
  write_safetensors(path, t, meta);
}

namespace trace_detail {

/// A non-negative decimal integer of trace metadata, at most `max` (no sign, no spaces, no trailing text).
inline int64_t metadata_count(const std::string& text, const char* key, int64_t max, const std::string& path) {
  bool ok = !text.empty() && text.size() <= 19 && text.find_first_not_of("0123456789") == std::string::npos;
  const int64_t v = ok ? std::stoll(text) : 0;
  if (!ok || v > max)
    throw SafetensorsError(path + ": trace metadata '" + key + "' = '" + shown(text) + "' is not a count in [0, " + std::to_string(max) + "]");
  return v;
}

}  // namespace trace_detail

/// Reads a trace written by write_trace (or by `dots1 trace`), checking everything the report and any other
/// reader index with: the metadata (format, counts, JSON), that every tensor is one of the trace's names for a
/// layer below `layers`, and that all shapes agree on [B, S, H], heads, the cache length past + S, the
/// experts E and top-k K, with every chosen expert in [0, E). A file that breaks any of these raises
/// SafetensorsError naming it, so a report never reads or writes outside a tensor. (From a file already parsed,
/// e.g. SafetensorsFile::parse_buffer; the path overload below opens one.)
inline Trace read_trace(const SafetensorsFile& f) {
  const std::filesystem::path path = f.path();
  const std::string where = shown(path.string());
  const auto& meta = f.metadata();
  auto get = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end()) throw SafetensorsError(where + ": not a dots1 trace (no metadata '" + key + "'; write it with `dots1 trace`)");
    return it->second;
  };
  auto bad = [&](const std::string& what) -> SafetensorsError { return SafetensorsError(where + ": " + what); };
  if (get("format") != kTraceFormat) throw bad("metadata format is '" + shown(get("format")) + "', expected " + kTraceFormat);
  if (const auto v = meta.find("version"); v != meta.end() && v->second != "1")
    throw bad("trace format version '" + shown(v->second) + "' is not 1 (written by a newer dots1?)");
  Trace tr;
  tr.path = path.string();
  auto json_of = [&](const char* key) {
    return io::parse_json(get(key), [&](const std::string& problem) -> void {
      throw bad(std::string("trace metadata '") + key + "' is not valid JSON: " + problem);
    });
  };
  const nlohmann::json tokens = json_of("tokens"), router = json_of("router");
  tr.info.config = json_of("config");
  if (!tokens.is_array()) throw bad("trace metadata 'tokens' must be a JSON list of strings");
  for (const auto& t : tokens) {
    if (!t.is_string()) throw bad("trace metadata 'tokens' must be a JSON list of strings, not " + io::shown_json(t));
    tr.info.tokens.push_back(t.get<std::string>());
  }
  if (!router.is_object()) throw bad("trace metadata 'router' must be a JSON object");
  tr.info.model = get("model");
  Recording& r = tr.recording;
  r.past = trace_detail::metadata_count(get("past"), "past", int64_t(1) << 31, where);
  // A layer record per layer is allocated: no model has more than a few hundred layers.
  const int64_t n_layers = trace_detail::metadata_count(get("layers"), "layers", 65536, where);

  // Every tensor must be one of the trace's; the layer tensors are gathered per layer.
  static const std::set<std::string> layer_fields = {"resid_pre", "resid_mid", "resid_post", "attn_weights", "router_logits",
                                                     "router_scores", "router_bias", "topk_indices", "topk_weights"};
  std::map<int64_t, std::map<std::string, const TensorView*>> per_layer;
  uint64_t held = 0;
  for (const auto& [name, t] : f.tensors()) {
    held = saturating_add(held, checked_bytes({t.numel(), 4}));
    if (name == "input_ids" || name == "logits") continue;
    const auto dot = name.find('.', 7);
    const std::string number = name.compare(0, 7, "layers.") == 0 && dot != std::string::npos ? name.substr(7, dot - 7) : "";
    const std::string field = dot != std::string::npos ? name.substr(dot + 1) : "";
    if (number.empty() || number.size() > 8 || number.find_first_not_of("0123456789") != std::string::npos || !layer_fields.count(field))
      throw bad("tensor '" + shown(name) + "' is not part of a dots1 trace (input_ids, logits, layers.{l}.resid_pre, ...)");
    const int64_t l = std::stoll(number);
    if (l >= n_layers) throw bad("tensor '" + shown(name) + "' is for layer " + number + ", but the trace has " + std::to_string(n_layers) + " layers");
    per_layer[l][field] = &t;
  }
  check_allocation(held, "reading trace " + where);

  // The geometry, from the first tensor that has it; every other tensor must agree.
  int64_t B = -1, S = -1, H = -1, E = -1, K = -1;
  auto agree = [&](int64_t& dim, int64_t value, const char* what, const std::string& name) {
    if (dim < 0) dim = value;
    else if (dim != value)
      throw bad("tensor '" + shown(name) + "' has " + what + " " + std::to_string(value) + ", other tensors of the trace have " + std::to_string(dim));
  };
  auto shaped = [&](const TensorView& t, size_t rank, bool floating) {
    if (t.shape.size() != rank)
      throw bad("tensor '" + shown(t.name) + "' has shape " + t.shape_string() + ", expected " + std::to_string(rank) + " dimensions");
    const bool is_float = t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 || t.dtype == DType::F64;
    const bool is_int = t.dtype == DType::I64 || t.dtype == DType::I32 || t.dtype == DType::I16 || t.dtype == DType::I8 || t.dtype == DType::U8;
    if (floating ? !is_float : !is_int)
      throw bad("tensor '" + shown(t.name) + "' has dtype " + dtype_name(t.dtype) + ", expected " + (floating ? "a float dtype" : "an integer dtype"));
    for (auto d : t.shape)
      if (d <= 0) throw bad("tensor '" + shown(t.name) + "' has an empty dimension (shape " + t.shape_string() + ")");
  };
  if (const auto* ids = f.find("input_ids")) {
    shaped(*ids, 2, false);
    agree(B, ids->shape[0], "batch", ids->name);
    agree(S, ids->shape[1], "sequence length", ids->name);
    r.input_ids = ids->to_int64();
  }
  if (const auto* lg = f.find("logits")) {
    shaped(*lg, 3, true);
    agree(B, lg->shape[0], "batch", lg->name);
    agree(S, lg->shape[1], "sequence length", lg->name);
    tr.logits = {lg->shape, lg->to_vector<float>()};
  }
  r.layers.resize(static_cast<size_t>(n_layers));
  for (int64_t l = 0; l < n_layers; ++l) r.layers[static_cast<size_t>(l)].layer = l;
  for (auto& layer_fields : per_layer) {  // not a structured binding: clang 14 cannot capture one in a lambda
    const int64_t l = layer_fields.first;
    const auto& fields = layer_fields.second;
    LayerRecord& rec = r.layers[static_cast<size_t>(l)];
    auto field = [&](const char* key) -> const TensorView* {
      auto it = fields.find(key);
      return it == fields.end() ? nullptr : it->second;
    };
    for (const char* key : {"resid_pre", "resid_mid", "resid_post"})
      if (const auto* v = field(key)) {
        shaped(*v, 3, true);
        agree(B, v->shape[0], "batch", v->name);
        agree(S, v->shape[1], "sequence length", v->name);
        agree(H, v->shape[2], "hidden size", v->name);
        (std::string(key) == "resid_pre" ? rec.resid_pre : std::string(key) == "resid_mid" ? rec.resid_mid : rec.resid_post) = v->to_vector<float>();
      }
    if (const auto* v = field("attn_weights")) {
      shaped(*v, 4, true);
      agree(B, v->shape[0], "batch", v->name);
      agree(S, v->shape[2], "query length", v->name);
      if (v->shape[3] != r.past + v->shape[2])
        throw bad("tensor '" + shown(v->name) + "' has " + std::to_string(v->shape[3]) + " keys, but past + sequence length = " +
                  std::to_string(r.past + v->shape[2]));
      rec.attention.batch = v->shape[0];
      rec.attention.heads = v->shape[1];
      rec.attention.q_len = v->shape[2];
      rec.attention.kv_len = v->shape[3];
      rec.attn_weights = v->to_vector<float>();
    }
    const char* routing[] = {"router_logits", "router_scores", "router_bias", "topk_indices", "topk_weights"};
    int present = 0;
    for (const char* key : routing) present += field(key) != nullptr;
    if (present == 0) continue;
    if (present != 5)
      throw bad("layer " + std::to_string(l) + " has only some of the routing tensors (router_logits, router_scores, router_bias, topk_indices, "
                "topk_weights: a trace holds all five or none)");
    for (const char* key : {"router_logits", "router_scores", "topk_indices", "topk_weights"}) {
      const auto* v = field(key);
      shaped(*v, 3, std::string(key) != "topk_indices");
      agree(B, v->shape[0], "batch", v->name);
      agree(S, v->shape[1], "sequence length", v->name);
      agree(std::string(key).compare(0, 4, "topk") == 0 ? K : E, v->shape[2], std::string(key).compare(0, 4, "topk") == 0 ? "top-k" : "experts",
            v->name);
    }
    const auto* bias = field("router_bias");
    shaped(*bias, 1, true);
    agree(E, bias->shape[0], "experts", bias->name);
    if (K > E) throw bad("layer " + std::to_string(l) + " chooses " + std::to_string(K) + " experts per token of " + std::to_string(E));
    rec.moe = true;
    rec.experts = E;
    rec.top_k = K;
    const auto i64 = field("topk_indices")->to_int64();
    for (int64_t e : i64)
      if (e < 0 || e >= E)
        throw bad("tensor 'layers." + std::to_string(l) + ".topk_indices' holds expert " + std::to_string(e) + ", outside [0, " + std::to_string(E) + ")");
    rec.topk_indices.assign(i64.begin(), i64.end());
    rec.topk_weights = field("topk_weights")->to_vector<float>();
    rec.router_logits = field("router_logits")->to_vector<float>();
    rec.router_scores = field("router_scores")->to_vector<float>();
    rec.router_bias = bias->to_vector<float>();
  }
  if (B < 0) throw bad("the trace holds no tensors (nothing was recorded)");
  r.batch = B;
  r.seq = S;
  r.hidden = std::max<int64_t>(H, 0);
  if (!r.input_ids.empty() && !tr.info.tokens.empty() && static_cast<int64_t>(tr.info.tokens.size()) != S)
    throw bad("trace metadata 'tokens' has " + std::to_string(tr.info.tokens.size()) + " entries for " + std::to_string(S) + " tokens");
  // The router's settings, for the margins: checked like the config's (a group must divide the experts, ...).
  if (E > 0) {
    auto integer = [&](const char* key, int64_t fallback, int64_t lo, int64_t hi) {
      if (!router.contains(key)) return fallback;
      const auto v = io::json_int64(router[key]);
      if (!v || *v < lo || *v > hi)
        throw bad(std::string("trace metadata router.") + key + " = " + io::shown_json(router[key]) + " is not an integer in [" + std::to_string(lo) +
                  ", " + std::to_string(hi) + "]");
      return *v;
    };
    integer("experts", E, E, E);
    integer("top_k", K, K, K);
    const int64_t groups = integer("n_group", 1, 1, E);
    if (E % groups != 0) throw bad("trace metadata router.n_group = " + std::to_string(groups) + " does not divide the " + std::to_string(E) + " experts");
    const int64_t kept = integer("topk_group", 1, 1, groups);
    if (router.contains("norm_topk_prob") && !router["norm_topk_prob"].is_boolean()) throw bad("trace metadata router.norm_topk_prob must be true or false");
    if (router.contains("routed_scaling_factor") &&
        (!router["routed_scaling_factor"].is_number() || !std::isfinite(router["routed_scaling_factor"].get<double>())))
      throw bad("trace metadata router.routed_scaling_factor must be a finite number");
    for (auto& rec : r.layers) {
      if (!rec.moe) continue;
      rec.router.experts = E;
      rec.router.top_k = K;
      rec.router.n_group = groups;
      rec.router.topk_group = kept;
      rec.router.norm_topk_prob = router.value("norm_topk_prob", false);
      rec.router.routed_scaling_factor = router.value("routed_scaling_factor", 1.0);
    }
  }
  return tr;
}

/// read_trace of the file at `path` (a regular file; base/input_file.hpp).
inline Trace read_trace(const std::filesystem::path& path) { return read_trace(SafetensorsFile::open(path)); }

}  // namespace dots1
