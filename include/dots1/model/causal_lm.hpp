// dots1/model/causal_lm.hpp — HF's <Family>Model and <Family>ForCausalLM for any model family
// (model/family.hpp): embeddings, the decoder stack the config chooses, the final norm, the LM head and the
// loss, with every option of HF's forward (base/forward_io.hpp).
//
//   CausalLM<B, Dots1>  = Dots1ForCausalLM<B>   on the backend B, layers chosen by the config
//   CausalLM<B, Dots1, StaticStack<B, ...>>      the layers fixed at compile time
//
// One forward entry point: forward(input, cache[, instrument]). With input.logits_on_backend it is
// generate()'s step: the last position's logits stay in backend memory (output.backend_logits) and nothing
// is copied to the host.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dots1/backend/backend_concept.hpp"
#include "dots1/base/forward_io.hpp"
#include "dots1/backend/meta/meta_backend.hpp"
#include "dots1/base/memory_check.hpp"
#include "dots1/base/tensor_spec.hpp"
#include "dots1/config.hpp"
#include "dots1/error.hpp"
#include "dots1/instrument/instrument.hpp"
#include "dots1/io/checkpoint.hpp"
#include "dots1/io/forward_preflight.hpp"
#include "dots1/io/memory_plan.hpp"
#include "dots1/model/forward_context.hpp"
#include "dots1/model/layers.hpp"
#include "dots1/model/rope.hpp"
#include "dots1/model/stack.hpp"
#include "dots1/model/weights.hpp"
#include "dots1/parallel/plan.hpp"

namespace dots1 {

/// What a model family gives the generic model: its model_type, how its config.json reads, the layer
/// types its configs may ask for, and which kind each layer of a config is.
template <class F>
concept ModelFamily = requires(const nlohmann::json& j, const Dots1Config& c) {
  { F::model_type } -> std::convertible_to<const char*>;
  { F::read_config(j) } -> std::same_as<Dots1Config>;
  { F::layer_kinds(c) } -> std::same_as<std::vector<LayerKind>>;
};

/// The stack a family's configs choose at load time, from the family's list of layer types.
template <Backend B, ModelFamily Family>
using FamilyStack = RuntimeStack<B, typename Family::template layers<B>>;

/// HF <Family>Model: embeddings, the decoder stack, the final norm.
template <Backend B, ModelFamily Family, class Stack = FamilyStack<B, Family>>
class DecoderModel {
 public:
  using T = typename B::Scalar;
  using Cache = typename Stack::Cache;

  DecoderModel(const Dots1Config& c, Weights w)
      : config_(c), embed_tokens_(w.at("embed_tokens"), c.vocab_size, c.hidden_size),  // [V, H]
        layers_(c, Family::layer_kinds(c), w.at("layers")), norm_(w.at("norm"), c.hidden_size, c.rms_norm_eps), rotary_(c) {}

  const Dots1Config& config() const { return config_; }
  const Embedding<B>& embed_tokens() const { return embed_tokens_; }
  const Stack& layers() const { return layers_; }
  Cache make_cache(int64_t batch) const { return layers_.make_cache(batch); }

  /// Runs the decoder; h ends as the final normed hidden state [B*S, H]. Fills hidden_states/attentions
  /// when requested. Thread-safe: the model is only read (the activations live in `cache`), so several
  /// threads may run forwards at once, each on its own cache. `obs`: the instrument's observer (Observer<B>
  /// without one: no hook code).
  template <class Obs>
  void forward(const ForwardInput& in, Cache& cache, bool cache_from_caller, const Parallel& parallel, typename B::Vector& h,
               std::vector<HostTensor<T>>* hidden_states, std::vector<HostTensor<T>>* attentions, Obs obs) const {
    validate(in, cache);
    const int64_t Bn = in.batch, S = in.seq, H = config_.hidden_size;
    const int64_t past = cache.seq_length();
    if (!in.input_ids.empty()) {
      embed_tokens_(B::upload(std::span<const int64_t>(in.input_ids)), h);  // [B*S, H]
    } else {
      std::vector<T> e(in.inputs_embeds.begin(), in.inputs_embeds.end());
      h = B::upload(std::span<const T>(e));
    }
    const std::vector<int64_t> positions = position_ids(in, past);
    ForwardContext<B> ctx;
    ctx.work = &cache.workspace();
    ctx.parallel = &parallel;
    ctx.batch = Bn;
    ctx.seq = S;
    {
      // HF's dynamic/longrope RoPE keeps state across forwards (the frequencies of the longest sequence
      // seen): one forward at a time updates it and builds its tables.
      std::vector<T> cos, sin;
      std::lock_guard<std::mutex> lock(*rotary_mutex_);
      rotary_.update(*std::max_element(positions.begin(), positions.end()) + 1);
      rotary_.template tables<T>(positions, cos, sin);
      ctx.cos = B::upload(std::span<const T>(cos));
      ctx.sin = B::upload(std::span<const T>(sin));
    }
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

    if constexpr (Obs::active) obs.instrument->begin_forward({Bn, S, past, H, config_.num_hidden_layers, std::span<const int64_t>(in.input_ids)});
    if (hidden_states) hidden_states->push_back({{Bn, S, H}, B::download(h)});
    layers_.for_each(cache, [&](const auto& layer, auto& state) {
      layer.forward(ctx, state, h, obs.at(layer.index()));
      if (hidden_states) hidden_states->push_back({{Bn, S, H}, B::download(h)});
    });
    cache.advance(S);
    norm_(h, h);
    if (hidden_states) hidden_states->back().values = B::download(h);  // HF: the last entry is post-norm
    if constexpr (Obs::active) obs.instrument->end_forward();
  }

 private:
  /// Given, or cache_position, or arange(S) + past (padding is not taken into account, as in HF).
  static std::vector<int64_t> position_ids(const ForwardInput& in, int64_t past) {
    const int64_t Bn = in.batch, S = in.seq;
    std::vector<int64_t> positions(static_cast<size_t>(Bn * S));
    for (int64_t b = 0; b < Bn; ++b)
      for (int64_t s = 0; s < S; ++s) {
        int64_t p = in.cache_position.empty() ? past + s : in.cache_position[static_cast<size_t>(s)];
        if (!in.position_ids.empty()) p = in.position_ids[static_cast<size_t>(static_cast<int64_t>(in.position_ids.size()) == S ? s : b * S + s)];
        positions[static_cast<size_t>(b * S + s)] = p;
      }
    return positions;
  }

  void validate(const ForwardInput& in, const Cache& cache) const {
    const int64_t V = config_.vocab_size, H = config_.hidden_size;
    if (in.input_ids.empty() == in.inputs_embeds.empty()) throw InputError("forward: give exactly one of input_ids and inputs_embeds");
    check_batch_shape(in.batch, in.seq, "forward");
    const int64_t T = in.batch * in.seq;
    if (!in.input_ids.empty()) {
      check_input_ids(in.input_ids, in.batch, in.seq, V, "forward");
    } else if (static_cast<int64_t>(in.inputs_embeds.size()) != T * H) {
      throw InputError("forward: inputs_embeds has " + std::to_string(in.inputs_embeds.size()) + " values, expected batch*seq*hidden = " +
                       std::to_string(T * H));
    }
    if (cache.batch() != in.batch)
      throw InputError("forward: the cache holds batch " + std::to_string(cache.batch()) + ", the input has batch " + std::to_string(in.batch));
    const int64_t past = cache.seq_length();
    if (!in.attention_mask.empty()) check_attention_mask(in.attention_mask, in.batch, past + in.seq, "forward", "past + seq");
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
  Embedding<B> embed_tokens_;
  Stack layers_;
  RmsNorm<B> norm_;
  mutable RotaryEmbedding rotary_;  // dynamic/longrope state, guarded by rotary_mutex_
  std::unique_ptr<std::mutex> rotary_mutex_ = std::make_unique<std::mutex>();
};

/// HF <Family>ForCausalLM: the model plus the LM head (untied, or tied to embed_tokens) and the loss.
/// A model as its blocks declare it, without loading it (CausalLM::describe_model).
struct ModelDescription {
  std::vector<TensorSpec> tensors;
  std::vector<LayerKind> layers;
  std::vector<int64_t> windows;  // per layer: the attention window, 0 = every key
};

template <Backend B, ModelFamily Family, class Stack = FamilyStack<B, Family>>
class CausalLM {
  template <Backend, ModelFamily, class>
  friend class CausalLM;

 public:
  using T = typename B::Scalar;
  using backend = B;
  using family = Family;
  using Cache = typename Stack::Cache;
  /// HF's CausalLMOutputWithPast; `backend_logits` is set by a forward with input.logits_on_backend.
  struct Output : CausalLMOutput<T, Cache> {
    const typename B::Vector* backend_logits = nullptr;  // [batch, V]: valid until the cache's next forward
  };

  /// Loads from any weight source; every tensor of the source must be used. `format` converts the weight
  /// matrices (e.g. WeightFormat::bf16 halves a float32 checkpoint). With `parallel` (a model split across
  /// processes, see parallel/plan.hpp) only this rank's shard is taken; every rank must then run the same
  /// forwards, one at a time, since they communicate.
  CausalLM(const Dots1Config& c, const WeightSource& source, WeightFormat format = WeightFormat::as_stored,
           std::shared_ptr<const Parallel> parallel = Parallel::single())
      : CausalLM(c, WeightLoader(source, format, checked(c, std::move(parallel)))) {}
  CausalLM(const Dots1Config& c, const WeightSource& source, std::shared_ptr<const Parallel> parallel)
      : CausalLM(c, source, WeightFormat::as_stored, std::move(parallel)) {}

  /// A checkpoint folder (config.json read by the family). Fails early with ResourceError when the weights
  /// would not fit in the available memory (see io/memory_plan.hpp).
  static CausalLM from_pretrained(const std::filesystem::path& dir, WeightFormat format = WeightFormat::as_stored,
                                  std::shared_ptr<const Parallel> parallel = Parallel::single()) {
    const Checkpoint ck = Checkpoint::open(dir, &Family::read_config);
    check_fits(ck, format, *parallel);
    return CausalLM(ck.config(), ck, format, std::move(parallel));  // the weights keep their file mapping alive
  }
  /// ResourceError when this rank's share of checkpoint `ck`, loaded with `format`, would not fit in the
  /// available memory (host-memory backends; see io/memory_plan.hpp). from_pretrained checks it first.
  static void check_fits(const Checkpoint& ck, WeightFormat format, const Parallel& parallel) {
    if constexpr (B::memory == MemorySpace::host) {
      const std::shared_ptr<const Parallel> view(std::shared_ptr<const Parallel>(), &parallel);  // not owned
      check_memory(loaded_memory(describe(ck.config(), view, &ck), format, [](DType d) { return B::keeps_in_place(d); }, sizeof(T)),
                   "loading checkpoint " + ck.dir().string());
    }
  }
  static CausalLM from_pretrained(const std::filesystem::path& dir, std::shared_ptr<const Parallel> parallel) {
    return from_pretrained(dir, WeightFormat::as_stored, std::move(parallel));
  }
  /// Deterministic random weights (benchmarks, examples); matrices in float32, or bf16 with WeightFormat::bf16.
  static CausalLM random(const Dots1Config& c, uint64_t seed, WeightFormat format = WeightFormat::as_stored,
                         std::shared_ptr<const Parallel> parallel = Parallel::single()) {
    const std::vector<TensorSpec> tensors = describe(c, parallel);
    if constexpr (B::memory == MemorySpace::host) check_memory(random_weights_memory(tensors, format), "generating random weights for this config");
    const RandomWeights w(tensors, seed, format);
    return CausalLM(c, w, WeightFormat::as_stored, std::move(parallel));
  }

  /// Every tensor of this family's model for `c` as its blocks declare it (this rank's share when split);
  /// with `dtypes_from`, the stored dtypes are that source's. Nothing is loaded (the meta backend).
  static std::vector<TensorSpec> describe(const Dots1Config& c, std::shared_ptr<const Parallel> parallel = Parallel::single(),
                                          const WeightSource* dtypes_from = nullptr) {
    return describe_model(c, std::move(parallel), dtypes_from).tensors;
  }
  /// describe()'s tensors and each layer's kind and attention window (0: every key).
  static ModelDescription describe_model(const Dots1Config& c, std::shared_ptr<const Parallel> parallel = Parallel::single(),
                                         const WeightSource* dtypes_from = nullptr);

  const Dots1Config& config() const { return model_.config(); }
  const DecoderModel<B, Family, Stack>& model() const { return model_; }
  /// How the model is split (Parallel::single() when it is not), with its communication time (stats()).
  const Parallel& parallel() const { return *parallel_; }
  /// Every tensor this model holds, as its blocks declared it.
  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  /// Bytes of the weights this process holds (views into a memory-mapped checkpoint count, though the
  /// page cache holds them).
  size_t weight_bytes() const { return weight_bytes_; }
  /// A cache for this process's layers (its KV heads: all of them unless tensor parallel).
  Cache make_cache(int64_t batch) const { return model_.make_cache(batch); }

  /// HF forward. `cache` may be null: with use_cache a fresh one is made and returned in the output.
  /// Thread-safe for concurrent calls on different caches (a null cache is a fresh one): see KvCache.
  /// `instrument` (none, or one: a dots1::Recorder, Intervention, Chain of them, or your own; see
  /// dots1/instrument/instrument.hpp) observes or edits every layer; without one no hook code is compiled.
  /// Instruments need the whole model in this process (not split by parallel/plan.hpp).
  template <class... I>
    requires(sizeof...(I) <= 1 && (InstrumentPolicy<std::remove_cvref_t<I>> && ...))
  Output forward(const ForwardInput& in, std::shared_ptr<Cache> cache = nullptr, I&&... instrument) const {
    if constexpr (HooksOf<std::remove_cvref_t<I>...>::active) {
      if (!parallel_->is_single()) throw InputError("forward: instruments need the whole model in one process; this one is split across ranks");
      return run(in, std::move(cache), Observer<B, std::remove_cvref_t<I>...>{&instrument...});
    } else {
      return run(in, std::move(cache), Observer<B>{});  // no instrument, or one with every hook off: the plain forward
    }
  }

 private:
  struct Scratch {
    typename B::Vector hidden, selected, logits;  // h, the kept rows of h, their logits
  };

  CausalLM(const Dots1Config& c, WeightLoader&& w);

  /// The forward itself (defined below the class, not inline: dots1/instantiate.hpp compiles it once).
  template <class Obs>
  Output run(const ForwardInput& in, std::shared_ptr<Cache> cache, Obs obs) const;

  static std::shared_ptr<const Parallel> checked(const Dots1Config& c, std::shared_ptr<const Parallel> p) {
    p->plan().check_config(c);
    return p;
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
    if (in.logits_on_backend) {
      const auto* k = std::get_if<int64_t>(&in.logits_to_keep.value);
      if (!k || *k != 1) throw InputError("forward: logits_on_backend keeps the last position's logits only; set logits_to_keep = 1");
      if (!in.labels.empty() || in.output_hidden_states || in.output_attentions)
        throw InputError("forward: logits_on_backend computes the logits only; labels, output_hidden_states and output_attentions need a plain forward");
    }
    if (!in.labels.empty()) {
      if (static_cast<int64_t>(in.labels.size()) != in.batch * S)
        throw InputError("forward: labels has " + std::to_string(in.labels.size()) + " values, expected batch x seq = " + std::to_string(in.batch * S));
      if (!in.logits_to_keep.keeps_all()) throw InputError("forward: labels need logits for every position (logits_to_keep = 0), as in HF");
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

  DecoderModel<B, Family, Stack> model_;
  VocabParallelHead<B> lm_head_;
  std::shared_ptr<const Parallel> parallel_;
  size_t weight_bytes_ = 0;
  std::vector<TensorSpec> tensors_;
};

// Out of the class body (so not inline): the functions dots1/instantiate.hpp instantiates once per model type.

template <Backend B, ModelFamily Family, class Stack>
CausalLM<B, Family, Stack>::CausalLM(const Dots1Config& c, WeightLoader&& w)
    : model_(c, w.root().at("model")), lm_head_(w.root(), model_.embed_tokens(), c), parallel_(w.parallel_ptr()), weight_bytes_(w.held_bytes()) {
  w.finish();
  tensors_ = w.take_specs();
}

template <Backend B, ModelFamily Family, class Stack>
ModelDescription CausalLM<B, Family, Stack>::describe_model(const Dots1Config& c, std::shared_ptr<const Parallel> parallel, const WeightSource* dtypes_from) {
  // One TensorSpec per tensor (routed experts are most of them): a config with absurdly many fails here
  // with ResourceError rather than exhausting memory describing itself.
  const double tensors = static_cast<double>(c.num_hidden_layers) * (3.0 * static_cast<double>(c.n_routed_experts.value_or(0)) + 32.0) + 8.0;
  check_allocation(tensors * 2.0 * sizeof(TensorSpec) >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(tensors * 2.0 * sizeof(TensorSpec)),
                   "describing a model of " + std::to_string(c.num_hidden_layers) + " layers (its tensors' declarations)");
  using Meta = CausalLM<MetaBackend, Family, RebindStack<Stack, MetaBackend>>;
  const Meta meta(c, WeightLoader::describing(checked(c, std::move(parallel)), dtypes_from));
  ModelDescription d;
  d.tensors = meta.tensors();
  d.layers = Family::layer_kinds(c);
  const auto cache = meta.make_cache(1);
  for (size_t i = 0; i < cache.num_layers(); ++i) d.windows.push_back(cache.window(i));
  return d;
}

template <Backend B, ModelFamily Family, class Stack>
template <class Obs>
typename CausalLM<B, Family, Stack>::Output CausalLM<B, Family, Stack>::run(const ForwardInput& in, std::shared_ptr<Cache> cache, Obs obs) const {
  Output out;
  const bool from_caller = cache != nullptr;
  if (!cache) cache = std::make_shared<Cache>(make_cache(std::max<int64_t>(in.batch, 1)));
  const int64_t Bn = in.batch, S = in.seq, H = config().hidden_size, V = config().vocab_size;
  check_head_inputs(in);
  check_forward_memory(config(), in, cache->seq_length(), sizeof(T));  // a forward that would not fit fails before it allocates
  auto& s = cache->workspace().template get<Scratch>();
  const bool on_backend = in.logits_on_backend;
  model_.forward(in, *cache, from_caller, *parallel_, s.hidden, on_backend || !in.output_hidden_states ? nullptr : &out.hidden_states,
                 on_backend || !in.output_attentions ? nullptr : &out.attentions, obs);
  const std::vector<int64_t> keep = kept_positions(in.logits_to_keep, S);
  const auto kept = static_cast<int64_t>(keep.size());
  const typename B::Vector* rows = &s.hidden;  // the rows of h to project
  if (kept != S || !in.logits_to_keep.keeps_all()) {
    std::vector<int64_t> picked;
    for (int64_t b = 0; b < Bn; ++b)
      for (auto p : keep) picked.push_back(b * S + p);
    B::gather_rows(s.hidden, H, B::upload(std::span<const int64_t>(picked)), s.selected);
    rows = &s.selected;
  }
  lm_head_(*rows, Bn * kept, s.logits);  // [B*kept, V] (this rank's vocabulary slice when split)
  if (on_backend) {
    // a vocabulary-split head: the slices gathered from the group (on the host) and put back
    if (lm_head_.split()) s.logits = B::upload(std::span<const T>(lm_head_.gather(s.logits, Bn)));
    out.backend_logits = &s.logits;
    out.past_key_values = cache;
    return out;
  }
  out.last_hidden_state = {{Bn, S, H}, B::download(s.hidden)};
  out.logits = {{Bn, kept, V}, lm_head_.gather(s.logits, Bn * kept)};
  if (!in.labels.empty()) out.loss = causal_lm_loss(out.logits.values, in.labels, Bn, S, V);
  if (in.use_cache || from_caller) out.past_key_values = cache;
  return out;
}

}  // namespace dots1
