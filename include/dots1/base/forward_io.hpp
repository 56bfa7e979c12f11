// dots1/base/forward_io.hpp — the inputs and outputs of Dots1Model / Dots1ForCausalLM forward, with the
// same options as HF's forward (spec 2.1, 2.3-2.5). Host-side; the backend uploads what it needs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <memory>
#include <optional>
#include <variant>
#include <vector>

#include "dots1/error.hpp"

namespace dots1 {

/// HF's logits_to_keep: an int k keeps the last k positions (0 = all), or a list of positions.
struct LogitsToKeep {
  std::variant<int64_t, std::vector<int64_t>> value = int64_t{0};
  LogitsToKeep() = default;
  LogitsToKeep(int64_t last) : value(last) {}
  LogitsToKeep(std::vector<int64_t> positions) : value(std::move(positions)) {}
  bool keeps_all() const { return std::holds_alternative<int64_t>(value) && std::get<int64_t>(value) == 0; }
};

/// Everything a forward call takes. Tensors are flat row-major with their shapes given by batch/seq.
struct ForwardInput {
  int64_t batch = 0, seq = 0;
  std::vector<int64_t> input_ids;       // [batch, seq], or empty when inputs_embeds is given
  std::vector<float> inputs_embeds;     // [batch, seq, hidden], or empty
  std::vector<int64_t> attention_mask;  // [batch, past + seq] of 0/1, or empty (all attend)
  std::vector<int64_t> position_ids;    // [batch, seq] or [1, seq], or empty (arange(seq) + past)
  std::vector<int64_t> cache_position;  // [seq] cache slots of the new tokens (HF v4), or empty (= arange(past, past+seq))
  std::vector<int64_t> labels;          // [batch, seq] with -100 = ignore, or empty
  LogitsToKeep logits_to_keep;
  bool output_hidden_states = false;
  bool output_attentions = false;
  bool use_cache = true;  // HF: with no cache passed, a fresh DynamicCache is made (and returned)
  /// generate()'s step: the last position's logits (logits_to_keep = 1) stay in backend memory as [batch, V]
  /// (the output's backend_logits, valid until the cache's next forward) and nothing is copied to the host.
  bool logits_on_backend = false;

  /// A convenience for one or more equal-length rows of token ids.
  static ForwardInput from_ids(std::vector<std::vector<int64_t>> rows) {
    ForwardInput in;
    in.batch = static_cast<int64_t>(rows.size());
    in.seq = rows.empty() ? 0 : static_cast<int64_t>(rows[0].size());
    for (auto& r : rows) in.input_ids.insert(in.input_ids.end(), r.begin(), r.end());
    return in;
  }
};

/// A host tensor result: values and shape.
template <class T>
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<T> values;
};

template <class T, class Cache>
struct CausalLMOutput {
  HostTensor<T> logits;                        // [batch, kept positions, vocab]
  std::optional<double> loss;                  // when labels were given
  HostTensor<T> last_hidden_state;             // [batch, seq, hidden] after the final norm
  std::vector<HostTensor<T>> hidden_states;    // num_hidden_layers + 1 entries on request
  std::vector<HostTensor<T>> attentions;       // [batch, heads, seq, kv_len] per layer on request
  std::shared_ptr<Cache> past_key_values;      // the cache used (caller's or fresh), when use_cache
};

/// The checks a forward and a generation both make of their token inputs; `who` starts each message.
inline void check_batch_shape(int64_t batch, int64_t seq, const char* who) {
  if (batch <= 0 || seq <= 0)
    throw InputError(std::string(who) + ": empty batch (batch " + std::to_string(batch) + ", sequence length " + std::to_string(seq) + ")");
}
/// ids [batch, seq] inside the vocabulary [0, vocab).
inline void check_input_ids(std::span<const int64_t> ids, int64_t batch, int64_t seq, int64_t vocab, const char* who) {
  if (static_cast<int64_t>(ids.size()) != batch * seq)
    throw InputError(std::string(who) + ": input_ids has " + std::to_string(ids.size()) + " values, expected batch*seq = " + std::to_string(batch * seq) +
                     " (batch " + std::to_string(batch) + ", seq " + std::to_string(seq) + ")");
  for (size_t t = 0; t < ids.size(); ++t)
    if (ids[t] < 0 || ids[t] >= vocab)
      throw InputError(std::string(who) + ": input_ids[" + std::to_string(t / static_cast<size_t>(seq)) + "][" + std::to_string(t % static_cast<size_t>(seq)) +
                       "] = " + std::to_string(ids[t]) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}
/// A 2-D mask [batch, length] of 0/1; `length_name` says what its length is ("seq", "past + seq").
inline void check_attention_mask(std::span<const int64_t> mask, int64_t batch, int64_t length, const char* who, const char* length_name) {
  if (static_cast<int64_t>(mask.size()) != batch * length)
    throw InputError(std::string(who) + ": attention_mask has " + std::to_string(mask.size()) + " values, expected batch x (" + length_name + ") = " +
                     std::to_string(batch) + " x " + std::to_string(length));
  for (auto m : mask)
    if (m != 0 && m != 1) throw InputError(std::string(who) + ": attention_mask values must be 0 or 1, got " + std::to_string(m));
}

}  // namespace dots1
