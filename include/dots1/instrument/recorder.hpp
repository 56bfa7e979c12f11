// dots1/instrument/recorder.hpp — an instrument that records, per layer and token, the residual stream,
// the attention weights, the router logits and sigmoid scores, and the chosen experts with their weights.
//
//   dots1::Recorder rec;                                   // or Recorder({.attention = false, .layers = {1, 3}})
//   auto out = model.forward(input, nullptr, rec);         // same logits as model.forward(input)
//   const dots1::Recording& r = rec.last();                // r.layers[l].topk_indices, ...
//   dots1::write_trace("trace.safetensors", r, meta);      // dots1/instrument/trace_io.hpp
//
// Each forward call appends one Recording (a prefill and each decode step are separate calls; clear()
// forgets them). Values are stored as float32 whatever the backend computes in.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "dots1/error.hpp"
#include "dots1/instrument/instrument.hpp"

namespace dots1 {

/// What one layer recorded in one forward call (row-major, token t = row * seq + s).
struct LayerRecord {
  int64_t layer = 0;
  std::vector<float> resid_pre, resid_mid, resid_post;  // [B, S, H] each, when residuals are recorded
  AttentionShape attention;                             // heads, q_len, kv_len, ... of attn_weights
  std::vector<float> attn_weights;                      // [B, nh, S, kv_len] post-softmax
  bool moe = false;                                     // routing fields below are set for MoE layers
  int64_t experts = 0, top_k = 0;
  RouterShape router;
  std::vector<float> router_logits, router_scores;  // [B, S, E]: x . W_gate^T and sigmoid of it
  std::vector<float> router_bias;                   // [E] e_score_correction_bias (selection only)
  std::vector<int32_t> topk_indices;                // [B, S, K] in the router's order (descending selection score)
  std::vector<float> topk_weights;                  // [B, S, K] the weights the experts' outputs are scaled by
};

/// One forward call.
struct Recording {
  int64_t batch = 0, seq = 0, past = 0, hidden = 0;
  std::vector<int64_t> input_ids;  // [B, S], empty for inputs_embeds
  std::vector<LayerRecord> layers; // index = layer number (every layer of the model; unrecorded ones are empty)

  std::vector<int64_t> moe_layers() const {
    std::vector<int64_t> out;
    for (const auto& l : layers)
      if (l.moe) out.push_back(l.layer);
    return out;
  }
};

struct RecorderOptions {
  bool residual = true;          // resid_pre, resid_mid, resid_post
  bool attention = true;         // attention weights
  bool routing = true;           // router logits, scores, bias, chosen experts and weights
  std::vector<int64_t> layers;   // the layers to record; empty = all
};

class Recorder : public InstrumentBase {
 public:
  static constexpr bool residual = true;
  static constexpr bool attention_weights = true;
  static constexpr bool routing = true;

  Recorder() = default;
  explicit Recorder(RecorderOptions options) : options_(std::move(options)) {}

  const std::vector<Recording>& recordings() const { return calls_; }
  const Recording& last() const {
    if (calls_.empty()) throw InputError("Recorder: nothing recorded yet (run model.forward(input, cache, recorder) first)");
    return calls_.back();
  }
  void clear() { calls_.clear(); }
  const RecorderOptions& options() const { return options_; }

  void begin_forward(const ForwardEvent& e) {
    Recording r;
    r.batch = e.batch;
    r.seq = e.seq;
    r.past = e.past;
    r.hidden = e.hidden;
    r.input_ids.assign(e.input_ids.begin(), e.input_ids.end());
    r.layers.resize(static_cast<size_t>(e.layers));
    for (int64_t l = 0; l < e.layers; ++l) r.layers[static_cast<size_t>(l)].layer = l;
    calls_.push_back(std::move(r));
  }
  void end_forward() {}

  template <class T>
  bool on_residual(int64_t layer, ResidualPoint p, std::span<T> h) {
    if (!options_.residual || !wanted(layer)) return false;
    auto& rec = at(layer);
    auto& dst = p == ResidualPoint::layer_input ? rec.resid_pre : p == ResidualPoint::after_attention ? rec.resid_mid : rec.resid_post;
    dst.assign(h.begin(), h.end());
    return false;
  }

  template <class T>
  void on_attention_weights(int64_t layer, const AttentionShape& s, std::span<const T> w) {
    if (!options_.attention || !wanted(layer)) return;
    auto& rec = at(layer);
    rec.attention = s;
    rec.attn_weights.assign(w.begin(), w.end());
  }

  template <class T>
  bool on_routing(int64_t layer, const RouterShape& r, std::span<const T> logits, std::span<const T> bias, std::span<int32_t> indices,
                  std::span<T> weights) {
    if (!wanted(layer)) return false;
    auto& rec = at(layer);
    rec.moe = true;
    rec.experts = r.experts;
    rec.top_k = r.top_k;
    rec.router = r;
    if (!options_.routing) return false;
    rec.router_logits.assign(logits.begin(), logits.end());
    rec.router_scores.resize(logits.size());
    for (size_t i = 0; i < logits.size(); ++i)  // in the compute type, as the router does
      rec.router_scores[i] = static_cast<float>(T(1) / (T(1) + std::exp(-logits[i])));
    rec.router_bias.assign(bias.begin(), bias.end());
    rec.topk_indices.assign(indices.begin(), indices.end());
    rec.topk_weights.assign(weights.begin(), weights.end());
    return false;
  }

 private:
  bool wanted(int64_t layer) const {
    return options_.layers.empty() || std::find(options_.layers.begin(), options_.layers.end(), layer) != options_.layers.end();
  }
  LayerRecord& at(int64_t layer) { return calls_.back().layers.at(static_cast<size_t>(layer)); }

  RecorderOptions options_;
  std::vector<Recording> calls_;
};

}  // namespace dots1
