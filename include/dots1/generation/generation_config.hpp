// dots1/generation/generation_config.hpp — the options of generate(), with HF transformers' (5.24)
// meaning and defaults, loadable from a checkpoint's generation_config.json.
//
// As in HF 5.x, every option is "unset" until someone sets it; unset options take HF's global defaults
// (max_length 20 new tokens capped at max_position_embeddings, do_sample false, temperature 1, top_k 50,
// top_p 1, repetition_penalty 1). Priority: the caller's options > the checkpoint's generation_config.json
// > those defaults (merge with overridden_by). resolve() applies the defaults for one prompt length and
// checks every value; bad options raise GenerationError.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dots1/config.hpp"
#include "dots1/error.hpp"
#include "dots1/base/json_input.hpp"
#include "dots1/base/limits.hpp"

namespace dots1 {

/// What generate() does when a sequence grows past the model's max_position_embeddings.
enum class ContextLimit {
  warn,  // HF: go on (RoPE has no hard limit; dynamic RoPE scaling is made for it), once a warning in
         // GenerationOutput::warnings with HF's text
  stop,  // the row finishes with FinishReason::context when its next position would be max_position_embeddings;
         // a prompt that already fills the context is an InputError
};

struct GenerationConfig {
  // ---- length ----
  std::optional<int64_t> max_length;      // total length, prompt included; unset = prompt + 20 (capped)
  std::optional<int64_t> max_new_tokens;  // wins over max_length when both are set
  std::optional<int64_t> min_length;      // total length before which eos is masked; unset = 0
  std::optional<int64_t> min_new_tokens;  // wins over min_length when both are set
  // ---- strategy and logits processors ----
  std::optional<bool> do_sample;              // unset = greedy
  std::optional<double> temperature;          // unset = 1 (sampling only)
  std::optional<int64_t> top_k;               // unset = 50, 0 = off (sampling only)
  std::optional<double> top_p;                // unset = 1 = off (sampling only)
  std::optional<double> min_p;                // unset = off (sampling only)
  std::optional<double> repetition_penalty;   // unset = 1 = off (greedy and sampling)
  // ---- special tokens ----
  std::vector<int64_t> eos_token_id;      // one id or several; empty = unset (no eos stop)
  std::optional<int64_t> pad_token_id;    // next token of finished rows; unset = eos_token_id[0]
  // ---- stopping and output shape ----
  std::vector<std::string> stop_strings;          // HF StopStringCriteria; needs GenerationInput::token_strings
  std::optional<int64_t> num_return_sequences;    // unset = 1; > 1 only when sampling (HF's rule)
  // ---- what the output holds besides the sequences (HF's output_* flags; see GenerationOutput) ----
  std::optional<bool> output_scores;              // processed scores per step, [batch, vocab] each
  std::optional<bool> output_logits;              // raw logits per step, [batch, vocab] each
  std::optional<bool> return_dict_in_generate;    // accepted, no effect: GenerationOutput is always HF's dict form
  // not HF fields: per-token log-probabilities as OpenAI's / llama.cpp's logprobs, without keeping [steps, vocab]
  std::optional<bool> output_logprobs;            // the chosen token's logprob per generated token
  std::optional<int64_t> top_logprobs;            // and the n most probable tokens of each step (implies logprobs)
  std::optional<bool> logprobs_from_logits;       // true: of the raw logits; unset/false: of the processed scores
  // ---- past max_position_embeddings (not an HF field) ----
  std::optional<ContextLimit> context_limit;      // unset = warn (HF)
  // ---- reproducibility (not an HF field: torch.manual_seed's role) ----
  std::optional<uint64_t> seed;           // unset = a random seed

  /// This config with every option that `user` sets replaced by the user's value.
  GenerationConfig overridden_by(const GenerationConfig& user) const {
    GenerationConfig c = *this;
    auto take = [](auto& mine, const auto& theirs) {
      if (theirs) mine = theirs;
    };
    take(c.max_length, user.max_length);
    take(c.max_new_tokens, user.max_new_tokens);
    take(c.min_length, user.min_length);
    take(c.min_new_tokens, user.min_new_tokens);
    take(c.do_sample, user.do_sample);
    take(c.temperature, user.temperature);
    take(c.top_k, user.top_k);
    take(c.top_p, user.top_p);
    take(c.min_p, user.min_p);
    take(c.repetition_penalty, user.repetition_penalty);
    if (!user.eos_token_id.empty()) c.eos_token_id = user.eos_token_id;
    take(c.pad_token_id, user.pad_token_id);
    if (!user.stop_strings.empty()) c.stop_strings = user.stop_strings;
    take(c.num_return_sequences, user.num_return_sequences);
    take(c.output_scores, user.output_scores);
    take(c.output_logits, user.output_logits);
    take(c.return_dict_in_generate, user.return_dict_in_generate);
    take(c.output_logprobs, user.output_logprobs);
    take(c.top_logprobs, user.top_logprobs);
    take(c.logprobs_from_logits, user.logprobs_from_logits);
    take(c.context_limit, user.context_limit);
    take(c.seed, user.seed);
    return c;
  }

  /// Reads a generation_config.json object. Options this library does not implement (beam search,
  /// typical_p, no_repeat_ngram_size, ...) are refused when set to anything but their no-op value, so a
  /// checkpoint is never silently generated with different rules than HF would use.
  static GenerationConfig from_json(const nlohmann::json& j, const std::string& where = "generation config");
  static GenerationConfig load(const std::filesystem::path& file);
  /// HF's GenerationConfig.from_model_config: the special token ids of config.json.
  static GenerationConfig from_model_config(const Dots1Config& c) {
    GenerationConfig g;
    g.eos_token_id = c.eos_token_id;
    g.pad_token_id = c.pad_token_id;
    return g;
  }
  /// What HF's from_pretrained gives a model: generation_config.json when the folder has one, otherwise
  /// the token ids of the model config.
  static GenerationConfig for_checkpoint(const std::filesystem::path& dir, const Dots1Config& c) {
    const auto file = dir / "generation_config.json";
    return std::filesystem::exists(file) ? load(file) : from_model_config(c);
  }
};

/// Every option decided for one generate() call (defaults applied, lengths made absolute).
struct ResolvedGenerationConfig {
  int64_t prompt_length = 0;
  int64_t max_length = 0;  // total length at which every row stops
  int64_t min_length = 0;  // total length before which eos is masked (min_new_tokens folded in, as HF)
  bool do_sample = false;
  double temperature = 1.0;
  int64_t top_k = 50;
  double top_p = 1.0;
  std::optional<double> min_p;
  double repetition_penalty = 1.0;
  std::vector<int64_t> eos;           // empty: rows never finish early
  std::optional<int64_t> pad;         // pad_token_id, or eos[0]
  std::vector<std::string> stop_strings;
  int64_t num_return_sequences = 1;
  bool output_scores = false, output_logits = false;
  bool output_logprobs = false;       // also true when top_logprobs > 0
  int64_t top_logprobs = 0;
  bool logprobs_from_logits = false;
  ContextLimit context_limit = ContextLimit::warn;
  std::optional<uint64_t> seed;
};

namespace detail {

[[noreturn]] inline void bad_option(const std::string& name, const std::string& value, const std::string& rule) {
  throw GenerationError("generation option " + name + " = " + value + ": " + rule);
}
inline std::string show_number(double v) {
  std::string s = nlohmann::json(v).dump();
  return s == "null" ? std::to_string(v) : s;  // json prints NaN/inf as null
}

}  // namespace detail

/// Applies HF's defaults and length rules (GenerationMixin._prepare_generated_length and
/// _validate_generated_length) for a prompt of `prompt_length` tokens (padding included), and checks every
/// option. `vocab_size` bounds the special token ids.
inline ResolvedGenerationConfig resolve(const GenerationConfig& g, int64_t prompt_length, int64_t max_position_embeddings,
                                        int64_t vocab_size) {
  using detail::bad_option;
  using detail::show_number;
  ResolvedGenerationConfig r;
  r.prompt_length = prompt_length;
  if (g.max_new_tokens && *g.max_new_tokens <= 0)
    bad_option("max_new_tokens", std::to_string(*g.max_new_tokens), "must be greater than 0");
  if (g.min_length && *g.min_length < 0) bad_option("min_length", std::to_string(*g.min_length), "must be >= 0");
  if (g.min_new_tokens && *g.min_new_tokens < 0)
    bad_option("min_new_tokens", std::to_string(*g.min_new_tokens), "must be >= 0");
  if (g.max_new_tokens) r.max_length = prompt_length + *g.max_new_tokens;
  else if (g.max_length) r.max_length = *g.max_length;
  else r.max_length = std::min(prompt_length + 20, max_position_embeddings);  // HF: "by default generate 20 new tokens"
  if (prompt_length >= r.max_length)
    throw GenerationError("the prompt has " + std::to_string(prompt_length) + " tokens but max_length is " + std::to_string(r.max_length) +
                          (g.max_length ? "" : " (the default: prompt + 20, capped at max_position_embeddings = " +
                                                   std::to_string(max_position_embeddings) + ")") +
                          ": nothing to generate; set max_new_tokens");
  r.min_length = g.min_new_tokens ? prompt_length + *g.min_new_tokens : g.min_length.value_or(0);

  r.do_sample = g.do_sample.value_or(false);
  r.temperature = g.temperature.value_or(1.0);
  if (!(r.temperature >= 0 && std::isfinite(r.temperature)))
    bad_option("temperature", show_number(r.temperature), "must be a finite number >= 0");
  if (r.do_sample && !(r.temperature > 0))
    bad_option("temperature", show_number(r.temperature), "must be > 0 when sampling (for greedy decoding turn do_sample off)");
  r.top_k = g.top_k.value_or(50);
  if (r.top_k < 0) bad_option("top_k", std::to_string(r.top_k), "must be >= 0 (0 turns top-k off)");
  r.top_p = g.top_p.value_or(1.0);
  if (!(r.top_p > 0 && r.top_p <= 1)) bad_option("top_p", show_number(r.top_p), "must be in (0, 1] (1 turns top-p off)");
  r.min_p = g.min_p;
  if (r.min_p && !(*r.min_p >= 0 && *r.min_p <= 1)) bad_option("min_p", show_number(*r.min_p), "must be in [0, 1]");
  r.repetition_penalty = g.repetition_penalty.value_or(1.0);
  if (!(r.repetition_penalty > 0 && std::isfinite(r.repetition_penalty)))
    bad_option("repetition_penalty", show_number(r.repetition_penalty), "must be a finite number > 0 (1 turns it off)");

  for (int64_t e : g.eos_token_id)
    if (e < 0 || e >= vocab_size)
      bad_option("eos_token_id", std::to_string(e), "must be a token id in [0, " + std::to_string(vocab_size) + ")");
  r.eos = g.eos_token_id;
  r.pad = g.pad_token_id;
  if (r.pad && (*r.pad < 0 || *r.pad >= vocab_size))
    bad_option("pad_token_id", std::to_string(*r.pad), "must be a token id in [0, " + std::to_string(vocab_size) + ")");
  if (!r.pad && !r.eos.empty()) r.pad = r.eos[0];  // HF's _prepare_special_tokens

  r.stop_strings = g.stop_strings;
  for (size_t i = 0; i < r.stop_strings.size(); ++i)
    if (r.stop_strings[i].empty()) bad_option("stop_strings[" + std::to_string(i) + "]", "\"\"", "must not be empty");
  r.num_return_sequences = g.num_return_sequences.value_or(1);
  if (r.num_return_sequences < 1)
    bad_option("num_return_sequences", std::to_string(r.num_return_sequences), "must be >= 1");
  if (r.num_return_sequences > 1 && !r.do_sample)  // HF's GenerationConfig.validate, word for word
    throw GenerationError("Greedy methods (do_sample != True) without beam search do not support `num_return_sequences` "
                          "different than 1 (got " + std::to_string(r.num_return_sequences) + ").");
  r.output_scores = g.output_scores.value_or(false);
  r.output_logits = g.output_logits.value_or(false);
  r.top_logprobs = g.top_logprobs.value_or(0);
  if (r.top_logprobs < 0 || r.top_logprobs > vocab_size)
    bad_option("top_logprobs", std::to_string(r.top_logprobs), "must be in [0, vocab size " + std::to_string(vocab_size) + "]");
  r.output_logprobs = g.output_logprobs.value_or(false) || r.top_logprobs > 0;
  r.logprobs_from_logits = g.logprobs_from_logits.value_or(false);
  r.context_limit = g.context_limit.value_or(ContextLimit::warn);
  r.seed = g.seed;
  return r;
}

// ------------------------------------------------------------------------------------------------ JSON

inline GenerationConfig GenerationConfig::from_json(const nlohmann::json& j, const std::string& where) {
  using nlohmann::json;
  if (!j.is_object()) throw GenerationError(where + ": expected a JSON object");
  auto fail = [&](const std::string& key, const std::string& rule) -> void {
    throw GenerationError(where + ": '" + key + "' = " + io::shown_json(j.at(key)) + ": " + rule);
  };
  auto present = [&](const char* key) { return j.contains(key) && !j.at(key).is_null(); };
  auto get_int = [&](const char* key, std::optional<int64_t>& out) {
    if (!present(key)) return;
    if (!j.at(key).is_number_integer()) fail(key, "expected an integer");
    const auto v = io::json_int64(j.at(key));  // not get<int64_t>(), which wraps values above 2^63
    if (!v) fail(key, "is absurdly large (does not fit a 64-bit integer)");
    out = *v;
  };
  auto get_number = [&](const char* key, std::optional<double>& out) {
    if (!present(key)) return;
    if (!j.at(key).is_number()) fail(key, "expected a number");
    out = j.at(key).get<double>();
  };
  GenerationConfig g;
  get_int("max_length", g.max_length);
  get_int("max_new_tokens", g.max_new_tokens);
  get_int("min_length", g.min_length);
  get_int("min_new_tokens", g.min_new_tokens);
  if (present("do_sample")) {
    if (!j.at("do_sample").is_boolean()) fail("do_sample", "expected true or false");
    g.do_sample = j.at("do_sample").get<bool>();
  }
  get_number("temperature", g.temperature);
  get_int("top_k", g.top_k);
  get_number("top_p", g.top_p);
  get_number("min_p", g.min_p);
  get_number("repetition_penalty", g.repetition_penalty);
  get_int("pad_token_id", g.pad_token_id);
  get_int("num_return_sequences", g.num_return_sequences);
  auto get_bool = [&](const char* key, std::optional<bool>& out) {
    if (!present(key)) return;
    if (!j.at(key).is_boolean()) fail(key, "expected true or false");
    out = j.at(key).get<bool>();
  };
  get_bool("output_scores", g.output_scores);
  get_bool("output_logits", g.output_logits);
  get_bool("return_dict_in_generate", g.return_dict_in_generate);
  if (present("stop_strings")) {  // HF: a string or a list of strings
    const json& v = j.at("stop_strings");
    if (v.is_string()) {
      g.stop_strings.push_back(v.get<std::string>());
    } else if (v.is_array()) {
      for (const auto& x : v) {
        if (!x.is_string()) fail("stop_strings", "expected a string or a list of strings");
        g.stop_strings.push_back(x.get<std::string>());
      }
    } else {
      fail("stop_strings", "expected a string or a list of strings");
    }
  }
  if (present("eos_token_id")) {
    const json& v = j.at("eos_token_id");
    if (v.is_number_integer()) {
      const auto id = io::json_int64(v);
      if (!id) fail("eos_token_id", "is absurdly large (does not fit a 64-bit integer)");
      g.eos_token_id.push_back(*id);
    } else if (v.is_array()) {
      for (const auto& x : v) {
        const auto id = io::json_int64(x);
        if (!id) fail("eos_token_id", "expected an integer or a list of integers (each within 64 bits)");
        g.eos_token_id.push_back(*id);
      }
    } else {
      fail("eos_token_id", "expected an integer or a list of integers");
    }
  }
  // Options HF implements and this library does not: refused unless they hold their no-op value.
  struct Unsupported {
    const char* key;
    bool (*is_noop)(const json&);
  };
  static const Unsupported unsupported[] = {
      {"num_beams", [](const json& v) { return v.is_number() && v.get<double>() == 1; }},
      {"typical_p", [](const json& v) { return v.is_number() && v.get<double>() >= 1; }},
      {"epsilon_cutoff", [](const json& v) { return v.is_number() && !(v.get<double>() > 0 && v.get<double>() < 1); }},
      {"eta_cutoff", [](const json& v) { return v.is_number() && !(v.get<double>() > 0 && v.get<double>() < 1); }},
      {"no_repeat_ngram_size", [](const json& v) { return v.is_number() && v.get<double>() <= 0; }},
      {"encoder_no_repeat_ngram_size", [](const json& v) { return v.is_number() && v.get<double>() <= 0; }},
      {"encoder_repetition_penalty", [](const json& v) { return v.is_number() && v.get<double>() == 1; }},
      {"guidance_scale", [](const json& v) { return v.is_number() && v.get<double>() == 1; }},
      {"renormalize_logits", [](const json& v) { return v.is_boolean() && !v.get<bool>(); }},
      {"remove_invalid_values", [](const json& v) { return v.is_boolean() && !v.get<bool>(); }},
      {"token_healing", [](const json& v) { return v.is_boolean() && !v.get<bool>(); }},
      {"top_h", nullptr},
      {"penalty_alpha", nullptr},
      {"dola_layers", nullptr},
      {"bad_words_ids", nullptr},
      {"sequence_bias", nullptr},
      {"suppress_tokens", nullptr},
      {"begin_suppress_tokens", nullptr},
      {"forced_bos_token_id", nullptr},
      {"forced_eos_token_id", nullptr},
      {"exponential_decay_length_penalty", nullptr},
      {"max_time", nullptr},
      {"watermarking_config", nullptr},
  };
  for (const auto& u : unsupported)
    if (present(u.key) && !(u.is_noop && u.is_noop(j.at(u.key))))
      fail(u.key, "not supported by dots1's generate (only greedy and sampling with temperature, top-k, top-p, min-p, "
                  "repetition penalty, min length and stop strings)");
  return g;
}

inline GenerationConfig GenerationConfig::load(const std::filesystem::path& file) {
  const nlohmann::json j = io::read_json_file(file, "generation config file", limits::kMaxSmallJsonBytes, [&](const std::string& problem) {
    throw GenerationError(file.string() + ": malformed JSON: " + problem);
  });
  return from_json(j, file.string());
}

}  // namespace dots1
