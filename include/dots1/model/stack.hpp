// dots1/model/stack.hpp — the decoder stack, composed from a list of layer types.
//
// A model family (model/family.hpp) lists the layer types its configs can ask for, e.g. every
// DecoderLayer<B, Attention, FeedForward> of {FullAttention, SlidingWindowAttention} x {DenseMlp, MoE}, and
// says which kind each layer of a config is (LayerKind: the attention's and the feed-forward's names).
//   RuntimeStack<B, List>   each layer the type of List whose kind() the config asks for (a std::variant)
//   StaticStack<B, L...>    the layer types fixed at compile time (a std::tuple); the config must agree
// Both derive the session cache from the same types: one state per layer, of the type its attention
// policy chooses (model/kv_cache.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "dots1/backend/backend_concept.hpp"
#include "dots1/base/type_list.hpp"
#include "dots1/config.hpp"
#include "dots1/error.hpp"
#include "dots1/model/kv_cache.hpp"
#include "dots1/model/weights.hpp"

namespace dots1 {

/// A decoder layer's kind in the config's words: its attention policy's name (HF's layer_types entry,
/// "full_attention" or "sliding_attention") and its feed-forward's ("mlp", "moe").
struct LayerKind {
  std::string attention, feed_forward;
  bool operator==(const LayerKind&) const = default;
  std::string str() const { return attention + " + " + feed_forward; }
};

/// Layer<B, A, F> for every A of `Attentions` and F of `FeedForwards` (a TypeList).
template <template <class, class, class> class Layer, class B, class Attentions, class FeedForwards>
struct LayerProduct;
template <template <class, class, class> class Layer, class B, class... A, class FeedForwards>
struct LayerProduct<Layer, B, TypeList<A...>, FeedForwards> {
  template <class One, class Fs>
  struct row;
  template <class One, class... F>
  struct row<One, TypeList<F...>> {
    using type = TypeList<Layer<B, One, F>...>;
  };
  using type = ConcatTypes<typename row<A, FeedForwards>::type...>;
};

namespace stack_detail {
template <class B, class List>
struct cache_of;
template <class B, class... S>
struct cache_of<B, TypeList<S...>> {
  using type = KvCache<B, S...>;
};
/// The KvCache whose states are those of `Layers` (each once).
template <class B, class... Layers>
using CacheFor = typename cache_of<B, UniqueTypes<typename Layers::cache_state...>>::type;
}  // namespace stack_detail

template <Backend B, class Layers>
class RuntimeStack;

/// The stack a loaded config chooses, layer by layer, among `Layers`.
template <Backend B, class... Layers>
class RuntimeStack<B, TypeList<Layers...>> {
 public:
  using Layer = std::variant<Layers...>;
  using Cache = stack_detail::CacheFor<B, Layers...>;

  RuntimeStack(const Dots1Config& c, const std::vector<LayerKind>& kinds, Weights layers) {
    layers_.reserve(kinds.size());
    for (size_t i = 0; i < kinds.size(); ++i) emplace<0>(c, kinds, static_cast<int64_t>(i), layers);
  }

  size_t size() const { return layers_.size(); }
  /// f(layer) for each layer in order, with the layer's concrete type.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& l : layers_) std::visit(f, l);
  }
  /// f(layer, its state in `cache`) for each layer in order.
  template <class F>
  void for_each(Cache& cache, F&& f) const {
    for (size_t i = 0; i < layers_.size(); ++i)
      std::visit([&](const auto& l) { f(l, cache.template state<typename std::remove_cvref_t<decltype(l)>::cache_state>(i)); }, layers_[i]);
  }
  Cache make_cache(int64_t batch) const {
    std::vector<typename Cache::State> states;
    for (const auto& l : layers_) std::visit([&](const auto& layer) { states.emplace_back(layer.make_cache(batch)); }, l);
    return Cache(batch, std::move(states));
  }

 private:
  template <size_t I>
  void emplace(const Dots1Config& c, const std::vector<LayerKind>& kinds, int64_t i, Weights& layers) {
    if constexpr (I == sizeof...(Layers)) {
      std::string have;
      ((have += (have.empty() ? "" : ", ") + Layers::kind().str()), ...);
      throw ConfigError("layer " + std::to_string(i), kinds[static_cast<size_t>(i)].str(),
                        "this model's stack has no layer type of that kind (it has: " + have + ")");
    } else {
      using L = std::variant_alternative_t<I, Layer>;
      if (L::kind() == kinds[static_cast<size_t>(i)]) layers_.emplace_back(std::in_place_index<I>, c, i, layers.at(i));
      else emplace<I + 1>(c, kinds, i, layers);
    }
  }
  std::vector<Layer> layers_;
};

/// A stack fixed at compile time: StaticStack<B, DecoderLayer<B, FullAttention, DenseMlp>, ...>. Loading
/// checks that the config's layers are exactly these.
template <class B, class... Layers>
class StaticStack {
  static_assert(Backend<B>);

 public:
  using Cache = stack_detail::CacheFor<B, Layers...>;

  StaticStack(const Dots1Config& c, const std::vector<LayerKind>& kinds, Weights layers)
      : layers_(make(c, kinds, layers, std::index_sequence_for<Layers...>{})) {}
  static constexpr size_t size() { return sizeof...(Layers); }
  template <class F>
  void for_each(F&& f) const {
    std::apply([&](const auto&... l) { (f(l), ...); }, layers_);
  }
  template <class F>
  void for_each(Cache& cache, F&& f) const {
    size_t i = 0;
    std::apply([&](const auto&... l) { ((f(l, cache.template state<typename Layers::cache_state>(i)), ++i), ...); }, layers_);
  }
  Cache make_cache(int64_t batch) const {
    std::vector<typename Cache::State> states;
    std::apply([&](const auto&... l) { (states.emplace_back(l.make_cache(batch)), ...); }, layers_);
    return Cache(batch, std::move(states));
  }

 private:
  template <size_t... I>
  static std::tuple<Layers...> make(const Dots1Config& c, const std::vector<LayerKind>& kinds, Weights& layers, std::index_sequence<I...>) {
    if (kinds.size() != sizeof...(Layers))
      throw ConfigError("num_hidden_layers", std::to_string(kinds.size()), "this compile-time stack has " + std::to_string(sizeof...(Layers)) + " layers");
    const LayerKind fixed[] = {Layers::kind()...};
    for (size_t i = 0; i < kinds.size(); ++i)
      if (!(kinds[i] == fixed[i]))
        throw ConfigError(kinds[i].feed_forward != fixed[i].feed_forward ? "first_k_dense_replace" : "layer_types", "layer " + std::to_string(i),
                          "this compile-time stack fixes layer " + std::to_string(i) + " as " + fixed[i].str() + ", the config makes it " + kinds[i].str());
    return std::tuple<Layers...>{Layers(c, static_cast<int64_t>(I), layers.at(static_cast<int64_t>(I)))...};
  }
  std::tuple<Layers...> layers_;
};

/// The same stack on another backend (CausalLM::describe builds it on the meta backend). A layer type is a
/// template whose first parameter is the backend.
template <class Layer, class B2>
struct rebind_layer;
template <template <class, class...> class L, class B, class... P, class B2>
struct rebind_layer<L<B, P...>, B2> {
  using type = L<B2, P...>;
};
template <class Stack, class B2>
struct rebind_stack;
template <class B, class... L, class B2>
struct rebind_stack<RuntimeStack<B, TypeList<L...>>, B2> {
  using type = RuntimeStack<B2, TypeList<typename rebind_layer<L, B2>::type...>>;
};
template <class B, class... L, class B2>
struct rebind_stack<StaticStack<B, L...>, B2> {
  using type = StaticStack<B2, typename rebind_layer<L, B2>::type...>;
};
template <class Stack, class B2>
using RebindStack = typename rebind_stack<Stack, B2>::type;

}  // namespace dots1
