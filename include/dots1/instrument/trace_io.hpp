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

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/instrument/recorder.hpp"
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

/// Reads a trace written by write_trace (or by `dots1 trace`).
inline Trace read_trace(const std::filesystem::path& path) {
  const auto f = SafetensorsFile::open(path);
  const auto& meta = f.metadata();
  auto get = [&](const char* key) -> std::string {
    auto it = meta.find(key);
    if (it == meta.end()) throw SafetensorsError(path.string() + ": not a dots1 trace (no metadata '" + key + "'; write it with `dots1 trace`)");
    return it->second;
  };
  if (get("format") != kTraceFormat) throw SafetensorsError(path.string() + ": metadata format is '" + get("format") + "', expected " + kTraceFormat);
  Trace tr;
  tr.path = path.string();
  nlohmann::json router;
  try {
    tr.info.tokens = nlohmann::json::parse(get("tokens")).get<std::vector<std::string>>();
    tr.info.config = nlohmann::json::parse(get("config"));
    router = nlohmann::json::parse(get("router"));
  } catch (const nlohmann::json::exception& e) {
    throw SafetensorsError(path.string() + ": trace metadata is not valid JSON: " + e.what());
  }
  tr.info.model = get("model");
  Recording& r = tr.recording;
  r.past = std::stoll(get("past"));
  const auto n_layers = std::stoll(get("layers"));
  r.layers.resize(static_cast<size_t>(n_layers));
  // geometry from whichever tensor has it
  auto geometry = [&](const TensorView& v, size_t hidden_axis) {
    r.batch = v.shape.at(0);
    r.seq = v.shape.at(1);
    if (hidden_axis) r.hidden = v.shape.at(hidden_axis);
  };
  if (const auto* ids = f.find("input_ids")) {
    r.input_ids = ids->to_int64();
    geometry(*ids, 0);
  }
  if (const auto* lg = f.find("logits")) tr.logits = {lg->shape, lg->to_vector<float>()};
  for (int64_t l = 0; l < n_layers; ++l) {
    LayerRecord& rec = r.layers[static_cast<size_t>(l)];
    rec.layer = l;
    const std::string p = "layers." + std::to_string(l) + ".";
    auto floats = [&](const std::string& name, std::vector<float>& dst) -> const TensorView* {
      const auto* v = f.find(p + name);
      if (v) dst = v->to_vector<float>();
      return v;
    };
    if (const auto* v = floats("resid_pre", rec.resid_pre)) geometry(*v, 2);
    if (const auto* v = floats("resid_mid", rec.resid_mid)) geometry(*v, 2);
    if (const auto* v = floats("resid_post", rec.resid_post)) geometry(*v, 2);
    if (const auto* v = floats("attn_weights", rec.attn_weights)) {
      rec.attention.batch = v->shape.at(0);
      rec.attention.heads = v->shape.at(1);
      rec.attention.q_len = v->shape.at(2);
      rec.attention.kv_len = v->shape.at(3);
    }
    if (const auto* idx = f.find(p + "topk_indices")) {
      geometry(*idx, 0);
      rec.moe = true;
      rec.top_k = idx->shape.at(2);
      const auto i64 = idx->to_int64();
      rec.topk_indices.assign(i64.begin(), i64.end());
      floats("topk_weights", rec.topk_weights);
      if (const auto* lg = floats("router_logits", rec.router_logits)) rec.experts = lg->shape.at(2);
      floats("router_scores", rec.router_scores);
      floats("router_bias", rec.router_bias);
      rec.router.experts = rec.experts;
      rec.router.top_k = rec.top_k;
      rec.router.n_group = router.value("n_group", int64_t{1});
      rec.router.topk_group = router.value("topk_group", int64_t{1});
      rec.router.norm_topk_prob = router.value("norm_topk_prob", false);
      rec.router.routed_scaling_factor = router.value("routed_scaling_factor", 1.0);
    }
  }
  return tr;
}

}  // namespace dots1
