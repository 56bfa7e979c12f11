// dots1/generation/generate.hpp — HF's GenerationMixin.generate for decoder-only Dots1 (greedy search and
// multinomial sampling), on any backend: templated on the model type.
//
//   auto model = dots1::CpuModel::from_pretrained(dir);
//   dots1::GenerationConfig opts = dots1::GenerationConfig::for_checkpoint(dir, model.config());
//   opts.max_new_tokens = 32;
//   auto out = dots1::generate(model, dots1::GenerationInput::from_ids({1, 2, 3}), opts,
//                              [](int64_t row, int64_t token) { /* stream */ });
//
// The loop is HF's _sample: one prefill over the (left-padded) prompts, then one token per step through
// the KV cache, each forward computing only the last position's logits (logits_to_keep = 1).
//   position ids   cumsum(attention_mask) - 1, pads at 0 (_prepare_position_ids_for_generation); each
//                  step appends last + 1 (_update_model_kwargs_for_generation)
//   attention mask the caller's, or inferred as ids != pad_token_id when pad is set, occurs in the prompt
//                  and is not an eos id (_prepare_attention_mask_for_generation); all ones -> not passed;
//                  otherwise extended by a 1 per step
//   stop           a row finishes when its last token is an eos id, and from then on receives pad_token_id;
//                  every row stops at max_length; the loop ends when every row has finished
//   token choice   HF's processors, then argmax or a draw: on the host (LogitsPipeline, sample_token), or
//                  where the logits are when the model's backend has a TokenSelector (the Thrust backend:
//                  on the device, backend/thrust/token_selection.hpp); the same rules and random stream
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "dots1/config.hpp"
#include "dots1/error.hpp"
#include "dots1/generation/generation_config.hpp"
#include "dots1/generation/logits_process.hpp"
#include "dots1/generation/sampling.hpp"
#include "dots1/instrument/instrument.hpp"
#include "dots1/base/forward_io.hpp"

namespace dots1 {

/// What generate() needs of a model: Dots1ForCausalLM on any backend, with any stack.
template <class M>
concept CausalLanguageModel = requires(M& m, const M& cm, const ForwardInput& in, int64_t batch) {
  typename M::Cache;
  { cm.config() } -> std::convertible_to<const Dots1Config&>;
  { cm.make_cache(batch) } -> std::convertible_to<typename M::Cache>;
  { m.forward(in, std::shared_ptr<typename M::Cache>{}).logits.values };
};

/// Models whose backend chooses tokens where the logits are (the Thrust backend: on the device): each step
/// then copies B token ids to the host instead of [B, vocab] logits. Same selection rules and random
/// stream as the host path (see backend/thrust/token_selection.hpp).
template <class M>
concept SelectsTokensOnBackend = CausalLanguageModel<M> && requires(const M& cm, const ForwardInput& in, std::shared_ptr<typename M::Cache> cache,
                                                                    typename M::backend::TokenSelector& selector, SamplingRng& rng,
                                                                    std::span<const std::vector<int64_t>> sequences, std::span<const int64_t> ignore) {
  { selector.select(*cm.forward(in, cache).backend_logits, in.batch, sequences, ignore, rng) } -> std::same_as<std::vector<int64_t>>;
};

/// The prompts: one sequence, or a batch left-padded to a common length with its attention mask.
struct GenerationInput {
  int64_t batch = 0, seq = 0;
  std::vector<int64_t> input_ids;       // [batch, seq]
  std::vector<int64_t> attention_mask;  // [batch, seq] of 0/1, or empty (inferred as HF does)

  static GenerationInput from_ids(std::vector<int64_t> ids) {
    GenerationInput in;
    in.batch = 1;
    in.seq = static_cast<int64_t>(ids.size());
    in.input_ids = std::move(ids);
    return in;
  }
  /// Prompts of different lengths, padded on the left with `pad_id` (mask 0 there).
  static GenerationInput left_padded(const std::vector<std::vector<int64_t>>& prompts, int64_t pad_id) {
    GenerationInput in;
    in.batch = static_cast<int64_t>(prompts.size());
    for (const auto& p : prompts) in.seq = std::max(in.seq, static_cast<int64_t>(p.size()));
    for (const auto& p : prompts) {
      const auto pads = static_cast<size_t>(in.seq) - p.size();
      in.input_ids.insert(in.input_ids.end(), pads, pad_id);
      in.input_ids.insert(in.input_ids.end(), p.begin(), p.end());
      in.attention_mask.insert(in.attention_mask.end(), pads, 0);
      in.attention_mask.insert(in.attention_mask.end(), p.size(), 1);
    }
    return in;
  }
};

struct GenerationOutput {
  int64_t batch = 0, prompt_length = 0;
  /// HF's `sequences`: per row the padded prompt and then one token per step (pad after the row finished).
  std::vector<std::vector<int64_t>> sequences;
  /// Per row: the tokens it produced before it finished, its eos included.
  std::vector<int64_t> num_generated;
  int64_t steps = 0;                // tokens appended to every row
  int64_t prompt_tokens = 0;        // real (unpadded) prompt tokens over all rows
  double prefill_seconds = 0;       // the prompt's forward and the choice of the first token
  double decode_seconds = 0;        // everything after it: the one-token forwards and their token choices
  int64_t decode_forwards = 0;      // one-token forwards (steps - 1)

  /// Row `b`'s new tokens, its eos included, without the pads that follow.
  std::vector<int64_t> generated(int64_t b) const {
    const auto& s = sequences.at(static_cast<size_t>(b));
    const auto first = s.begin() + prompt_length;
    return {first, first + num_generated.at(static_cast<size_t>(b))};
  }
};

/// Receives each new token of a row still running (the eos that ends it included), row by row, as soon
/// as its step is decided.
using TokenCallback = std::function<void(int64_t row, int64_t token)>;

namespace detail {

inline void check_generation_input(const GenerationInput& in, int64_t vocab_size) {
  check_batch_shape(in.batch, in.seq, "generate");
  check_input_ids(in.input_ids, in.batch, in.seq, vocab_size, "generate");
  if (!in.attention_mask.empty()) check_attention_mask(in.attention_mask, in.batch, in.seq, "generate", "seq");
}

/// HF's _prepare_attention_mask_for_generation: ids != pad only when pad is set, occurs in the prompt and
/// is not an eos id; all ones otherwise.
inline std::vector<int64_t> infer_attention_mask(const std::vector<int64_t>& ids, const ResolvedGenerationConfig& c) {
  std::vector<int64_t> mask(ids.size(), 1);
  if (!c.pad) return mask;
  const int64_t pad = *c.pad;
  const bool occurs = std::find(ids.begin(), ids.end(), pad) != ids.end();
  const bool is_eos = std::find(c.eos.begin(), c.eos.end(), pad) != c.eos.end();
  if (occurs && !is_eos)
    for (size_t i = 0; i < ids.size(); ++i) mask[i] = ids[i] != pad;
  return mask;
}

/// What a SelectsTokensOnBackend model's chooser holds: its backend's selector and a pointer to the
/// logits in backend memory.
template <class Model, bool = SelectsTokensOnBackend<Model>>
struct BackendSelection {
  struct Selector {};
  using Logits = void;
};
template <class Model>
struct BackendSelection<Model, true> {
  using Selector = typename Model::backend::TokenSelector;
  using Logits = typename Model::backend::Vector;
};

/// One call's way from a forward to each row's next token: HF's processors and then greedy or a draw,
/// on the host, or where the logits are for SelectsTokensOnBackend models. Used by generate() and
/// ChatSession. `in` must ask for the last position's logits only (logits_to_keep = 1). `I`: no
/// instrument, or the one every forward runs under.
template <class Model, class... I>
class NextTokenChooser {
 public:
  NextTokenChooser(Model& model, const ResolvedGenerationConfig& rc, I*... instrument)
      : model_(model), rc_(rc), process_(rc), instrument_(instrument...) {
    if constexpr (on_backend) selector_ = std::make_unique<Selector>(rc, model.config().vocab_size);
  }

  /// The forward of `in` through `cache`.
  void forward(const ForwardInput& in, const std::shared_ptr<typename Model::Cache>& cache) {
    rows_ = in.batch;
    std::apply(
        [&](auto*... instrument) {
          if constexpr (on_backend) {
            ForwardInput step = in;  // the logits stay where the selector reads them
            step.logits_on_backend = true;
            backend_logits_ = model_.forward(step, cache, *instrument...).backend_logits;
          } else
            logits_ = model_.forward(in, cache, *instrument...).logits.values;  // [rows, 1, V]
        },
        instrument_);
  }

  /// Each row's next token from the last forward. `sequences[r]`: row r so far (its padded prompt and what
  /// it generated); `ignore[r]`: its leading pads (which the repetition penalty skips).
  std::vector<int64_t> choose(std::span<const std::vector<int64_t>> sequences, std::span<const int64_t> ignore, SamplingRng& rng) {
    if constexpr (on_backend) {
      return selector_->select(*backend_logits_, rows_, sequences, ignore, rng);
    } else {
      const int64_t V = model_.config().vocab_size;
      std::vector<int64_t> chosen(static_cast<size_t>(rows_));
      scores_.resize(static_cast<size_t>(V));
      for (int64_t b = 0; b < rows_; ++b) {
        const auto ub = static_cast<size_t>(b);
        for (int64_t v = 0; v < V; ++v) scores_[static_cast<size_t>(v)] = static_cast<float>(logits_[static_cast<size_t>(b * V + v)]);
        process_(scores_, sequences[ub], ignore[ub]);
        chosen[ub] = rc_.do_sample ? sample_token(scores_, rng) : argmax_token(scores_);
      }
      return chosen;
    }
  }

 private:
  static constexpr bool on_backend = SelectsTokensOnBackend<Model>;
  using Selector = typename BackendSelection<Model>::Selector;
  using HostLogits = std::remove_cvref_t<decltype(std::declval<Model&>().forward(std::declval<const ForwardInput&>(),
                                                                                   std::shared_ptr<typename Model::Cache>{}).logits.values)>;

  Model& model_;
  ResolvedGenerationConfig rc_;
  LogitsPipeline process_;
  std::tuple<I*...> instrument_;
  std::unique_ptr<Selector> selector_;
  const typename BackendSelection<Model>::Logits* backend_logits_ = nullptr;
  HostLogits logits_;
  std::vector<float> scores_;
  int64_t rows_ = 0;
};

}  // namespace detail

/// `instrument` (none, or one: a dots1::Recorder, Intervention, Chain of them, or your own; see
/// dots1/instrument/instrument.hpp) runs in every forward of the generation: the prompt's, then each step's
/// (a Recorder keeps one recording per forward; an Intervention's edits shape every token chosen).
template <CausalLanguageModel Model, class... I>
  requires(sizeof...(I) <= 1 && (InstrumentPolicy<I> && ...))
GenerationOutput generate(Model& model, const GenerationInput& input, const GenerationConfig& options,
                          const TokenCallback& on_token = {}, I&... instrument) {
  using clock = std::chrono::steady_clock;
  const Dots1Config& mc = model.config();
  const int64_t B = input.batch, S = input.seq, V = mc.vocab_size;
  detail::check_generation_input(input, V);
  const ResolvedGenerationConfig rc = resolve(options, S, mc.max_position_embeddings, V);

  std::vector<int64_t> mask = input.attention_mask.empty() ? detail::infer_attention_mask(input.input_ids, rc) : input.attention_mask;
  const bool padded = std::find(mask.begin(), mask.end(), 0) != mask.end();
  std::vector<int64_t> positions(static_cast<size_t>(B * S)), ignore(static_cast<size_t>(B), 0);
  GenerationOutput out;
  out.batch = B;
  out.prompt_length = S;
  out.sequences.resize(static_cast<size_t>(B));
  out.num_generated.assign(static_cast<size_t>(B), 0);
  for (int64_t b = 0; b < B; ++b) {
    int64_t c = 0, first_real = -1;
    for (int64_t s = 0; s < S; ++s) {
      const auto i = static_cast<size_t>(b * S + s);
      c += mask[i];
      positions[i] = mask[i] ? c - 1 : 0;
      if (mask[i] && first_real < 0) first_real = s;
    }
    if (c == 0) throw InputError("generate: prompt row " + std::to_string(b) + " has no tokens (its attention mask is all 0)");
    // HF's RepetitionPenaltyLogitsProcessor(prompt_ignore_length = attention_mask.argmax(1)); HF passes it
    // only when the mask was kept, i.e. has a 0 somewhere
    ignore[static_cast<size_t>(b)] = padded ? first_real : 0;
    out.prompt_tokens += c;
    out.sequences[static_cast<size_t>(b)].assign(input.input_ids.begin() + b * S, input.input_ids.begin() + (b + 1) * S);
  }

  auto cache = std::make_shared<typename Model::Cache>(model.make_cache(B));
  ForwardInput in;
  in.batch = B;
  in.seq = S;
  in.input_ids = input.input_ids;
  if (padded) in.attention_mask = mask;
  in.position_ids = positions;
  in.logits_to_keep = LogitsToKeep(int64_t{1});
  in.use_cache = true;

  SamplingRng rng(rc.seed ? *rc.seed : std::random_device{}());
  std::vector<char> running(static_cast<size_t>(B), 1);
  std::vector<int64_t> last_position(static_cast<size_t>(B)), next(static_cast<size_t>(B)), chosen(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) last_position[static_cast<size_t>(b)] = positions[static_cast<size_t>(b * S + S - 1)];

  detail::NextTokenChooser<Model, I...> chooser(model, rc, &instrument...);
  auto forward_and_choose = [&]() {
    chooser.forward(in, cache);
    chosen = chooser.choose(out.sequences, ignore, rng);
  };

  const auto t0 = clock::now();
  forward_and_choose();
  const auto t1 = clock::now();
  for (;;) {
    for (int64_t b = 0; b < B; ++b) {
      const auto ub = static_cast<size_t>(b);
      int64_t token = chosen[ub];
      if (!rc.eos.empty() && !running[ub]) token = *rc.pad;  // finished rows are padded (only with an eos, as HF)
      next[ub] = token;
      out.sequences[ub].push_back(token);
      if (running[ub]) {
        ++out.num_generated[ub];
        if (on_token) on_token(b, token);
      }
    }
    ++out.steps;
    const bool at_max = S + out.steps >= rc.max_length;
    bool any_running = false;
    for (int64_t b = 0; b < B; ++b) {
      const auto ub = static_cast<size_t>(b);
      if (at_max || std::find(rc.eos.begin(), rc.eos.end(), next[ub]) != rc.eos.end()) running[ub] = 0;
      any_running = any_running || running[ub];
    }
    if (!any_running) break;

    // one token per row through the cache
    in.seq = 1;
    in.input_ids = next;
    if (padded) {
      std::vector<int64_t> grown;
      grown.reserve(static_cast<size_t>(B) * (static_cast<size_t>(S + out.steps)));
      const int64_t len = S + out.steps - 1;
      for (int64_t b = 0; b < B; ++b) {
        grown.insert(grown.end(), mask.begin() + b * len, mask.begin() + (b + 1) * len);
        grown.push_back(1);
      }
      mask = std::move(grown);
      in.attention_mask = mask;
    }
    in.position_ids.resize(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) in.position_ids[static_cast<size_t>(b)] = ++last_position[static_cast<size_t>(b)];
    forward_and_choose();
    ++out.decode_forwards;
  }
  out.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  out.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return out;
}

}  // namespace dots1
