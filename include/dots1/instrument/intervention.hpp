// dots1/instrument/intervention.hpp — an instrument that edits the model while it runs: the residual
// stream, the routers' choices, attention heads and experts.
//
//   dots1::Intervention edit;
//   edit.zero_head(2, 1)                                   // layer 2, head 1: its output before o_proj is 0
//       .zero_expert(3, 7)                                 // layer 3, routed expert 7: weight 0 where chosen
//       .forbid_expert(3, 5)                               // never selected in layer 3
//       .force_experts(1, {4, 0}, dots1::Tokens::at(0, 6)) // layer 1, row 0 at cache index 6: experts 4 and 0
//       .add_to_residual(2, dots1::ResidualPoint::layer_input, steering_vector);
//   auto out = model.forward(input, nullptr, edit);
//   dots1::Chain both{edit, recorder};                     // record the edited model
//
// Semantics (HF's router, spec 4.4): selection scores are sigmoid(logits) + e_score_correction_bias, with
// group-limited top-k; weights are the sigmoid scores of the chosen experts, renormalised when
// norm_topk_prob, times routed_scaling_factor.
//   force_experts   the given experts (exactly num_experts_per_tok distinct ones) replace the choice; their
//                   weights follow the rule above. Groups are not consulted.
//   forbid_expert   the expert's selection score is -inf before group-limited top-k (as a -inf correction
//                   bias in HF); the rest of the choice follows HF's rule. Forcing wins over forbidding.
//   zero_expert     the choice is unchanged, the expert's weight becomes 0 (= its down_proj zeroed in HF).
//   zero_head       the head's slice of the attention output before o_proj is 0 (= its o_proj columns zeroed).
//   add_to_residual / edit_residual: the residual stream at a ResidualPoint is changed for the selected
//                   tokens; the edit propagates to everything after it.
// Tokens are addressed by batch row and cache index (past + s, the position of a token in its row's
// cache), -1 meaning any. Edits naming a layer or head the model lacks, or routing edits on a dense layer,
// are errors (InputError).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "dots1/error.hpp"
#include "dots1/instrument/instrument.hpp"
#include "dots1/kernels/portable.hpp"

namespace dots1 {

/// Which tokens an edit applies to: batch row and cache index, -1 = any.
struct Tokens {
  int64_t row = -1, position = -1;
  static Tokens all() { return {}; }
  static Tokens at(int64_t row, int64_t position) { return {row, position}; }
  static Tokens position_of_every_row(int64_t position) { return {-1, position}; }
  bool matches(int64_t r, int64_t p) const { return (row < 0 || row == r) && (position < 0 || position == p); }
};

class Intervention : public InstrumentBase {
 public:
  static constexpr bool residual = true;
  static constexpr bool attention_output = true;
  static constexpr bool routing = true;

  /// Called with one token's residual row [H] (row, cache index, values); edit in place.
  using ResidualEdit = std::function<void(int64_t row, int64_t position, std::span<float> h)>;

  Intervention& zero_head(int64_t layer, int64_t head) {
    heads_.push_back({layer, head});
    return *this;
  }
  Intervention& zero_expert(int64_t layer, int64_t expert) {
    zeroed_.push_back({layer, expert});
    return *this;
  }
  Intervention& forbid_expert(int64_t layer, int64_t expert) {
    forbidden_.push_back({layer, expert});
    return *this;
  }
  Intervention& force_experts(int64_t layer, std::vector<int64_t> experts, Tokens where = {}) {
    forced_.push_back({layer, std::move(experts), where});
    return *this;
  }
  Intervention& edit_residual(int64_t layer, ResidualPoint point, ResidualEdit edit, Tokens where = {}) {
    residual_.push_back({layer, point, std::move(edit), where});
    return *this;
  }
  /// h += v for the selected tokens (a steering vector; v has hidden_size values).
  Intervention& add_to_residual(int64_t layer, ResidualPoint point, std::vector<float> v, Tokens where = {}) {
    return edit_residual(layer, point, [v = std::move(v)](int64_t, int64_t, std::span<float> h) {
      if (h.size() != v.size())
        throw InputError("Intervention::add_to_residual: the vector has " + std::to_string(v.size()) + " values, the hidden size is " +
                         std::to_string(h.size()));
      for (size_t i = 0; i < h.size(); ++i) h[i] += v[i];
    }, where);
  }
  void clear() { *this = Intervention(); }
  bool empty() const { return heads_.empty() && zeroed_.empty() && forbidden_.empty() && forced_.empty() && residual_.empty(); }

  // ---------------------------------------------------------------- hooks (called by the model)
  void begin_forward(const ForwardEvent& e) {
    event_ = e;
    routed_layers_.clear();
    auto check = [&](int64_t layer, const char* what) {
      if (layer < 0 || layer >= e.layers)
        throw InputError(std::string("Intervention: ") + what + " names layer " + std::to_string(layer) + ", the model has layers 0.." +
                         std::to_string(e.layers - 1));
    };
    for (const auto& h : heads_) check(h.layer, "zero_head");
    for (const auto& z : zeroed_) check(z.layer, "zero_expert");
    for (const auto& f : forbidden_) check(f.layer, "forbid_expert");
    for (const auto& f : forced_) check(f.layer, "force_experts");
    for (const auto& r : residual_) check(r.layer, "edit_residual");
  }
  void end_forward() {
    auto check = [&](int64_t layer, const char* what) {
      if (std::find(routed_layers_.begin(), routed_layers_.end(), layer) == routed_layers_.end())
        throw InputError(std::string("Intervention: ") + what + " names layer " + std::to_string(layer) +
                         ", which has no router (a dense layer: first_k_dense_replace)");
    };
    for (const auto& z : zeroed_) check(z.layer, "zero_expert");
    for (const auto& f : forbidden_) check(f.layer, "forbid_expert");
    for (const auto& f : forced_) check(f.layer, "force_experts");
  }

  template <class T>
  bool on_residual(int64_t layer, ResidualPoint p, std::span<T> h) {
    bool edited = false;
    const int64_t H = event_.hidden;
    std::vector<float> row(static_cast<size_t>(H));
    for (const auto& r : residual_) {
      if (r.layer != layer || r.point != p) continue;
      for (int64_t b = 0; b < event_.batch; ++b)
        for (int64_t s = 0; s < event_.seq; ++s) {
          if (!r.where.matches(b, event_.past + s)) continue;
          T* x = h.data() + (b * event_.seq + s) * H;
          std::copy(x, x + H, row.begin());
          r.edit(b, event_.past + s, std::span<float>(row));
          std::copy(row.begin(), row.end(), x);
          edited = true;
        }
    }
    return edited;
  }

  template <class T>
  bool on_attention_output(int64_t layer, const AttentionShape& s, std::span<T> o) {
    bool edited = false;
    const int64_t width = s.heads * s.head_dim, tokens = static_cast<int64_t>(o.size()) / width;
    for (const auto& h : heads_) {
      if (h.layer != layer) continue;
      if (h.head < 0 || h.head >= s.heads)
        throw InputError("Intervention: zero_head names head " + std::to_string(h.head) + " of layer " + std::to_string(layer) + ", which has heads 0.." +
                         std::to_string(s.heads - 1));
      for (int64_t t = 0; t < tokens; ++t) std::fill_n(o.data() + t * width + h.head * s.head_dim, s.head_dim, T(0));
      edited = true;
    }
    return edited;
  }

  template <class T>
  bool on_routing(int64_t layer, const RouterShape& r, std::span<const T> logits, std::span<const T> bias, std::span<int32_t> indices,
                  std::span<T> weights) {
    routed_layers_.push_back(layer);
    const int64_t E = r.experts, K = r.top_k, tokens = static_cast<int64_t>(indices.size()) / K;
    auto check_expert = [&](int64_t e, const char* what) {
      if (e < 0 || e >= E)
        throw InputError(std::string("Intervention: ") + what + " names expert " + std::to_string(e) + " of layer " + std::to_string(layer) +
                         ", which has experts 0.." + std::to_string(E - 1));
    };
    // forbidden experts: a -inf correction bias, then the router's own rule on this token
    std::vector<T> forbid_bias(bias.begin(), bias.end());
    bool any_forbidden = false;
    for (const auto& f : forbidden_)
      if (f.layer == layer) {
        check_expert(f.expert, "forbid_expert");
        forbid_bias[static_cast<size_t>(f.expert)] = -INFINITY;
        any_forbidden = true;
      }
    std::vector<T> scratch(static_cast<size_t>(E + r.n_group));
    bool edited = false;
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t row = t / event_.seq, position = event_.past + t % event_.seq;
      const Forced* force = nullptr;
      for (const auto& f : forced_)
        if (f.layer == layer && f.where.matches(row, position)) force = &f;  // the last matching one wins
      int32_t* idx = indices.data() + t * K;
      T* w = weights.data() + t * K;
      const T* l = logits.data() + t * E;
      if (force) {
        if (static_cast<int64_t>(force->experts.size()) != K)
          throw InputError("Intervention: force_experts on layer " + std::to_string(layer) + " gives " + std::to_string(force->experts.size()) +
                           " experts, the router chooses num_experts_per_tok = " + std::to_string(K));
        T sum = 0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t e = force->experts[static_cast<size_t>(k)];
          check_expert(e, "force_experts");
          for (int64_t j = 0; j < k; ++j)
            if (force->experts[static_cast<size_t>(j)] == e)
              throw InputError("Intervention: force_experts on layer " + std::to_string(layer) + " names expert " + std::to_string(e) + " twice");
          idx[k] = static_cast<int32_t>(e);
          w[k] = T(1) / (T(1) + std::exp(-l[e]));
          sum += w[k];
        }
        const T denominator = sum + T(1e-20);
        for (int64_t k = 0; k < K; ++k) {
          if (r.norm_topk_prob) w[k] = w[k] / denominator;
          w[k] = w[k] * static_cast<T>(static_cast<float>(r.routed_scaling_factor));
        }
        edited = true;
      } else if (any_forbidden) {
        kernels::RouteToken<T> route{l, forbid_bias.data(), idx, w, scratch.data(), E, K, r.n_group, r.topk_group, r.norm_topk_prob,
                                     static_cast<T>(static_cast<float>(r.routed_scaling_factor))};
        route(0);
        for (int64_t k = 0; k < K; ++k)
          if (forbid_bias[static_cast<size_t>(idx[k])] == -INFINITY)
            throw InputError("Intervention: layer " + std::to_string(layer) + " has fewer than num_experts_per_tok = " + std::to_string(K) +
                             " experts left to choose from in its kept groups once the forbidden ones are removed");
        edited = true;
      }
      for (const auto& z : zeroed_)
        if (z.layer == layer) {
          check_expert(z.expert, "zero_expert");
          for (int64_t k = 0; k < K; ++k)
            if (idx[k] == z.expert) {
              w[k] = T(0);
              edited = true;
            }
        }
    }
    return edited;
  }

 private:
  struct Head {
    int64_t layer, head;
  };
  struct Expert {
    int64_t layer, expert;
  };
  struct Forced {
    int64_t layer;
    std::vector<int64_t> experts;
    Tokens where;
  };
  struct Residual {
    int64_t layer;
    ResidualPoint point;
    ResidualEdit edit;
    Tokens where;
  };
  std::vector<Head> heads_;
  std::vector<Expert> zeroed_, forbidden_;
  std::vector<Forced> forced_;
  std::vector<Residual> residual_;
  ForwardEvent event_;
  std::vector<int64_t> routed_layers_;
};

}  // namespace dots1
