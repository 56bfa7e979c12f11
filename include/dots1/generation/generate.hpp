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
//   stop strings   HF's StopStringCriteria (generation/stop_strings.hpp) on each row after every step; they
//                  need GenerationInput::token_strings (HF's tokenizer= argument)
//   n sequences    num_return_sequences > 1 (sampling only) repeats each prompt row n times, interleaved as
//                  HF's _expand_inputs_for_generation (repeat_interleave): rows a, a, b, b for n = 2
//   outputs        sequences always; per row the finish reason; on request HF's scores / logits per step
//                  and per-token logprobs with top-n alternatives (GenerationOutput)
//   the context    past max_position_embeddings HF warns once and goes on (ContextLimit::warn, the default:
//                  the warning lands in GenerationOutput::warnings), or each row stops there (ContextLimit::stop)
//
// Random numbers: one uniform per row and step, drawn in row order (all rows, finished ones too, as HF
// samples every row), from SamplingRng(seed): a seed gives our own reproducible draws on every backend and
// platform, not torch's. With num_return_sequences the n copies of a prompt are consecutive rows and so take
// consecutive draws; a seed's n sequences are therefore fixed but depend on the batch they run in.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
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
#include "dots1/generation/stop_strings.hpp"
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
  /// Each token's string (TokenStrings::of(tokenizer)): needed only for GenerationConfig::stop_strings, as
  /// HF's generate needs tokenizer= for them. Shared, since it is built once per tokenizer.
  std::shared_ptr<const TokenStrings> token_strings;

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

/// Why a row stopped growing.
enum class FinishReason {
  none,         // not finished (never in a returned GenerationOutput)
  eos,          // its last token is an eos id
  stop_string,  // its text ends with a stop string (HF's StopStringCriteria)
  length,       // max_length / max_new_tokens
  callback,     // the streaming callback said StreamControl::stop_row or stop_all
  context,      // ContextLimit::stop: the sequence filled max_position_embeddings
};
inline const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::none: return "none";
    case FinishReason::eos: return "eos";
    case FinishReason::stop_string: return "stop_string";
    case FinishReason::length: return "length";
    case FinishReason::callback: return "callback";
    case FinishReason::context: return "context";
  }
  return "?";
}

/// One alternative of a step: a token and its log-probability.
struct TokenLogprob {
  int64_t token = 0;
  float logprob = 0;
};
/// A generated token's log-probability and the step's most probable tokens (as OpenAI's and llama.cpp's
/// "logprobs" / "top_logprobs").
struct GeneratedLogprob {
  int64_t token = 0;
  float logprob = 0;               // log_softmax of the step's scores at `token`
  std::vector<TokenLogprob> top;   // the top_logprobs most probable, best first (lower id first among equals);
                                   // tokens a processor filtered (probability 0) are left out
};

struct GenerationOutput {
  int64_t batch = 0, prompt_length = 0;
  int64_t vocab_size = 0;
  /// HF's `sequences`: per row the padded prompt and then one token per step (pad after the row finished;
  /// as in HF a row stopped by a stop string or the callback goes on receiving tokens when no eos is set).
  std::vector<std::vector<int64_t>> sequences;
  /// Per row: the tokens it produced before it finished, the one that finished it included.
  std::vector<int64_t> num_generated;
  /// Per row: why it finished, and for FinishReason::stop_string which of the config's stop strings (else -1).
  std::vector<FinishReason> finish_reasons;
  std::vector<int64_t> stop_string_index;
  /// HF's `scores` (output_scores): per step the processed scores of every row, [batch * vocab] row-major,
  /// float32 (-inf where a processor filtered). `logits` (output_logits): the raw logits, the same layout.
  std::vector<std::vector<float>> scores, logits;
  /// output_logprobs / top_logprobs: per row, one entry per generated token (num_generated of them).
  std::vector<std::vector<GeneratedLogprob>> logprobs;
  /// Things HF would log as warnings (the generation went past max_position_embeddings, ...).
  std::vector<std::string> warnings;
  int64_t steps = 0;                // tokens appended to every row
  int64_t prompt_tokens = 0;        // real (unpadded) prompt tokens over all rows (num_return_sequences copies too)
  double prefill_seconds = 0;       // the prompt's forward and the choice of the first token
  double decode_seconds = 0;        // everything after it: the one-token forwards and their token choices
  int64_t decode_forwards = 0;      // one-token forwards (steps - 1)

  /// Row `b`'s new tokens, the one that finished it included, without what follows.
  std::vector<int64_t> generated(int64_t b) const {
    const auto& s = sequences.at(static_cast<size_t>(b));
    const auto first = s.begin() + prompt_length;
    return {first, first + num_generated.at(static_cast<size_t>(b))};
  }
  /// Step `step`'s processed scores (or raw logits) of row `b`.
  std::span<const float> step_scores(int64_t step, int64_t b, bool raw_logits = false) const {
    const auto& all = raw_logits ? logits : scores;
    if (step < 0 || static_cast<size_t>(step) >= all.size() || b < 0 || b >= batch)
      throw InputError(std::string("GenerationOutput: no ") + (raw_logits ? "logits" : "scores") + " for step " +
                       std::to_string(step) + " row " + std::to_string(b) + " (ask for them with output_" +
                       (raw_logits ? "logits" : "scores") + ")");
    return std::span<const float>(all[static_cast<size_t>(step)]).subspan(static_cast<size_t>(b * vocab_size), static_cast<size_t>(vocab_size));
  }
};

/// HF's compute_transition_scores(sequences, scores, normalize_logits) for greedy and sampled output: per row
/// and step the score of the token in `sequences` at that step (the pads of finished rows included, as
/// HF), after log_softmax over the vocabulary when `normalize_logits`. `of_logits`: use out.logits instead of
/// out.scores (HF: passing outputs.logits). Returns [batch][steps].
inline std::vector<std::vector<float>> compute_transition_scores(const GenerationOutput& out, bool normalize_logits, bool of_logits = false);

/// What a streaming callback tells generate().
enum class StreamControl {
  go_on,     // keep generating
  stop_row,  // this row is finished (FinishReason::callback)
  stop_all,  // every row still running is finished (FinishReason::callback)
};

/// Receives each new token of a row still running (the one that ends it included), row by row, as soon as
/// its step is decided. Any callable of (int64_t row, int64_t token) returning void (never stops) or
/// StreamControl.
class TokenCallback {
 public:
  TokenCallback() = default;
  template <class F>
    requires(!std::same_as<std::remove_cvref_t<F>, TokenCallback> && std::invocable<F&, int64_t, int64_t> &&
             (std::is_void_v<std::invoke_result_t<F&, int64_t, int64_t>> ||
              std::same_as<std::invoke_result_t<F&, int64_t, int64_t>, StreamControl>))
  TokenCallback(F f) {  // NOLINT(google-explicit-constructor): lambdas convert, as to std::function
    if constexpr (requires { static_cast<bool>(f); })
      if (!static_cast<bool>(f)) return;  // an empty std::function: no callback
    if constexpr (std::is_void_v<std::invoke_result_t<F&, int64_t, int64_t>>)
      f_ = [g = std::move(f)](int64_t row, int64_t token) mutable {
        g(row, token);
        return StreamControl::go_on;
      };
    else
      f_ = std::move(f);
  }
  StreamControl operator()(int64_t row, int64_t token) const { return f_ ? f_(row, token) : StreamControl::go_on; }
  explicit operator bool() const { return static_cast<bool>(f_); }

 private:
  std::function<StreamControl(int64_t, int64_t)> f_;
};

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

  /// Asks choose() to keep, on the host, every row's processed scores and/or raw logits (float32, [rows,
  /// vocab]) for processed() / raw(). On the host path that is a copy; where the backend chooses tokens (the
  /// Thrust backend) it is a download of vocab x 4 bytes a row and step for each, the cost of asking for
  /// scores, logits or logprobs there.
  void keep_on_host(bool processed, bool raw) {
    keep_processed_ = processed;
    keep_raw_ = raw;
  }

  /// Each row's next token from the last forward. `sequences[r]`: row r so far (its padded prompt and what
  /// it generated); `ignore[r]`: its leading pads (which the repetition penalty skips).
  std::vector<int64_t> choose(std::span<const std::vector<int64_t>> sequences, std::span<const int64_t> ignore, SamplingRng& rng) {
    const int64_t V = model_.config().vocab_size;
    const auto RV = static_cast<size_t>(rows_ * V);
    if constexpr (on_backend) {
      std::vector<int64_t> chosen = selector_->select(*backend_logits_, rows_, sequences, ignore, rng);
      if (keep_raw_) {
        const auto all = Model::backend::download(*backend_logits_);
        raw_.resize(RV);
        for (size_t i = 0; i < RV; ++i) raw_[i] = static_cast<float>(all[i]);
      }
      if (keep_processed_) {
        processed_.resize(RV);
        for (int64_t b = 0; b < rows_; ++b) {
          const std::vector<float> row = selector_->scores(b);
          std::copy(row.begin(), row.end(), processed_.begin() + b * V);
        }
      }
      return chosen;
    } else {
      std::vector<int64_t> chosen(static_cast<size_t>(rows_));
      scores_.resize(static_cast<size_t>(V));
      if (keep_raw_) raw_.resize(RV);
      if (keep_processed_) processed_.resize(RV);
      for (int64_t b = 0; b < rows_; ++b) {
        const auto ub = static_cast<size_t>(b);
        for (int64_t v = 0; v < V; ++v) scores_[static_cast<size_t>(v)] = static_cast<float>(logits_[static_cast<size_t>(b * V + v)]);
        if (keep_raw_) std::copy(scores_.begin(), scores_.end(), raw_.begin() + b * V);
        process_(scores_, sequences[ub], ignore[ub]);
        if (keep_processed_) std::copy(scores_.begin(), scores_.end(), processed_.begin() + b * V);
        chosen[ub] = rc_.do_sample ? sample_token(scores_, rng) : argmax_token(scores_);
      }
      return chosen;
    }
  }

  /// Row b's processed scores / raw logits of the last choose() (after keep_on_host asked for them).
  std::span<const float> processed(int64_t b) const { return row_of(processed_, b); }
  std::span<const float> raw(int64_t b) const { return row_of(raw_, b); }

 private:
  static constexpr bool on_backend = SelectsTokensOnBackend<Model>;
  using Selector = typename BackendSelection<Model>::Selector;
  using HostLogits = std::remove_cvref_t<decltype(std::declval<Model&>().forward(std::declval<const ForwardInput&>(),
                                                                                   std::shared_ptr<typename Model::Cache>{}).logits.values)>;

  std::span<const float> row_of(const std::vector<float>& all, int64_t b) const {
    const auto V = static_cast<size_t>(model_.config().vocab_size);
    return std::span<const float>(all).subspan(static_cast<size_t>(b) * V, V);
  }

  Model& model_;
  ResolvedGenerationConfig rc_;
  LogitsPipeline process_;
  std::tuple<I*...> instrument_;
  std::unique_ptr<Selector> selector_;
  const typename BackendSelection<Model>::Logits* backend_logits_ = nullptr;
  HostLogits logits_;
  std::vector<float> scores_;
  bool keep_processed_ = false, keep_raw_ = false;
  std::vector<float> processed_, raw_;
  int64_t rows_ = 0;
};

/// log_softmax(scores)[token] and the `top` most probable tokens of one row (float32 results of double sums,
/// as torch's log_softmax within rounding). Filtered (-inf) tokens are never among the top.
inline GeneratedLogprob logprob_of(std::span<const float> scores, int64_t token, int64_t top) {
  float mx = -std::numeric_limits<float>::infinity();
  for (float x : scores)
    if (!std::isnan(x)) mx = std::max(mx, x);
  double sum = 0;
  if (std::isfinite(mx))
    for (float x : scores)
      if (!std::isnan(x) && x != -std::numeric_limits<float>::infinity()) sum += std::exp(static_cast<double>(x) - mx);
  const double log_z = std::isfinite(mx) ? static_cast<double>(mx) + std::log(sum) : 0.0;
  auto lp = [&](int64_t t) {
    const float x = scores[static_cast<size_t>(t)];
    return x == -std::numeric_limits<float>::infinity() ? x : static_cast<float>(static_cast<double>(x) - log_z);
  };
  GeneratedLogprob g;
  g.token = token;
  g.logprob = lp(token);
  if (top > 0) {
    std::vector<int64_t> order;
    order.reserve(scores.size());
    for (size_t i = 0; i < scores.size(); ++i)
      if (!std::isnan(scores[i]) && scores[i] != -std::numeric_limits<float>::infinity()) order.push_back(static_cast<int64_t>(i));
    const auto n = std::min<size_t>(order.size(), static_cast<size_t>(top));
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(), [&](int64_t a, int64_t b) {
      const float x = scores[static_cast<size_t>(a)], y = scores[static_cast<size_t>(b)];
      return x > y || (x == y && a < b);
    });
    for (size_t i = 0; i < n; ++i) g.top.push_back({order[i], lp(order[i])});
  }
  return g;
}

/// HF's num_return_sequences expansion (_expand_inputs_for_generation: repeat_interleave on the batch).
inline GenerationInput repeat_interleave(const GenerationInput& in, int64_t n) {
  if (n == 1) return in;
  GenerationInput out = in;
  out.batch = in.batch * n;
  out.input_ids.clear();
  out.attention_mask.clear();
  for (int64_t b = 0; b < in.batch; ++b)
    for (int64_t k = 0; k < n; ++k) {
      out.input_ids.insert(out.input_ids.end(), in.input_ids.begin() + b * in.seq, in.input_ids.begin() + (b + 1) * in.seq);
      if (!in.attention_mask.empty())
        out.attention_mask.insert(out.attention_mask.end(), in.attention_mask.begin() + b * in.seq,
                                  in.attention_mask.begin() + (b + 1) * in.seq);
    }
  return out;
}

/// HF's MaxLengthCriteria warning (transformers 5.25), issued once per call.
inline std::string context_warning(int64_t max_position_embeddings) {
  return "This is a friendly reminder - the current text generation call has exceeded the model's predefined maximum length (" +
         std::to_string(max_position_embeddings) +
         "). Depending on the model, you may observe exceptions, performance degradation, or nothing at all.";
}

}  // namespace detail

/// `instrument` (none, or one: a dots1::Recorder, Intervention, Chain of them, or your own; see
/// dots1/instrument/instrument.hpp) runs in every forward of the generation: the prompt's, then each step's
/// (a Recorder keeps one recording per forward; an Intervention's edits shape every token chosen).
template <CausalLanguageModel Model, class... I>
  requires(sizeof...(I) <= 1 && (InstrumentPolicy<I> && ...))
GenerationOutput generate(Model& model, const GenerationInput& prompts, const GenerationConfig& options,
                          const TokenCallback& on_token = {}, I&... instrument) {
  using clock = std::chrono::steady_clock;
  const Dots1Config& mc = model.config();
  const int64_t S = prompts.seq, V = mc.vocab_size, context = mc.max_position_embeddings;
  detail::check_generation_input(prompts, V);
  const ResolvedGenerationConfig rc = resolve(options, S, context, V);
  std::optional<StopStringCriteria> stop_strings;
  if (!rc.stop_strings.empty()) {
    if (!prompts.token_strings)  // HF's ValueError, in our terms
      throw GenerationError("generate: stop_strings are set but GenerationInput::token_strings is not: stop strings are "
                            "matched on each token's string, so they need the model's tokenizer (set token_strings = "
                            "std::make_shared<dots1::TokenStrings>(dots1::TokenStrings::of(tokenizer)))");
    stop_strings.emplace(rc.stop_strings, *prompts.token_strings);
  }
  const GenerationInput input = detail::repeat_interleave(prompts, rc.num_return_sequences);
  const int64_t B = input.batch;

  std::vector<int64_t> mask = input.attention_mask.empty() ? detail::infer_attention_mask(input.input_ids, rc) : input.attention_mask;
  const bool padded = std::find(mask.begin(), mask.end(), 0) != mask.end();
  std::vector<int64_t> positions(static_cast<size_t>(B * S)), ignore(static_cast<size_t>(B), 0);
  GenerationOutput out;
  out.batch = B;
  out.prompt_length = S;
  out.vocab_size = V;
  out.sequences.resize(static_cast<size_t>(B));
  out.num_generated.assign(static_cast<size_t>(B), 0);
  out.finish_reasons.assign(static_cast<size_t>(B), FinishReason::none);
  out.stop_string_index.assign(static_cast<size_t>(B), -1);
  if (rc.output_logprobs) out.logprobs.resize(static_cast<size_t>(B));
  std::vector<int64_t> real_length(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    int64_t c = 0, first_real = -1;
    for (int64_t s = 0; s < S; ++s) {
      const auto i = static_cast<size_t>(b * S + s);
      c += mask[i];
      positions[i] = mask[i] ? c - 1 : 0;
      if (mask[i] && first_real < 0) first_real = s;
    }
    if (c == 0) throw InputError("generate: prompt row " + std::to_string(b) + " has no tokens (its attention mask is all 0)");
    if (rc.context_limit == ContextLimit::stop && c >= context)
      throw InputError("generate: prompt row " + std::to_string(b / rc.num_return_sequences) + " has " + std::to_string(c) +
                       " tokens and fills the model's context of " + std::to_string(context) +
                       " (max_position_embeddings): nothing can be generated with context_limit = stop");
    // HF's RepetitionPenaltyLogitsProcessor(prompt_ignore_length = attention_mask.argmax(1)); HF passes it
    // only when the mask was kept, i.e. has a 0 somewhere
    ignore[static_cast<size_t>(b)] = padded ? first_real : 0;
    real_length[static_cast<size_t>(b)] = c;
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
  const bool logprobs_of_raw = rc.output_logprobs && rc.logprobs_from_logits;
  chooser.keep_on_host(rc.output_scores || (rc.output_logprobs && !logprobs_of_raw), rc.output_logits || logprobs_of_raw);
  auto forward_and_choose = [&]() {
    chooser.forward(in, cache);
    chosen = chooser.choose(out.sequences, ignore, rng);
    if (rc.output_scores) {
      out.scores.emplace_back(static_cast<size_t>(B * V));
      for (int64_t b = 0; b < B; ++b) std::ranges::copy(chooser.processed(b), out.scores.back().begin() + b * V);
    }
    if (rc.output_logits) {
      out.logits.emplace_back(static_cast<size_t>(B * V));
      for (int64_t b = 0; b < B; ++b) std::ranges::copy(chooser.raw(b), out.logits.back().begin() + b * V);
    }
  };

  bool warned_context = false;
  const auto t0 = clock::now();
  forward_and_choose();
  const auto t1 = clock::now();
  for (;;) {
    bool stop_all = false;
    for (int64_t b = 0; b < B; ++b) {
      const auto ub = static_cast<size_t>(b);
      int64_t token = chosen[ub];
      if (!rc.eos.empty() && !running[ub]) token = *rc.pad;  // finished rows are padded (only with an eos, as HF)
      next[ub] = token;
      out.sequences[ub].push_back(token);
      if (!running[ub]) continue;
      ++out.num_generated[ub];
      ++real_length[ub];
      if (rc.output_logprobs)
        out.logprobs[ub].push_back(detail::logprob_of(logprobs_of_raw ? chooser.raw(b) : chooser.processed(b), token, rc.top_logprobs));
      if (on_token) {
        const StreamControl c = on_token(b, token);
        if (c != StreamControl::go_on) out.finish_reasons[ub] = FinishReason::callback;
        stop_all = stop_all || c == StreamControl::stop_all;
      }
    }
    ++out.steps;
    const int64_t length = S + out.steps;
    const bool at_max = length >= rc.max_length;
    // HF's MaxLengthCriteria: the (padded) length passed max_position_embeddings and the generation goes on
    if (rc.context_limit == ContextLimit::warn && !at_max && length > context && !warned_context) {
      out.warnings.push_back(detail::context_warning(context));
      warned_context = true;
    }
    bool any_running = false;
    for (int64_t b = 0; b < B; ++b) {
      const auto ub = static_cast<size_t>(b);
      if (!running[ub]) continue;
      // one reason per row, the most specific first
      FinishReason why = FinishReason::none;
      if (std::find(rc.eos.begin(), rc.eos.end(), next[ub]) != rc.eos.end()) {
        why = FinishReason::eos;
      } else if (stop_strings) {
        if (const auto hit = stop_strings->match(out.sequences[ub])) {
          why = FinishReason::stop_string;
          out.stop_string_index[ub] = static_cast<int64_t>(*hit);
        }
      }
      if (why == FinishReason::none && (out.finish_reasons[ub] == FinishReason::callback || stop_all)) why = FinishReason::callback;
      if (why == FinishReason::none && at_max) why = FinishReason::length;
      if (why == FinishReason::none && rc.context_limit == ContextLimit::stop && real_length[ub] >= context) why = FinishReason::context;
      out.finish_reasons[ub] = why;
      running[ub] = why == FinishReason::none;
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

inline std::vector<std::vector<float>> compute_transition_scores(const GenerationOutput& out, bool normalize_logits, bool of_logits) {
  const auto& all = of_logits ? out.logits : out.scores;
  if (static_cast<int64_t>(all.size()) != out.steps)
    throw InputError(std::string("compute_transition_scores: the output holds ") + std::to_string(all.size()) + " steps of " +
                     (of_logits ? "logits" : "scores") + " for " + std::to_string(out.steps) + " steps (generate with output_" +
                     (of_logits ? "logits" : "scores") + ")");
  std::vector<std::vector<float>> t(static_cast<size_t>(out.batch), std::vector<float>(static_cast<size_t>(out.steps)));
  for (int64_t step = 0; step < out.steps; ++step)
    for (int64_t b = 0; b < out.batch; ++b) {
      const auto row = out.step_scores(step, b, of_logits);
      const int64_t token = out.sequences[static_cast<size_t>(b)][static_cast<size_t>(out.prompt_length + step)];
      t[static_cast<size_t>(b)][static_cast<size_t>(step)] =
          normalize_logits ? detail::logprob_of(row, token, 0).logprob : row[static_cast<size_t>(token)];
    }
  return t;
}

}  // namespace dots1
