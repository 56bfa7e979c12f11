// dots1/model/dots1.hpp — rednote-hilab's dots.llm1 as HF's modeling_dots1.py writes it: the attention, the
// MLP, the mixture of experts, the decoder layer, and the family that builds a config's stack from them.
//
// Notation (spec 2): B batch, S new tokens, T = B*S, H hidden, nh/nkv query/KV heads (this rank's: all of
// them unless tensor parallel), d head_dim, E routed experts, K experts per token, I dense width, Im expert
// width, Is = Im * n_shared_experts. Every nn.Linear is y = x . W^T with W stored [out, in].
//
//   h = embed_tokens[input_ids]                                     [B,S,H]   (model/causal_lm.hpp)
//   for each layer:  h = h + self_attn(input_layernorm(h))
//                    h = h + mlp(post_attention_layernorm(h))      mlp = Dots1MLP | Dots1MoE
//   h = norm(h);  logits = lm_head(h[:, kept])                      [B,S',V]  (model/causal_lm.hpp)
//
// Blocks see activations as flat [T, width] buffers of the backend, their scratch in the session's
// workspace, and an observer `obs` whose one-line calls are the instrument hooks (nothing without one).
// How a block is split across processes is in the types of its layers (model/layers.hpp,
// model/routed_experts.hpp), not in its math.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dots1/backend/backend_concept.hpp"
#include "dots1/base/type_list.hpp"
#include "dots1/config.hpp"
#include "dots1/instrument/instrument.hpp"
#include "dots1/kernels/portable.hpp"
#include "dots1/model/causal_lm.hpp"
#include "dots1/model/forward_context.hpp"
#include "dots1/model/kv_cache.hpp"
#include "dots1/model/layers.hpp"
#include "dots1/model/routed_experts.hpp"
#include "dots1/model/stack.hpp"
#include "dots1/model/weights.hpp"

namespace dots1 {

inline kernels::Activation activation_of(const std::string& name) {
  if (name == "silu" || name == "swish") return kernels::Activation::silu;
  if (name == "gelu") return kernels::Activation::gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return kernels::Activation::gelu_tanh;
  if (name == "relu") return kernels::Activation::relu;
  throw ConfigError("hidden_act", "\"" + name + "\"", "unsupported activation");
}

// ------------------------------------------------------------------------------------------------ attention

template <Backend B, class Policy>
class Dots1Attention;

/// Attention over every cached key (HF layer_types "full_attention").
struct FullAttention {
  static constexpr const char* name = "full_attention";
  using Window = kernels::NoWindow;
  template <class B>
  using cache_state = FullKv<B>;
  template <class B>
  using block = Dots1Attention<B, FullAttention>;
  static Window window(const Dots1Config&) { return {}; }
  template <class B>
  static FullKv<B> make_cache(int64_t batch, int64_t row_width, Window) { return {batch, row_width}; }
};

/// Attention over the last sliding_window positions, the query's own included; the cache keeps W-1 keys
/// (HF layer_types "sliding_attention").
struct SlidingWindowAttention {
  static constexpr const char* name = "sliding_attention";
  using Window = kernels::SlidingWindow;
  template <class B>
  using cache_state = SlidingKv<B>;
  template <class B>
  using block = Dots1Attention<B, SlidingWindowAttention>;
  static Window window(const Dots1Config& c) { return {c.window()}; }
  template <class B>
  static SlidingKv<B> make_cache(int64_t batch, int64_t row_width, Window w) { return {batch, row_width, w.size}; }
};

/// Dots1Attention (Qwen3's attention): grouped-query attention with an RMSNorm over each head's query and
/// key before RoPE. Policy: FullAttention | SlidingWindowAttention (the mask's window and the cache).
template <Backend B, class Policy>
class Dots1Attention {
 public:
  using Vector = typename B::Vector;
  using cache_state = typename Policy::template cache_state<B>;
  struct Scratch {
    Vector q, k, v, attn, weights;
  };

  /// Tensor parallel: this rank's query heads and the KV heads they read (see Parallel::heads).
  Dots1Attention(const Dots1Config& c, Weights w) : Dots1Attention(c, w, w.parallel().heads(c), w.parallel().kv_heads(c)) {}

  /// out [T, H] = o_proj(softmax(q k^T * scaling + mask) v) for x [T, H]; appends this forward's keys to `cache`.
  template <class Obs>
  void operator()(const ForwardContext<B>& ctx, cache_state& cache, const Vector& x, Vector& out, const Obs& obs) const {
    auto& s = ctx.template scratch<Scratch>();
    const int64_t T = ctx.tokens();
    q_proj(x, T, s.q);  // [T, nh*d]
    k_proj(x, T, s.k);  // [T, nkv*d]
    v_proj(x, T, s.v);  // [T, nkv*d]
    q_norm(s.q, s.q);   // over each head's d values
    k_norm(s.k, s.k);
    ctx.rope(s.q, nh_, d_);  // apply_rotary_pos_emb(q, k, cos, sin)
    ctx.rope(s.k, nkv_, d_);
    const KvView kv = cache.update(s.k, s.v, ctx.seq);  // the keys and values so far
    const AttentionShape shape{ctx.batch, ctx.seq, kv.kv_len, cache.capacity(), nh_, nkv_, d_, scaling_};
    const bool weights = ctx.wants_attention_weights(Obs::wants_attention_weights);
    B::attention(s.q, cache.keys(), cache.values(), shape, ctx.mask(window_, kv), s.attn, weights ? &s.weights : nullptr);  // [T, nh*d]
    ctx.collect_attention_weights(s.weights, nh_, kv.kv_len);  // output_attentions
    obs.attention_weights(shape, s.weights);
    obs.attention_output(shape, s.attn);
    cache.after_attention();  // a sliding window forgets its oldest keys
    o_proj(s.attn, T, out);   // [T, H]
  }

  cache_state make_cache(int64_t batch) const { return Policy::template make_cache<B>(batch, nkv_ * d_, window_); }

 private:
  Dots1Attention(const Dots1Config& c, Weights w, IndexRange q, IndexRange kv)
      : nh_(q.size()), nkv_(kv.size()), d_(c.head_dim()), scaling_(c.attention_scaling()), window_(Policy::window(c)),
        q_proj(w.at("q_proj"), c.num_attention_heads * d_, c.hidden_size, {q.begin * d_, q.end * d_}, c.attention_bias),
        k_proj(w.at("k_proj"), c.kv_heads() * d_, c.hidden_size, {kv.begin * d_, kv.end * d_}, c.attention_bias),
        v_proj(w.at("v_proj"), c.kv_heads() * d_, c.hidden_size, {kv.begin * d_, kv.end * d_}, c.attention_bias),
        o_proj(w.at("o_proj"), c.hidden_size, c.num_attention_heads * d_, {q.begin * d_, q.end * d_}, c.attention_bias),
        q_norm(w.at("q_norm"), d_, c.rms_norm_eps),
        k_norm(w.at("k_norm"), d_, c.rms_norm_eps) {}

  int64_t nh_, nkv_, d_;
  double scaling_;
  typename Policy::Window window_;

 public:
  ColumnParallelLinear<B> q_proj;  // [nh*d, H]   (+ bias [nh*d] with attention_bias, as k, v and o)
  ColumnParallelLinear<B> k_proj;  // [nkv*d, H]
  ColumnParallelLinear<B> v_proj;  // [nkv*d, H]
  RowParallelLinear<B> o_proj;     // [H, nh*d]
  RmsNorm<B> q_norm;               // [d], shared by the heads
  RmsNorm<B> k_norm;               // [d]
};

// ------------------------------------------------------------------------------------------------ feed-forward

/// A SwiGLU MLP: y = down_proj(act(gate_proj(x)) * up_proj(x)). Dots1MLP (width I) and the fused shared
/// experts (width Is) of Dots1MoE.
template <Backend B>
class GatedMlp {
 public:
  using Vector = typename B::Vector;
  struct Scratch {
    Vector gate, up;
  };

  /// Tensor parallel: this rank's rows of gate/up and the matching columns of down.
  GatedMlp(Weights w, int64_t hidden, int64_t inter, kernels::Activation act) : GatedMlp(w, hidden, inter, act, w.parallel().tp_rows(inter)) {}

  template <class Obs>
  void operator()(const ForwardContext<B>& ctx, const Vector& x, Vector& y, const Obs&) const {
    auto& s = ctx.template scratch<Scratch>();
    const int64_t T = ctx.tokens();
    gate_proj(x, T, s.gate);                  // [T, I]
    up_proj(x, T, s.up);                      // [T, I]
    B::act_mul(s.gate, s.up, act_, s.gate);   // act(gate) * up
    down_proj(s.gate, T, y);                  // [T, H]
  }

 private:
  GatedMlp(Weights w, int64_t hidden, int64_t inter, kernels::Activation act, IndexRange rows)
      : act_(act), gate_proj(w.at("gate_proj"), inter, hidden, rows, false), up_proj(w.at("up_proj"), inter, hidden, rows, false),
        down_proj(w.at("down_proj"), hidden, inter, rows, false) {}

  kernels::Activation act_;

 public:
  ColumnParallelLinear<B> gate_proj;  // [I, H]
  ColumnParallelLinear<B> up_proj;    // [I, H]
  RowParallelLinear<B> down_proj;     // [H, I]
};

/// Dots1MLP: the dense feed-forward of the first first_k_dense_replace layers.
template <Backend B>
struct Dots1MLP : GatedMlp<B> {
  Dots1MLP(const Dots1Config& c, Weights w) : GatedMlp<B>(w, c.hidden_size, c.intermediate_size, activation_of(c.hidden_act)) {}
};

/// Dots1MoE: Dots1TopkRouter (sigmoid scores, + e_score_correction_bias for the choice only, group-limited
/// top-k, the chosen experts' unbiased scores as weights, optionally renormalised, times
/// routed_scaling_factor), the routed experts, and the shared experts (not scaled): y = routed + shared.
template <Backend B>
class Dots1MoE {
 public:
  using Vector = typename B::Vector;
  struct Scratch {
    Vector router_logits, topk_weights, shared;
    typename B::IndexVector topk_indices;
  };

  Dots1MoE(const Dots1Config& c, Weights w)
      : router_{*c.n_routed_experts, *c.num_experts_per_tok, c.n_group, c.topk_group, c.norm_topk_prob, c.routed_scaling_factor},
        gate(w.at("gate"), *c.n_routed_experts, c.hidden_size, false, TensorKind::router),
        e_score_correction_bias(B::vector(w.at("gate").take("e_score_correction_bias", {*c.n_routed_experts}, TensorKind::buffer))),
        experts(w, *c.n_routed_experts, *c.num_experts_per_tok, c.hidden_size, c.moe_intermediate_size, activation_of(c.hidden_act)),
        shared_experts(w.at("shared_experts"), c.hidden_size, c.shared_intermediate_size(), activation_of(c.hidden_act)) {}

  template <class Obs>
  void operator()(const ForwardContext<B>& ctx, const Vector& x, Vector& y, const Obs& obs) const {
    auto& s = ctx.template scratch<Scratch>();
    const int64_t T = ctx.tokens();
    gate(x, T, s.router_logits);                                                                         // [T, E], float32
    B::route(s.router_logits, e_score_correction_bias, T, router_, s.topk_indices, s.topk_weights);      // [T, K]
    obs.routing(router_, s.router_logits, e_score_correction_bias, s.topk_indices, s.topk_weights);
    experts(x, T, s.topk_indices, s.topk_weights, y);  // [T, H] = sum_k w * expert_k(x)
    shared_experts(ctx, x, s.shared, obs);             // [T, H]
    B::add(y, s.shared);
  }

 private:
  RouterShape router_;

 public:
  Linear<B> gate;                             // [E, H], evaluated in float32 (never converted)
  typename B::Vector e_score_correction_bias;  // [E], a buffer: biases the choice, not the weights
  RoutedExperts<B> experts;                   // E x {gate_proj [Im, H], up_proj [Im, H], down_proj [H, Im]}
  GatedMlp<B> shared_experts;                 // gate_proj [Is, H], up_proj [Is, H], down_proj [H, Is]
};

/// The feed-forward policies: the names a family's layer kinds use, and the blocks.
struct DenseMlp {
  static constexpr const char* name = "mlp";
  template <class B>
  using block = Dots1MLP<B>;
};
struct MoE {
  static constexpr const char* name = "moe";
  template <class B>
  using block = Dots1MoE<B>;
};

// ------------------------------------------------------------------------------------------------ layer

/// Dots1DecoderLayer: two pre-norm residual blocks. Attention: a policy naming its attention block
/// (FullAttention, SlidingWindowAttention); FeedForward: a policy naming its feed-forward block (DenseMlp,
/// MoE, or a variant's own, see examples/variants/).
template <class B, class Attention, class FeedForward>
class DecoderLayer {
  static_assert(Backend<B>);

 public:
  using Vector = typename B::Vector;
  using attention_block = typename Attention::template block<B>;
  using feed_forward_block = typename FeedForward::template block<B>;
  using cache_state = typename attention_block::cache_state;
  struct Scratch {
    Vector x, y;
  };
  static LayerKind kind() { return {Attention::name, FeedForward::name}; }

  DecoderLayer(const Dots1Config& c, int64_t layer, Weights w)
      : index_(layer), input_layernorm(w.at("input_layernorm"), c.hidden_size, c.rms_norm_eps), self_attn(c, w.at("self_attn")),
        post_attention_layernorm(w.at("post_attention_layernorm"), c.hidden_size, c.rms_norm_eps), mlp(c, w.at("mlp")) {}

  /// h [T, H] <- h + self_attn(input_layernorm(h)); h <- h + mlp(post_attention_layernorm(h)).
  template <class Obs>
  void forward(const ForwardContext<B>& ctx, cache_state& cache, Vector& h, const Obs& obs) const {
    auto& [x, y] = ctx.template scratch<Scratch>();
    obs.residual(ResidualPoint::layer_input, h);
    input_layernorm(h, x);
    self_attn(ctx, cache, x, y, obs);
    B::add(h, y);
    obs.residual(ResidualPoint::after_attention, h);
    post_attention_layernorm(h, x);
    mlp(ctx, x, y, obs);
    B::add(h, y);
    obs.residual(ResidualPoint::layer_output, h);
  }

  int64_t index() const { return index_; }
  cache_state make_cache(int64_t batch) const { return self_attn.make_cache(batch); }

 private:
  int64_t index_;

 public:
  RmsNorm<B> input_layernorm;  // [H]
  attention_block self_attn;
  RmsNorm<B> post_attention_layernorm;  // [H]
  feed_forward_block mlp;
};

// ------------------------------------------------------------------------------------------------ family

/// dots.llm1 (model_type "dots1"): which layer types a config can ask for, and which each layer is.
struct Dots1 {
  static constexpr const char* model_type = "dots1";
  static Dots1Config read_config(const nlohmann::json& j) { return Dots1Config::from_json(j); }
  /// Every layer of HF's Dots1: its layer_types entry (sliding from max_window_layers on when not given),
  /// and the MoE from first_k_dense_replace on.
  static std::vector<LayerKind> layer_kinds(const Dots1Config& c) {
    const auto types = c.resolved_layer_types();
    std::vector<LayerKind> kinds;
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) kinds.push_back({types[static_cast<size_t>(i)], c.is_moe_layer(i) ? MoE::name : DenseMlp::name});
    return kinds;
  }
  template <class B>
  using layers = typename LayerProduct<DecoderLayer, B, TypeList<FullAttention, SlidingWindowAttention>, TypeList<DenseMlp, MoE>>::type;
};

/// HF's Dots1Model and Dots1ForCausalLM: layers chosen by the config, or fixed by a StaticStack.
template <class B, class Stack = FamilyStack<B, Dots1>>
using Dots1Model = DecoderModel<B, Dots1, Stack>;
template <class B, class Stack = FamilyStack<B, Dots1>>
using Dots1ForCausalLM = CausalLM<B, Dots1, Stack>;

}  // namespace dots1
