// dots1/instrument/instrument.hpp — the instrument policy of the decoder stack: compile-time hooks into
// every block, free when unused.
//
// `model.forward(input, cache, instrument)` runs the model with an instrument: any type that says, with
// four `static constexpr bool` flags, which hooks it wants. The model calls a hook only inside
// `if constexpr (Instrument::flag)`, and `model.forward(input, cache)` passes no instrument at all (an
// empty parameter pack), so the plain forward compiles to the same machine code as a model without hooks;
// `model.forward(input, cache, NoInstrument{})` (all flags off) calls that plain forward. Hooks see host
// copies of the backend's buffers (downloaded only for the hooks that are on) and may edit them; an edit
// is uploaded back before the model goes on. Instruments need the whole model in one process (not split
// across ranks by dots1/parallel/).
//
//   flag                hook (T = the backend's Scalar)                                         when
//   (any flag)          void begin_forward(const ForwardEvent&); void end_forward();            around each forward
//   residual            bool on_residual(int64_t layer, ResidualPoint, std::span<T> h)          h [B*S, H]; 3 points per layer
//   attention_weights   void on_attention_weights(int64_t layer, const AttentionShape&,         post-softmax [B, nh, S, kv_len]
//                                             std::span<const T> w)
//   attention_output    bool on_attention_output(int64_t layer, const AttentionShape&,          per-head outputs before o_proj,
//                                              std::span<T> o)                                  [B*S, nh*d]
//   routing             bool on_routing(int64_t layer, const RouterShape&,                      after the router, before the
//                                     std::span<const T> logits, std::span<const T> bias,       experts: logits [B*S, E], bias
//                                     std::span<int32_t> indices, std::span<T> weights)         [E], chosen [B*S, K] + weights
//
// A hook that returns true has edited its span; the model then uses the edited values. Layers are numbered
// as in HF (model.layers.{i}); routing hooks run for MoE layers only. Ready-made instruments:
// dots1/instrument/recorder.hpp (Recorder: records everything), dots1/instrument/intervention.hpp
// (Intervention: edits the residual stream, forces/forbids experts, zeroes heads and experts), and Chain<A, B>
// below (both, in order). To write one, derive from InstrumentBase (all flags off, no-op hooks) and turn on
// and define only what you need.
#pragma once

#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include "dots1/base/geometry.hpp"

namespace dots1 {

/// Where in a layer a residual hook runs: h entering the layer (= HF hidden_states[layer]), after the
/// attention sub-block's residual add, and leaving the layer (= h entering the next layer).
enum class ResidualPoint : int { layer_input = 0, after_attention = 1, layer_output = 2 };

inline const char* residual_point_name(ResidualPoint p) {
  switch (p) {
    case ResidualPoint::layer_input: return "resid_pre";
    case ResidualPoint::after_attention: return "resid_mid";
    default: return "resid_post";
  }
}

/// The geometry of one forward call, given to begin_forward. Token t = row * seq + s sits at cache index
/// past + s of its row.
struct ForwardEvent {
  int64_t batch = 0, seq = 0, past = 0;
  int64_t hidden = 0, layers = 0;
  std::span<const int64_t> input_ids;  // [batch, seq], empty when inputs_embeds were given
};

/// The policy: four compile-time flags (see the table above).
template <class I>
concept InstrumentPolicy = requires {
  { std::bool_constant<I::residual>{} };
  { std::bool_constant<I::attention_weights>{} };
  { std::bool_constant<I::attention_output>{} };
  { std::bool_constant<I::routing>{} };
};

/// True when an instrument wants any hook (then begin_forward/end_forward are called too).
template <class I>
inline constexpr bool instrument_active = I::residual || I::attention_weights || I::attention_output || I::routing;

/// All hooks off and no-ops. Derive from it to write an instrument that turns on only some hooks.
struct InstrumentBase {
  static constexpr bool residual = false;
  static constexpr bool attention_weights = false;
  static constexpr bool attention_output = false;
  static constexpr bool routing = false;
  void begin_forward(const ForwardEvent&) {}
  void end_forward() {}
};

/// The default instrument: nothing is hooked, nothing is compiled in.
struct NoInstrument : InstrumentBase {};

/// Runs two instruments in order (A's edits are visible to B): e.g. Chain<Intervention, Recorder> records
/// the edited model. Holds references.
template <class A, class B>
struct Chain {
  A& first;
  B& second;
  static constexpr bool residual = A::residual || B::residual;
  static constexpr bool attention_weights = A::attention_weights || B::attention_weights;
  static constexpr bool attention_output = A::attention_output || B::attention_output;
  static constexpr bool routing = A::routing || B::routing;

  void begin_forward(const ForwardEvent& e) {
    if constexpr (instrument_active<A>) first.begin_forward(e);
    if constexpr (instrument_active<B>) second.begin_forward(e);
  }
  void end_forward() {
    if constexpr (instrument_active<A>) first.end_forward();
    if constexpr (instrument_active<B>) second.end_forward();
  }
  template <class T>
  bool on_residual(int64_t layer, ResidualPoint p, std::span<T> h) {
    bool edited = false;
    if constexpr (A::residual) edited = first.on_residual(layer, p, h) || edited;
    if constexpr (B::residual) edited = second.on_residual(layer, p, h) || edited;
    return edited;
  }
  template <class T>
  void on_attention_weights(int64_t layer, const AttentionShape& s, std::span<const T> w) {
    if constexpr (A::attention_weights) first.on_attention_weights(layer, s, w);
    if constexpr (B::attention_weights) second.on_attention_weights(layer, s, w);
  }
  template <class T>
  bool on_attention_output(int64_t layer, const AttentionShape& s, std::span<T> o) {
    bool edited = false;
    if constexpr (A::attention_output) edited = first.on_attention_output(layer, s, o) || edited;
    if constexpr (B::attention_output) edited = second.on_attention_output(layer, s, o) || edited;
    return edited;
  }
  template <class T>
  bool on_routing(int64_t layer, const RouterShape& r, std::span<const T> logits, std::span<const T> bias, std::span<int32_t> indices,
                  std::span<T> weights) {
    bool edited = false;
    if constexpr (A::routing) edited = first.on_routing(layer, r, logits, bias, indices, weights) || edited;
    if constexpr (B::routing) edited = second.on_routing(layer, r, logits, bias, indices, weights) || edited;
    return edited;
  }
};
template <class A, class B>
Chain(A&, B&) -> Chain<A, B>;

/// The compile-time flags of "no instrument or one": the model's forward takes its instrument as a parameter
/// pack, empty for the plain forward, so the uninstrumented model has exactly the code it would have
/// without this header.
template <class... I>
struct HooksOf {
  static_assert(sizeof...(I) <= 1, "pass one instrument; combine several with dots1::Chain");
  static constexpr bool active = false, residual = false, attention_weights = false, attention_output = false, routing = false;
};
template <class I>
struct HooksOf<I> {
  static_assert(InstrumentPolicy<I>, "an instrument declares static constexpr bool residual, attention_weights, attention_output, routing");
  static constexpr bool active = instrument_active<I>, residual = I::residual, attention_weights = I::attention_weights,
                        attention_output = I::attention_output, routing = I::routing;
};

/// The hooks as blocks call them: one line at each named point, e.g. `obs.residual(ResidualPoint::layer_input,
/// h)` or `obs.attention_output(shape, attn)`. Observer<B> (no instrument) has only empty inline functions, so
/// a forward without an instrument compiles no hook code at all; Observer<B, I> calls what I's flags turn on,
/// for the layer `at(layer)` names, with the host round trip (download, hook, upload of an edit).
template <class B, class... I>
struct Observer;

template <class B>
struct Observer<B> {
  static constexpr bool active = false;
  static constexpr bool wants_attention_weights = false;
  Observer at(int64_t) const { return {}; }
  void residual(ResidualPoint, typename B::Vector&) const {}
  void attention_weights(const AttentionShape&, const typename B::Vector&) const {}
  void attention_output(const AttentionShape&, typename B::Vector&) const {}
  void routing(const RouterShape&, const typename B::Vector&, const typename B::Vector&, typename B::IndexVector&, typename B::Vector&) const {}
};

template <class B, class I>
struct Observer<B, I> {
  static_assert(InstrumentPolicy<I>, "an instrument declares static constexpr bool residual, attention_weights, attention_output, routing");
  using T = typename B::Scalar;
  static constexpr bool active = instrument_active<I>;
  static constexpr bool wants_attention_weights = I::attention_weights;

  I* instrument = nullptr;
  int64_t layer = -1;

  Observer at(int64_t l) const { return {instrument, l}; }

  void residual(ResidualPoint p, typename B::Vector& h) const {
    if constexpr (I::residual) {
      auto host = B::download(h);
      if (instrument->on_residual(layer, p, std::span<T>(host))) h = B::upload(std::span<const T>(host));
    }
  }
  void attention_weights(const AttentionShape& s, const typename B::Vector& w) const {
    if constexpr (I::attention_weights) {
      const auto host = B::download(w);
      instrument->on_attention_weights(layer, s, std::span<const T>(host));
    }
  }
  /// o [B*S, nh*d]: the heads' outputs before o_proj.
  void attention_output(const AttentionShape& s, typename B::Vector& o) const {
    if constexpr (I::attention_output) {
      auto host = B::download(o);
      if (instrument->on_attention_output(layer, s, std::span<T>(host))) o = B::upload(std::span<const T>(host));
    }
  }
  /// After the router, before the experts run: observe or replace the choice.
  void routing(const RouterShape& r, const typename B::Vector& logits, const typename B::Vector& bias, typename B::IndexVector& indices,
               typename B::Vector& weights) const {
    if constexpr (I::routing) {
      const auto l = B::download(logits), b = B::download(bias);
      auto idx = B::download(indices);
      auto w = B::download(weights);
      if (instrument->on_routing(layer, r, std::span<const T>(l), std::span<const T>(b), std::span<int32_t>(idx), std::span<T>(w))) {
        indices = B::upload(std::span<const int32_t>(idx));
        weights = B::upload(std::span<const T>(w));
      }
    }
  }
};

}  // namespace dots1
