// dots1/model/dots1_model.hpp — the Dots1 model, written once for every backend.
//
// Notation (spec 2): B batch, S new tokens, T = B*S, H hidden, nh/nkv query/KV heads, d head_dim,
// E routed experts, K experts per token, I dense width, Im expert width, Is = Im * n_shared_experts.
// Every nn.Linear is y = x . W^T with W stored [out, in].
//
//   h = embed_tokens[input_ids]                                   [B,S,H]
//   for each layer:  h = h + SelfAttn(RMSNorm_in(h))
//                    h = h + (DenseMlp | MoE)(RMSNorm_post(h))
//   h = RMSNorm_final(h);  logits = h[:, kept] . W_lm^T           [B,S',V]
//
// Split across processes (parallel/plan.hpp), a block loads only its rank's share — heads, MLP rows, experts,
// vocabulary rows — and completes its output with one collective (all-reduce of partial sums, expert
// dispatch/combine, all-gather of logits); unsplit, Parallel::single() makes those no-ops.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "dots1/config.hpp"
#include "dots1/error.hpp"
#include "dots1/instrument/instrument.hpp"
#include "dots1/io/checkpoint.hpp"
#include "dots1/io/forward_preflight.hpp"
#include "dots1/io/memory_plan.hpp"
#include "dots1/kernels/portable.hpp"
#include "dots1/model/backend_concept.hpp"
#include "dots1/model/forward_io.hpp"
#include "dots1/model/kv_cache.hpp"
#include "dots1/model/rope.hpp"
#include "dots1/model/shapes.hpp"
#include "dots1/parallel/expert_parallel.hpp"
#include "dots1/parallel/plan.hpp"
#include "dots1/policies.hpp"

namespace dots1 {

inline kernels::Activation activation_of(const std::string& name) {
  if (name == "silu" || name == "swish") return kernels::Activation::silu;
  if (name == "gelu") return kernels::Activation::gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return kernels::Activation::gelu_tanh;
  if (name == "relu") return kernels::Activation::relu;
  throw ConfigError("hidden_act", "\"" + name + "\"", "unsupported activation");
}

// ------------------------------------------------------------------------------------------------ pieces

/// nn.Linear: weight [out, in], optional bias [out].
template <class B>
struct Linear {
  typename B::Matrix weight;
  std::optional<typename B::Vector> bias;

  static Linear load(WeightReader& r, const std::string& name, int64_t out, int64_t in, bool with_bias) {
    Linear l;
    l.weight = B::matrix(r.take(name + ".weight", {out, in}));
    if (with_bias) l.bias = B::vector(r.take(name + ".bias", {out}));
    return l;
  }
  /// Output rows `rows` of weight and bias (column parallel): y = x . W[rows]^T, this rank's slice of y.
  static Linear load_rows(WeightReader& r, const std::string& name, int64_t out, int64_t in, IndexRange rows, bool with_bias) {
    Linear l;
    l.weight = B::matrix(r.take_rows(name + ".weight", {out, in}, rows));
    if (with_bias) l.bias = B::vector(r.take_rows(name + ".bias", {out}, rows));
    return l;
  }
  /// Input columns `cols` of the weight (row parallel): y = x[:, cols] . W[:, cols]^T, this rank's partial
  /// sum of y. The bias is added by one rank only (`bias_here`), so that the sum over ranks has it once.
  static Linear load_columns(WeightReader& r, const std::string& name, int64_t out, int64_t in, IndexRange cols, bool with_bias, bool bias_here) {
    Linear l;
    l.weight = B::matrix(r.take_columns(name + ".weight", {out, in}, cols));
    if (with_bias && bias_here) l.bias = B::vector(r.take(name + ".bias", {out}));
    if (with_bias && !bias_here) r.skip_if_present(name + ".bias", {out});
    return l;
  }
  void operator()(const typename B::Vector& x, int64_t rows, typename B::Vector& y) const {
    B::linear(weight, bias ? &*bias : nullptr, x, rows, y);
  }
};

/// Dots1RMSNorm over the last `dim` values of each row; weight [dim].
template <class B>
struct RmsNorm {
  typename B::Vector weight;
  double eps = 1e-6;
  int64_t dim = 0;

  static RmsNorm load(WeightReader& r, const std::string& name, int64_t dim, double eps) {
    return RmsNorm{B::vector(r.take(name + ".weight", {dim})), eps, dim};
  }
  void operator()(const typename B::Vector& x, typename B::Vector& y) const {
    B::rms_norm(x, weight, static_cast<int64_t>(B::size(x)) / dim, dim, eps, y);
  }
};

/// Per-forward state shared by all layers: sizes, RoPE tables, mask inputs, requested outputs, workspace.
template <class B>
struct ForwardContext {
  int64_t batch = 0, seq = 0;
  typename B::Vector cos, sin;                  // [T, d]
  typename B::IndexVector key_mask;             // [B, key_mask_len] or empty
  int64_t key_mask_len = 0;
  typename B::Int64Vector packed_positions;     // [B, S] when packed sequences were detected
  typename B::IndexVector packed_ids;
  std::vector<HostTensor<typename B::Scalar>>* attentions = nullptr;  // collect when non-null
  ForwardWorkspace<B>* work = nullptr;  // the cache's (see ForwardWorkspace)
};

// ------------------------------------------------------------------------------------------------ attention

/// Qwen3-style attention with per-head q/k RMSNorm before RoPE; Policy = FullAttention | SlidingWindowAttention.
template <class B, class Policy>
class SelfAttention {
 public:
  /// Tensor parallel (parallel/plan.hpp): this rank's query heads q and the KV heads they read, kv; nh and nkv
  /// below are their counts, o_proj's matching columns give partial sums that the group all-reduces.
  SelfAttention(const Dots1Config& c, int64_t layer, WeightReader& r)
      : par_(r.parallel_ptr()), heads_(r.parallel().heads(c).size()), kv_heads_(r.parallel().kv_heads(c).size()), head_dim_(c.head_dim()),
        window_(Policy::kind == AttentionKind::sliding ? c.window() : 0), scaling_(c.attention_scaling()) {
    const std::string p = "model.layers." + std::to_string(layer) + ".self_attn.";
    const int64_t H = c.hidden_size, d = head_dim_, all_q = c.num_attention_heads * d, all_kv = c.kv_heads() * d;
    const IndexRange q = r.parallel().heads(c), kv = r.parallel().kv_heads(c);
    const IndexRange q_rows{q.begin * d, q.end * d}, kv_rows{kv.begin * d, kv.end * d};
    q_proj_ = Linear<B>::load_rows(r, p + "q_proj", all_q, H, q_rows, c.attention_bias);    // [nh*d, H]
    k_proj_ = Linear<B>::load_rows(r, p + "k_proj", all_kv, H, kv_rows, c.attention_bias);  // [nkv*d, H]
    v_proj_ = Linear<B>::load_rows(r, p + "v_proj", all_kv, H, kv_rows, c.attention_bias);  // [nkv*d, H]
    o_proj_ = Linear<B>::load_columns(r, p + "o_proj", H, all_q, q_rows, c.attention_bias, r.parallel().tp_rank() == 0);  // [H, nh*d]
    q_norm_ = RmsNorm<B>::load(r, p + "q_norm", d, c.rms_norm_eps);                 // [d], shared by heads
    k_norm_ = RmsNorm<B>::load(r, p + "k_norm", d, c.rms_norm_eps);                 // [d]
  }

  /// out[T, H] = o_proj(softmax(q k^T * scaling + mask) v) for x[T, H]; updates `cache`.
  /// `at`: no instrument, or one with its hooks (dots1/instrument/instrument.hpp).
  template <class... I>
  void forward(ForwardContext<B>& ctx, KvCacheLayer<B>& cache, const typename B::Vector& x, typename B::Vector& out, InstrumentAt<I>... at) const {
    using Hooks = HooksOf<I...>;
    const int64_t T = ctx.batch * ctx.seq;
    auto& q_ = ctx.work->q;
    auto& k_ = ctx.work->k;
    auto& v_ = ctx.work->v;
    auto& attn_ = ctx.work->attn;
    auto& weights_ = ctx.work->attn_weights;
    q_proj_(x, T, q_);  // [T, nh*d]
    k_proj_(x, T, k_);  // [T, nkv*d]
    v_proj_(x, T, v_);  // [T, nkv*d]
    q_norm_(q_, q_);
    k_norm_(k_, k_);
    B::rope(q_, T, heads_, head_dim_, ctx.cos, ctx.sin);
    B::rope(k_, T, kv_heads_, head_dim_, ctx.cos, ctx.sin);
    const KvView view = cache.append(k_, v_, ctx.seq);
    kernels::MaskSpec mask;
    mask.q_offset = view.q_offset;
    mask.kv_offset = view.kv_offset;
    mask.window = window_;
    mask.key_mask = B::ptr(ctx.key_mask);
    mask.key_mask_len = ctx.key_mask_len;
    mask.packed_positions = B::ptr(ctx.packed_positions);
    mask.packed_ids = B::ptr(ctx.packed_ids);
    mask.q_len = ctx.seq;
    const AttentionShape shape{ctx.batch, ctx.seq, view.kv_len, cache.capacity(), heads_, kv_heads_, head_dim_, scaling_};
    bool want_weights = ctx.attentions != nullptr;
    if constexpr (Hooks::attention_weights) want_weights = true;
    B::attention(q_, cache.keys(), cache.values(), shape, mask, attn_, want_weights ? &weights_ : nullptr);
    if (ctx.attentions) ctx.attentions->push_back(all_heads(weights_, ctx.batch, ctx.seq, view.kv_len));
    if constexpr (Hooks::attention_weights) instrument_hooks::attention_weights<B>(at..., shape, weights_);
    if constexpr (Hooks::attention_output) instrument_hooks::attention_output<B>(at..., shape, attn_);  // [T, nh*d] before o_proj
    cache.trim();
    o_proj_(attn_, T, out);  // [T, H]
    par_->template tp_all_reduce<B>(out);  // tensor parallel: the sum of the ranks' partial o_proj outputs
  }

  int64_t window() const { return window_; }

 private:
  /// The attention weights [B, nh, S, kv_len] of every head (tensor parallel: gathered from the group).
  HostTensor<typename B::Scalar> all_heads(const typename B::Vector& w, int64_t batch, int64_t seq, int64_t kv_len) const {
    const int tp = par_->tp_size();
    if (tp == 1) return {{batch, heads_, seq, kv_len}, B::download(w)};
    typename B::Vector gathered;
    B::resize(gathered, B::size(w) * static_cast<size_t>(tp));
    const std::vector<size_t> counts(static_cast<size_t>(tp), B::size(w));
    par_->tp().all_gather_v(B::ptr(w), B::ptr(gathered), std::span<const size_t>(counts));
    const std::vector<typename B::Scalar> parts = B::download(gathered);  // [tp][B, nh/tp, S*kv]
    std::vector<typename B::Scalar> out(parts.size());
    const int64_t block = heads_ * seq * kv_len;  // one batch row of one rank
    for (int r = 0; r < tp; ++r)
      for (int64_t b = 0; b < batch; ++b)
        std::copy_n(parts.begin() + (r * batch + b) * block, block, out.begin() + (b * tp + r) * block);
    return {{batch, heads_ * tp, seq, kv_len}, std::move(out)};
  }

  std::shared_ptr<const Parallel> par_;
  int64_t heads_, kv_heads_, head_dim_, window_;
  double scaling_;
  Linear<B> q_proj_, k_proj_, v_proj_, o_proj_;
  RmsNorm<B> q_norm_, k_norm_;
};

// ------------------------------------------------------------------------------------------------ feed-forward

/// y = W_down(act(W_gate x) * (W_up x)); also the fused shared experts (width Is). Tensor parallel: this
/// rank's rows of gate/up and matching columns of down, the group all-reduces the partial y.
template <class B>
class DenseMlpBlock {
 public:
  DenseMlpBlock(const std::string& prefix, int64_t hidden, int64_t inter, kernels::Activation act, WeightReader& r)
      : par_(r.parallel_ptr()), inter_(r.parallel().tp_rows(inter).size()), act_(act) {
    const IndexRange rows = r.parallel().tp_rows(inter);
    gate_proj_ = Linear<B>::load_rows(r, prefix + "gate_proj", inter, hidden, rows, false);               // [I, H]
    up_proj_ = Linear<B>::load_rows(r, prefix + "up_proj", inter, hidden, rows, false);                   // [I, H]
    down_proj_ = Linear<B>::load_columns(r, prefix + "down_proj", hidden, inter, rows, false, false);  // [H, I]
  }
  DenseMlpBlock(const Dots1Config& c, int64_t layer, WeightReader& r)
      : DenseMlpBlock("model.layers." + std::to_string(layer) + ".mlp.", c.hidden_size, c.intermediate_size,
                      activation_of(c.hidden_act), r) {}

  template <class... I>  // an instrument is accepted and has nothing to hook here
  void forward(ForwardWorkspace<B>& work, const typename B::Vector& x, int64_t tokens, typename B::Vector& y, InstrumentAt<I>...) const {
    gate_proj_(x, tokens, work.gate);
    up_proj_(x, tokens, work.up);
    B::act_mul(work.gate, work.up, act_, work.gate);
    down_proj_(work.gate, tokens, y);
    par_->template tp_all_reduce<B>(y);
  }

 private:
  std::shared_ptr<const Parallel> par_;
  int64_t inter_;
  kernels::Activation act_;
  Linear<B> gate_proj_, up_proj_, down_proj_;
};

/// Dots1MoE: sigmoid router with correction bias (selection only), group-limited top-k, weighted routed
/// experts, plus the shared experts (not scaled). y = routed + shared.
template <class B>
class MoeBlock {
 public:
  /// Expert parallel (parallel/plan.hpp): this rank holds experts [e0, e1) only; the shared experts are
  /// tensor parallel like the dense MLP.
  MoeBlock(const Dots1Config& c, int64_t layer, WeightReader& r)
      : par_(r.parallel_ptr()), hidden_(c.hidden_size), inter_(c.moe_intermediate_size), act_(activation_of(c.hidden_act)),
        shared_("model.layers." + std::to_string(layer) + ".mlp.shared_experts.", c.hidden_size,
                c.shared_intermediate_size(), act_, r) {
    const std::string p = "model.layers." + std::to_string(layer) + ".mlp.";
    const int64_t E = *c.n_routed_experts;
    router_.experts = E;
    router_.top_k = *c.num_experts_per_tok;
    router_.n_group = c.n_group;
    router_.topk_group = c.topk_group;
    router_.norm_topk_prob = c.norm_topk_prob;
    router_.routed_scaling_factor = c.routed_scaling_factor;
    gate_ = B::matrix(r.take(p + "gate.weight", {E, hidden_}));                          // [E, H]
    correction_bias_ = B::vector(r.take(p + "gate.e_score_correction_bias", {E}));       // [E]
    const IndexRange mine = r.parallel().experts(E);
    for (int64_t e = 0; e < E; ++e) {
      if (!mine.contains(e)) {
        r.skip_expert(layer, e);  // held by another rank
        continue;
      }
      experts_.push_back({B::matrix(r.take_expert(layer, e, "gate_proj", E, hidden_, inter_)),    // [Im, H]
                          B::matrix(r.take_expert(layer, e, "up_proj", E, hidden_, inter_)),      // [Im, H]
                          B::matrix(r.take_expert(layer, e, "down_proj", E, hidden_, inter_))});  // [H, Im]
    }
  }

  template <class... I>
  void forward(ForwardWorkspace<B>& work, const typename B::Vector& x, int64_t tokens, typename B::Vector& y, InstrumentAt<I>... at) const {
    if (par_->ep_size() > 1) {  // routed to the ranks that hold the experts, and back (parallel/expert_parallel.hpp)
      expert_parallel_moe<B>(*par_, x, tokens, hidden_, gate_, correction_bias_, router_, experts_, inter_, act_, y);
    } else {
      B::linear(gate_, nullptr, x, tokens, work.router_logits);                      // [T, E], float32
      B::route(work.router_logits, correction_bias_, tokens, router_, work.topk_indices, work.topk_weights);  // [T, K]
      if constexpr (HooksOf<I...>::routing)  // observe or replace the choice before the experts run
        instrument_hooks::routing<B>(at..., router_, work.router_logits, correction_bias_, work.topk_indices, work.topk_weights);
      B::moe_experts(x, tokens, hidden_, work.topk_indices, work.topk_weights, router_.top_k, experts_, inter_, act_, y);
    }
    shared_.forward(work, x, tokens, work.shared_out);
    B::add(y, work.shared_out);
  }

 private:
  std::shared_ptr<const Parallel> par_;
  int64_t hidden_, inter_;
  kernels::Activation act_;
  RouterShape router_;
  typename B::Matrix gate_;
  typename B::Vector correction_bias_;
  std::vector<typename B::ExpertMatrices> experts_;
  DenseMlpBlock<B> shared_;
};

// ------------------------------------------------------------------------------------------------ layer

/// One pre-norm decoder layer, a template over its policies.
template <class B, class AttentionPolicy, class FeedForwardPolicy>
class DecoderLayer {
 public:
  using backend = B;
  using attention_policy = AttentionPolicy;
  using feed_forward_policy = FeedForwardPolicy;
  static constexpr LayerPlan plan{AttentionPolicy::kind, FeedForwardPolicy::kind};

  DecoderLayer(const Dots1Config& c, int64_t layer, WeightReader& r)
      : index_(layer),
        input_layernorm_(RmsNorm<B>::load(r, "model.layers." + std::to_string(layer) + ".input_layernorm", c.hidden_size, c.rms_norm_eps)),
        self_attn_(c, layer, r),
        post_attention_layernorm_(
            RmsNorm<B>::load(r, "model.layers." + std::to_string(layer) + ".post_attention_layernorm", c.hidden_size, c.rms_norm_eps)),
        mlp_(c, layer, r) {}

  /// h[T, H] <- h + SelfAttn(RMSNorm_in(h)); h <- h + MLP(RMSNorm_post(h)). `instrument`: none, or one
  /// whose hooks run at the marked points (dots1/instrument/instrument.hpp); none compiles to no hook code.
  template <class... I>
  void forward(ForwardContext<B>& ctx, KvCacheLayer<B>& cache, typename B::Vector& h, I*... instrument) const {
    using Hooks = HooksOf<I...>;
    const int64_t T = ctx.batch * ctx.seq;
    auto& x_ = ctx.work->x;
    auto& y_ = ctx.work->y;
    if constexpr (Hooks::residual) instrument_hooks::residual<B>(InstrumentAt<I>{instrument, index_}..., ResidualPoint::layer_input, h);
    input_layernorm_(h, x_);
    self_attn_.forward(ctx, cache, x_, y_, InstrumentAt<I>{instrument, index_}...);
    B::add(h, y_);
    if constexpr (Hooks::residual) instrument_hooks::residual<B>(InstrumentAt<I>{instrument, index_}..., ResidualPoint::after_attention, h);
    post_attention_layernorm_(h, x_);
    mlp_.forward(*ctx.work, x_, T, y_, InstrumentAt<I>{instrument, index_}...);
    B::add(h, y_);
    if constexpr (Hooks::residual) instrument_hooks::residual<B>(InstrumentAt<I>{instrument, index_}..., ResidualPoint::layer_output, h);
  }

  int64_t index() const { return index_; }

 private:
  int64_t index_;
  RmsNorm<B> input_layernorm_;
  SelfAttention<B, AttentionPolicy> self_attn_;
  RmsNorm<B> post_attention_layernorm_;
  typename FeedForwardPolicy::template block<B> mlp_;
};

// ------------------------------------------------------------------------------------------------ stacks

/// The stack a loaded config chooses: each layer is one of the four instantiations.
template <class B>
class RuntimeStack {
 public:
  using Layer = std::variant<DecoderLayer<B, FullAttention, DenseMlp>, DecoderLayer<B, FullAttention, MoE>,
                             DecoderLayer<B, SlidingWindowAttention, DenseMlp>, DecoderLayer<B, SlidingWindowAttention, MoE>>;

  RuntimeStack(const Dots1Config& c, WeightReader& r) {
    const auto plan = c.layer_plan();
    layers_.reserve(plan.size());
    for (int64_t i = 0; i < static_cast<int64_t>(plan.size()); ++i) {
      const LayerPlan& p = plan[static_cast<size_t>(i)];
      const bool sliding = p.attention == AttentionKind::sliding, moe = p.feed_forward == FeedForwardKind::moe;
      if (!sliding && !moe) layers_.emplace_back(std::in_place_index<0>, c, i, r);
      else if (!sliding && moe) layers_.emplace_back(std::in_place_index<1>, c, i, r);
      else if (sliding && !moe) layers_.emplace_back(std::in_place_index<2>, c, i, r);
      else layers_.emplace_back(std::in_place_index<3>, c, i, r);
    }
  }
  size_t size() const { return layers_.size(); }
  /// Calls f(layer) for each layer in order, with the layer's concrete type.
  template <class F>
  void for_each(F&& f) {
    for (auto& l : layers_) std::visit(f, l);
  }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& l : layers_) std::visit(f, l);
  }

 private:
  std::vector<Layer> layers_;
};

/// A stack fixed at compile time: StaticStack<B, DecoderLayer<B, FullAttention, DenseMlp>, ...>. Loading
/// checks that the config's layer plan is exactly this one.
template <class B, class... Layers>
class StaticStack {
 public:
  StaticStack(const Dots1Config& c, WeightReader& r) : layers_(make(c, r, std::index_sequence_for<Layers...>{})) {}
  static constexpr size_t size() { return sizeof...(Layers); }
  template <class F>
  void for_each(F&& f) {
    std::apply([&](auto&... l) { (f(l), ...); }, layers_);
  }
  template <class F>
  void for_each(F&& f) const {
    std::apply([&](const auto&... l) { (f(l), ...); }, layers_);
  }
  static constexpr std::array<LayerPlan, sizeof...(Layers)> plan{Layers::plan...};

 private:
  template <size_t... I>
  static std::tuple<Layers...> make(const Dots1Config& c, WeightReader& r, std::index_sequence<I...>) {
    const auto config_plan = c.layer_plan();
    if (config_plan.size() != sizeof...(Layers))
      throw ConfigError("num_hidden_layers", std::to_string(config_plan.size()),
                        "this compile-time stack has " + std::to_string(sizeof...(Layers)) + " layers");
    for (size_t i = 0; i < plan.size(); ++i)
      if (!(config_plan[i] == plan[i]))
        throw ConfigError(config_plan[i].feed_forward != plan[i].feed_forward ? "first_k_dense_replace" : "layer_types",
                          "layer " + std::to_string(i),
                          std::string("this compile-time stack fixes layer ") + std::to_string(i) + " as " +
                              (plan[i].attention == AttentionKind::sliding ? "sliding" : "full") + " attention + " +
                              (plan[i].feed_forward == FeedForwardKind::moe ? "MoE" : "dense MLP") + ", the config disagrees");
    return std::tuple<Layers...>{Layers(c, static_cast<int64_t>(I), r)...};
  }
  std::tuple<Layers...> layers_;
};

// ------------------------------------------------------------------------------------------------ model

/// HF Dots1Model: embeddings, the decoder stack, the final norm. Stack = RuntimeStack<B> or a StaticStack.
template <class B, class Stack = RuntimeStack<B>>
class Dots1Model {
 public:
  using T = typename B::Scalar;
  using Cache = KvCache<B>;

  Dots1Model(const Dots1Config& c, WeightReader& r)
      : config_(c), embed_tokens_(B::matrix(r.take("model.embed_tokens.weight", {c.vocab_size, c.hidden_size}))),  // [V, H]
        layers_(c, r), norm_(RmsNorm<B>::load(r, "model.norm", c.hidden_size, c.rms_norm_eps)), rotary_(c) {}

  const Dots1Config& config() const { return config_; }
  const typename B::Matrix& embed_tokens() const { return embed_tokens_; }
  Stack& layers() { return layers_; }
  const Stack& layers() const { return layers_; }

  /// Runs the decoder; h ends as the final normed hidden state [B*S, H]. Fills hidden_states/attentions
  /// when requested. `cache` must be non-null (a fresh one when the caller has none).
  /// Thread-safe: the model is only read (the activations live in `cache`), so several threads may run
  /// forwards at once, each on its own cache.
  /// `instrument`: none, or one (dots1/instrument/instrument.hpp).
  template <class... I>
  void forward(const ForwardInput& in, Cache& cache, bool cache_from_caller, typename B::Vector& h,
               std::vector<HostTensor<T>>* hidden_states, std::vector<HostTensor<T>>* attentions, I*... instrument) const {
    validate(in, cache);
    const int64_t Bn = in.batch, S = in.seq, H = config_.hidden_size;
    const int64_t past = cache.seq_length();
    // embeddings [B,S,H]
    if (!in.input_ids.empty()) {
      B::embedding(embed_tokens_, B::upload(std::span<const int64_t>(in.input_ids)), h);
    } else {
      std::vector<T> e(in.inputs_embeds.begin(), in.inputs_embeds.end());
      h = B::upload(std::span<const T>(e));
    }
    // positions: given, or cache_position, or arange(S) + past (padding is not taken into account, as in HF)
    std::vector<int64_t> positions(static_cast<size_t>(Bn * S));
    for (int64_t b = 0; b < Bn; ++b)
      for (int64_t s = 0; s < S; ++s) {
        int64_t p = in.cache_position.empty() ? past + s : in.cache_position[static_cast<size_t>(s)];
        if (!in.position_ids.empty())
          p = in.position_ids[static_cast<size_t>(static_cast<int64_t>(in.position_ids.size()) == S ? s : b * S + s)];
        positions[static_cast<size_t>(b * S + s)] = p;
      }
    std::vector<T> cos, sin;
    {
      // HF's dynamic/longrope RoPE keeps state across forwards (the frequencies of the longest sequence
      // seen): one forward at a time updates it and builds its tables.
      std::lock_guard<std::mutex> lock(*rotary_mutex_);
      rotary_.update(*std::max_element(positions.begin(), positions.end()) + 1);
      rotary_.template tables<T>(positions, cos, sin);
    }

    ForwardContext<B> ctx;
    ctx.work = &cache.workspace();
    ctx.batch = Bn;
    ctx.seq = S;
    ctx.cos = B::upload(std::span<const T>(cos));
    ctx.sin = B::upload(std::span<const T>(sin));
    if (!in.attention_mask.empty()) {
      std::vector<int32_t> m(in.attention_mask.begin(), in.attention_mask.end());
      ctx.key_mask = B::upload(std::span<const int32_t>(m));
      ctx.key_mask_len = static_cast<int64_t>(in.attention_mask.size()) / Bn;
    }
    // Packed sequences (HF find_packed_sequence_indices): only with no 2-D mask, no cache and explicit
    // position ids that are not consecutive.
    if (in.attention_mask.empty() && !cache_from_caller && !in.use_cache && !in.position_ids.empty()) {
      std::vector<int32_t> ids(static_cast<size_t>(Bn * S));
      bool any = false;
      for (int64_t b = 0; b < Bn; ++b) {
        int32_t id = 0;
        for (int64_t s = 0; s < S; ++s) {
          if (s > 0 && positions[static_cast<size_t>(b * S + s)] - positions[static_cast<size_t>(b * S + s - 1)] != 1) ++id;
          ids[static_cast<size_t>(b * S + s)] = id;
        }
        any = any || id != 0;
      }
      if (any) {
        ctx.packed_positions = B::upload(std::span<const int64_t>(positions));
        ctx.packed_ids = B::upload(std::span<const int32_t>(ids));
      }
    }
    ctx.attentions = attentions;

    if constexpr (HooksOf<I...>::active)
      (instrument->begin_forward({Bn, S, past, H, config_.num_hidden_layers, std::span<const int64_t>(in.input_ids)}), ...);
    if (hidden_states) hidden_states->push_back({{Bn, S, H}, B::download(h)});
    size_t i = 0;
    layers_.for_each([&](auto& layer) {
      layer.forward(ctx, cache.layer(i++), h, instrument...);
      if (hidden_states) hidden_states->push_back({{Bn, S, H}, B::download(h)});
    });
    norm_(h, h);
    if (hidden_states) hidden_states->back().values = B::download(h);  // HF: the last entry is post-norm
    if constexpr (HooksOf<I...>::active) (instrument->end_forward(), ...);
  }

 private:
  void validate(const ForwardInput& in, const Cache& cache) const {
    const int64_t V = config_.vocab_size, H = config_.hidden_size;
    if (in.input_ids.empty() == in.inputs_embeds.empty())
      throw InputError("forward: give exactly one of input_ids and inputs_embeds");
    if (in.batch <= 0 || in.seq <= 0)
      throw InputError("forward: empty batch (batch " + std::to_string(in.batch) + ", sequence length " + std::to_string(in.seq) + ")");
    const int64_t T = in.batch * in.seq;
    if (!in.input_ids.empty()) {
      if (static_cast<int64_t>(in.input_ids.size()) != T)
        throw InputError("forward: input_ids has " + std::to_string(in.input_ids.size()) + " values, expected batch*seq = " + std::to_string(T));
      for (size_t t = 0; t < in.input_ids.size(); ++t)
        if (in.input_ids[t] < 0 || in.input_ids[t] >= V)
          throw InputError("forward: input_ids[" + std::to_string(t / static_cast<size_t>(in.seq)) + "][" +
                           std::to_string(t % static_cast<size_t>(in.seq)) + "] = " + std::to_string(in.input_ids[t]) +
                           " is outside the vocabulary [0, " + std::to_string(V) + ")");
    } else if (static_cast<int64_t>(in.inputs_embeds.size()) != T * H) {
      throw InputError("forward: inputs_embeds has " + std::to_string(in.inputs_embeds.size()) + " values, expected batch*seq*hidden = " +
                       std::to_string(T * H));
    }
    if (cache.batch() != in.batch)
      throw InputError("forward: the cache holds batch " + std::to_string(cache.batch()) + ", the input has batch " + std::to_string(in.batch));
    const int64_t past = cache.seq_length();
    if (!in.attention_mask.empty()) {
      if (static_cast<int64_t>(in.attention_mask.size()) != in.batch * (past + in.seq))
        throw InputError("forward: attention_mask has " + std::to_string(in.attention_mask.size()) + " values, expected batch x (past + seq) = " +
                         std::to_string(in.batch) + " x " + std::to_string(past + in.seq));
      for (auto m : in.attention_mask)
        if (m != 0 && m != 1) throw InputError("forward: attention_mask values must be 0 or 1, got " + std::to_string(m));
    }
    if (!in.cache_position.empty()) {
      // HF v4's cache_position names the cache slots of the new tokens. A dynamic cache appends, so the only
      // consistent value is arange(past, past + seq); anything else would silently misplace keys.
      if (static_cast<int64_t>(in.cache_position.size()) != in.seq)
        throw InputError("forward: cache_position has " + std::to_string(in.cache_position.size()) + " values, expected seq = " + std::to_string(in.seq));
      for (int64_t s = 0; s < in.seq; ++s)
        if (in.cache_position[static_cast<size_t>(s)] != past + s)
          throw InputError("forward: cache_position[" + std::to_string(s) + "] = " + std::to_string(in.cache_position[static_cast<size_t>(s)]) +
                           ", but the cache holds " + std::to_string(past) + " tokens, so the new tokens occupy slots " + std::to_string(past) +
                           ".." + std::to_string(past + in.seq - 1));
    }
    if (!in.position_ids.empty()) {
      const auto n = static_cast<int64_t>(in.position_ids.size());
      if (n != T && n != in.seq)
        throw InputError("forward: position_ids has " + std::to_string(n) + " values, expected batch x seq = " + std::to_string(T) + " or seq = " +
                         std::to_string(in.seq));
      for (auto p : in.position_ids)
        if (p < 0 || p >= (int64_t(1) << 24))
          throw InputError("forward: position id " + std::to_string(p) + " is outside [0, 2^24) (RoPE angles are exact float32 only there)");
    }
  }

  Dots1Config config_;
  typename B::Matrix embed_tokens_;
  Stack layers_;
  RmsNorm<B> norm_;
  mutable RotaryEmbedding rotary_;  // dynamic/longrope state, guarded by rotary_mutex_
  std::unique_ptr<std::mutex> rotary_mutex_ = std::make_unique<std::mutex>();
};

/// Backends whose weights live in host memory (the CPU backend): their loads are checked against it.
template <class B>
concept host_resident_weights = requires {
  requires B::weights_in_host_memory;
};

/// HF Dots1ForCausalLM: the model plus the LM head (untied, or tied to embed_tokens) and the loss.
template <class B, class Stack = RuntimeStack<B>>
class Dots1ForCausalLM {
 public:
  using T = typename B::Scalar;
  using backend = B;
  using Cache = KvCache<B>;
  using Output = CausalLMOutput<T, Cache>;

  /// Loads from any weight source; every tensor of the source must be used. With `parallel` (a model split
  /// across processes, see parallel/plan.hpp) only this rank's shard is taken; every rank must then run
  /// the same forwards, one at a time, since they communicate.
  Dots1ForCausalLM(const Dots1Config& c, const WeightSource& source, std::shared_ptr<const Parallel> parallel = Parallel::single())
      : Dots1ForCausalLM(c, WeightReader(source, checked(c, std::move(parallel)))) {}

  /// `format` converts the weight matrices (e.g. WeightFormat::bf16 halves a float32 checkpoint).
  /// Fails early with ResourceError when the weights would not fit in the available memory (see
  /// io/memory_plan.hpp).
  static Dots1ForCausalLM from_pretrained(const std::filesystem::path& dir, WeightFormat format = WeightFormat::as_stored,
                                          std::shared_ptr<const Parallel> parallel = Parallel::single()) {
    auto ck = std::make_shared<Checkpoint>(Checkpoint::open(dir));
    if constexpr (host_resident_weights<B>)
      check_memory(rank_share(checkpoint_memory(*ck, format, B::fast, sizeof(T)), ck->config(), *parallel), "loading checkpoint " + dir.string());
    if (format != WeightFormat::as_stored) return Dots1ForCausalLM(ck->config(), CastWeights(*ck, format), std::move(parallel));
    return Dots1ForCausalLM(ck->config(), *ck, std::move(parallel));
  }
  /// This rank's shard of a checkpoint, as stored.
  static Dots1ForCausalLM from_pretrained(const std::filesystem::path& dir, std::shared_ptr<const Parallel> parallel) {
    return from_pretrained(dir, WeightFormat::as_stored, std::move(parallel));
  }
  /// Deterministic random weights (benchmarks, examples); matrices in float32, or bf16 with WeightFormat::bf16.
  static Dots1ForCausalLM random(const Dots1Config& c, uint64_t seed, WeightFormat format = WeightFormat::as_stored,
                                 std::shared_ptr<const Parallel> parallel = Parallel::single()) {
    if constexpr (host_resident_weights<B>)
      check_memory(rank_share(random_weights_memory(c, format == WeightFormat::bf16), c, *parallel), "generating random weights for this config");
    RandomWeights w(model_tensor_shapes(c), seed, format);
    return Dots1ForCausalLM(c, w, std::move(parallel));
  }

  const Dots1Config& config() const { return model_.config(); }
  Dots1Model<B, Stack>& model() { return model_; }
  /// How the model is split (Parallel::single() when it is not), with its communication time (stats()).
  const Parallel& parallel() const { return *parallel_; }
  /// Bytes of the weights this process holds, as the source gave them (views into a memory-mapped
  /// checkpoint count, though the page cache holds them).
  size_t weight_bytes() const { return weight_bytes_; }
  /// A cache for this process's KV heads (all of them unless tensor parallel).
  Cache make_cache(int64_t batch) const { return Cache(config(), batch, parallel_->kv_heads(config()).size()); }

  /// HF forward. `cache` may be null: with use_cache a fresh one is made and returned in the output.
  /// Thread-safe for concurrent calls on different caches (a null cache is a fresh one): see KvCache.
  /// `instrument` (none, or one: a dots1::Recorder, Intervention, Chain of them, or your own; see
  /// dots1/instrument/instrument.hpp) observes or edits every layer; without one no hook code is compiled.
  /// Instruments need the whole model in this process (not split by parallel/plan.hpp).
  Output forward(const ForwardInput& in, std::shared_ptr<Cache> cache, NoInstrument) const { return forward(in, std::move(cache)); }
  template <class... I>
    requires(sizeof...(I) <= 1 && (InstrumentPolicy<std::remove_cvref_t<I>> && ...))
  Output forward(const ForwardInput& in, std::shared_ptr<Cache> cache = nullptr, I&&... instrument) const {
    if constexpr (HooksOf<std::remove_cvref_t<I>...>::active)
      if (!parallel_->is_single()) throw InputError("forward: instruments need the whole model in one process; this one is split across ranks");
    Output out;
    const bool from_caller = cache != nullptr;
    if (!cache) cache = std::make_shared<Cache>(make_cache(std::max<int64_t>(in.batch, 1)));
    const int64_t Bn = in.batch, S = in.seq, H = config().hidden_size, V = config().vocab_size;
    check_head_inputs(in);
    check_forward_memory(config(), in, cache->seq_length(), sizeof(T));  // dots1/io/forward_preflight.hpp
    auto& work = cache->workspace();
    auto& h_ = work.hidden;
    auto& selected_ = work.selected;
    auto& logits_ = work.logits;
    if constexpr (HooksOf<std::remove_cvref_t<I>...>::active)
      model_.forward(in, *cache, from_caller, h_, in.output_hidden_states ? &out.hidden_states : nullptr,
                     in.output_attentions ? &out.attentions : nullptr, &instrument...);
    else  // no instrument, or one with every hook off (NoInstrument): the plain forward
      model_.forward(in, *cache, from_caller, h_, in.output_hidden_states ? &out.hidden_states : nullptr,
                     in.output_attentions ? &out.attentions : nullptr);
    out.last_hidden_state = {{Bn, S, H}, B::download(h_)};
    // logits_to_keep: rows of h to project
    std::vector<int64_t> keep = kept_positions(in.logits_to_keep, S);
    const auto kept = static_cast<int64_t>(keep.size());
    if (kept == S && in.logits_to_keep.keeps_all()) {
      lm_head(h_, Bn * S, logits_);
    } else {
      std::vector<int64_t> rows;
      for (int64_t b = 0; b < Bn; ++b)
        for (auto p : keep) rows.push_back(b * S + p);
      B::gather_rows(h_, H, B::upload(std::span<const int64_t>(rows)), selected_);
      lm_head(selected_, Bn * kept, logits_);
    }
    out.logits = {{Bn, kept, V}, all_logits(logits_, Bn * kept)};
    if (!in.labels.empty()) out.loss = causal_lm_loss(out.logits.values, in.labels, Bn, S, V);
    if (in.use_cache || from_caller) out.past_key_values = cache;
    return out;
  }

  /// generate()'s step when tokens are chosen where the logits are (backend/thrust/token_selection.hpp):
  /// the forward of `in` through `cache` with the logits of each row's last position only (logits_to_keep
  /// = 1), left in backend memory as [batch, V] (the cache's workspace: valid until its next forward).
  /// Nothing is copied to the host; hidden states, attentions and the loss are not computed, whatever `in`
  /// asks. `instrument`: none, or one, as for forward().
  template <class... I>
    requires(sizeof...(I) <= 1 && (InstrumentPolicy<std::remove_cvref_t<I>> && ...))
  const typename B::Vector& forward_last_logits(const ForwardInput& in, Cache& cache, I&&... instrument) const {
    const int64_t Bn = in.batch, S = in.seq, H = config().hidden_size;
    auto& work = cache.workspace();
    if constexpr (HooksOf<std::remove_cvref_t<I>...>::active) {
      if (!parallel_->is_single()) throw InputError("forward: instruments need the whole model in one process; this one is split across ranks");
      model_.forward(in, cache, true, work.hidden, nullptr, nullptr, &instrument...);
    } else {
      model_.forward(in, cache, true, work.hidden, nullptr, nullptr);
    }
    const typename B::Vector* last = &work.hidden;
    if (S > 1) {
      std::vector<int64_t> rows(static_cast<size_t>(Bn));
      for (int64_t b = 0; b < Bn; ++b) rows[static_cast<size_t>(b)] = b * S + S - 1;
      B::gather_rows(work.hidden, H, B::upload(std::span<const int64_t>(rows)), work.selected);
      last = &work.selected;
    }
    lm_head(*last, Bn, work.logits);
    // a vocabulary-split head: the slices gathered from the group (on the host) and put back
    if (lm_head_weight_.rows != config().vocab_size) work.logits = B::upload(std::span<const T>(all_logits(work.logits, Bn)));
    return work.logits;
  }

 private:
  Dots1ForCausalLM(const Dots1Config& c, WeightReader&& r)
      : model_(c, r), lm_head_weight_(load_head(c, r)), parallel_(r.parallel_ptr()), weight_bytes_(r.held_bytes()) {
    r.finish();
  }

  static std::shared_ptr<const Parallel> checked(const Dots1Config& c, std::shared_ptr<const Parallel> p) {
    p->plan().check_config(c);
    return p;
  }
  /// A rank's part of the whole model's memory need: the fraction of the weight bytes it holds.
  static MemoryNeed rank_share(MemoryNeed need, const Dots1Config& c, const Parallel& p) {
    if (p.is_single()) return need;
    const double f = expected_weight_bytes(c, p) / expected_weight_bytes(c, *Parallel::single());
    need.owned = static_cast<uint64_t>(static_cast<double>(need.owned) * f);
    need.mapped = static_cast<uint64_t>(static_cast<double>(need.mapped) * f);
    return need;
  }

  typename B::Matrix load_head(const Dots1Config& c, WeightReader& r) {
    // Tied: HF uses embed_tokens and ignores a stored lm_head.weight (then replicated, as the embeddings).
    if (c.tie_word_embeddings) {
      r.skip_if_present("lm_head.weight", {c.vocab_size, c.hidden_size});
      return model_.embed_tokens();
    }
    // Tensor parallel: this rank's vocabulary rows; the logits are all-gathered.
    return B::matrix(r.take_rows("lm_head.weight", {c.vocab_size, c.hidden_size}, r.parallel().tp_rows(c.vocab_size)));  // [V, H]
  }

  /// The logits [rows, V] on the host; a vocabulary-split head's slices [rows, V_r] gathered from the group.
  std::vector<T> all_logits(const typename B::Vector& local, int64_t rows) const {
    const int64_t V = config().vocab_size;
    if (lm_head_weight_.rows == V) return B::download(local);
    const int tp = parallel_->tp_size();
    std::vector<size_t> counts(static_cast<size_t>(tp));
    for (int r = 0; r < tp; ++r) counts[static_cast<size_t>(r)] = static_cast<size_t>(rows * split_evenly(V, tp, r).size());
    typename B::Vector gathered;
    B::resize(gathered, static_cast<size_t>(rows * V));
    parallel_->tp().all_gather_v(B::ptr(local), B::ptr(gathered), std::span<const size_t>(counts));
    const std::vector<T> parts = B::download(gathered);  // [tp][rows, V_r]
    std::vector<T> out(parts.size());
    int64_t at = 0;
    for (int r = 0; r < tp; ++r) {
      const IndexRange v = split_evenly(V, tp, r);
      for (int64_t i = 0; i < rows; ++i) std::copy_n(parts.begin() + at + i * v.size(), v.size(), out.begin() + i * V + v.begin);
      at += rows * v.size();
    }
    return out;
  }

  void lm_head(const typename B::Vector& x, int64_t rows, typename B::Vector& y) const {
    B::linear(lm_head_weight_, nullptr, x, rows, y);
  }

  void check_head_inputs(const ForwardInput& in) const {
    const int64_t S = in.seq, V = config().vocab_size;
    if (const auto* k = std::get_if<int64_t>(&in.logits_to_keep.value); k && *k < 0)
      throw InputError("forward: logits_to_keep = " + std::to_string(*k) + " must be >= 0 (0 keeps all positions)");
    if (const auto* list = std::get_if<std::vector<int64_t>>(&in.logits_to_keep.value)) {
      if (list->empty()) throw InputError("forward: logits_to_keep list is empty");
      for (auto p : *list)
        if (p < -S || p >= S) throw InputError("forward: logits_to_keep position " + std::to_string(p) + " is outside [" + std::to_string(-S) + ", " + std::to_string(S) + ")");
    }
    if (!in.labels.empty()) {
      if (static_cast<int64_t>(in.labels.size()) != in.batch * S)
        throw InputError("forward: labels has " + std::to_string(in.labels.size()) + " values, expected batch x seq = " + std::to_string(in.batch * S));
      if (!in.logits_to_keep.keeps_all())
        throw InputError("forward: labels need logits for every position (logits_to_keep = 0), as in HF");
      for (auto l : in.labels)
        if (l != -100 && (l < 0 || l >= V))
          throw InputError("forward: label " + std::to_string(l) + " is outside the vocabulary [0, " + std::to_string(V) + ") and is not -100");
    }
  }

  static std::vector<int64_t> kept_positions(const LogitsToKeep& k, int64_t S) {
    std::vector<int64_t> keep;
    if (const auto* last = std::get_if<int64_t>(&k.value)) {
      const int64_t n = *last == 0 ? S : std::min(*last, S);  // Python slice(-k, None)
      for (int64_t p = S - n; p < S; ++p) keep.push_back(p);
    } else {
      for (auto p : std::get<std::vector<int64_t>>(k.value)) keep.push_back(p < 0 ? p + S : p);
    }
    return keep;
  }

  /// ForCausalLMLoss: shift inside, -100 ignored, mean over valid targets (NaN when none, as torch).
  static double causal_lm_loss(const std::vector<T>& logits, const std::vector<int64_t>& labels, int64_t Bn, int64_t S, int64_t V) {
    double total = 0;
    int64_t count = 0;
    for (int64_t b = 0; b < Bn; ++b)
      for (int64_t s = 0; s + 1 < S; ++s) {
        const int64_t target = labels[static_cast<size_t>(b * S + s + 1)];
        if (target == -100) continue;
        const T* row = logits.data() + (b * S + s) * V;
        double mx = -INFINITY;
        for (int64_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
        double sum = 0;
        for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
        total += mx + std::log(sum) - static_cast<double>(row[target]);
        ++count;
      }
    return total / static_cast<double>(count);
  }

  Dots1Model<B, Stack> model_;
  typename B::Matrix lm_head_weight_;
  std::shared_ptr<const Parallel> parallel_;
  size_t weight_bytes_ = 0;
};

}  // namespace dots1
