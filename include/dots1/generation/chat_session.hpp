// dots1/generation/chat_session.hpp — a multi-turn chat that keeps its KV cache across turns.
//
// Each turn renders only the new part of the conversation in the model's chat format (dots.llm1:
// <|system|>..<|endofsystem|><|userprompt|>..<|endofuserprompt|><|response|>), feeds just those tokens
// through the cache, and generates the answer until a stop token (<|endofresponse|>, <|endoftext|>).
// The history is never re-read: the cache always holds exactly the rendered conversation so far.
// undo() takes the last exchange back and regenerate() answers the last user turn again, both by cropping
// the cache back to a turn boundary (KvCache::crop; a fresh prefill of the kept tokens when a sliding
// window has already dropped keys).
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "dots1/error.hpp"
#include "dots1/generation/generate.hpp"
#include "dots1/generation/generation_config.hpp"
#include "dots1/generation/logits_process.hpp"
#include "dots1/generation/sampling.hpp"
#include "dots1/tokenizer.hpp"

namespace dots1 {

template <CausalLanguageModel Model>
class ChatSession {
 public:
  /// `options` are the sampling/length options of every answer (max_new_tokens caps each answer).
  ChatSession(Model& model, const Tokenizer& tokenizer, ChatFormat format, GenerationConfig options,
              std::optional<std::string> system = std::nullopt)
      : model_(model), tok_(tokenizer), format_(std::move(format)), options_(std::move(options)), system_(std::move(system)),
        rng_(options_.seed ? *options_.seed : std::random_device{}()) {
    format_.require_tokens(tok_);  // the turn markers must be tokens (tokenizer/chat_format.hpp)
    for (int32_t id : format_.stop_token_ids(tok_)) stops_.push_back(id);
    if (stops_.empty()) throw TokenizerError("chat: the tokenizer has none of the chat format's stop tokens");
    reset();
  }

  /// Forgets the conversation (and the cache).
  void reset() {
    messages_.clear();
    if (system_) messages_.push_back({"system", *system_});
    rendered_.clear();
    tokens_.clear();
    turns_.clear();
    cache_ = std::make_shared<typename Model::Cache>(model_.make_cache(1));
  }

  /// The tokens this turn would add before the answer (the user turn and the generation prompt).
  std::vector<int32_t> pending_tokens(const std::string& user) const {
    auto next = messages_;
    next.push_back({"user", user});
    const std::string full = format_.render(next, /*add_generation_prompt=*/true);
    if (full.compare(0, rendered_.size(), rendered_) != 0)
      throw Error("chat: the rendered conversation does not extend the previous one (the chat format is not append-only)");
    // The history ends with a special token (or is empty), so the new text tokenizes on its own exactly as
    // it would inside the whole conversation.
    return tok_.encode(std::string_view(full).substr(rendered_.size()));
  }

  /// Adds the user's turn, generates the answer (streamed through on_text as UTF-8 pieces) and returns it.
  /// Throws InputError, leaving the conversation unchanged, if the turn does not fit the model's context.
  std::string reply(const std::string& user, const std::function<void(const std::string&)>& on_text = {}) {
    const std::vector<int32_t> turn = pending_tokens(user);
    const int64_t context = model_.config().max_position_embeddings;
    const auto used = static_cast<int64_t>(tokens_.size());
    if (used + static_cast<int64_t>(turn.size()) + 1 > context)
      throw InputError("chat: this message is " + std::to_string(turn.size()) + " tokens and the conversation already holds " +
                       std::to_string(used) + "; the model's context is " + std::to_string(context) +
                       " tokens (max_position_embeddings). Send a shorter message or start over.");
    Turn t{messages_.size(), rendered_, tokens_.size(), tokens_.size() + turn.size(), turn.back()};
    messages_.push_back({"user", user});
    rendered_ = format_.render(messages_, true);
    turns_.push_back(std::move(t));
    return answer_or_drop_turn(std::vector<int64_t>(turn.begin(), turn.end()), on_text);
  }

  /// Forgets the last exchange (user turn and answer): the conversation, and the cache cropped back to where
  /// that turn began. False when there is no exchange to undo.
  bool undo() {
    if (turns_.empty()) return false;
    const Turn t = std::move(turns_.back());
    turns_.pop_back();
    crop_to(t.tokens_before);
    messages_.resize(t.messages_before);
    rendered_ = t.rendered_before;
    return true;
  }

  /// Replaces the last answer by a new one to the same user turn (the cache cropped back to the end of that
  /// turn); when sampling, the generator goes on, so it is a new draw; greedy gives the same answer again.
  /// nullopt when there is no answer yet.
  std::optional<std::string> regenerate(const std::function<void(const std::string&)>& on_text = {}) {
    if (turns_.empty()) return std::nullopt;
    const Turn& t = turns_.back();
    // the answer's first token was chosen from the logits of the turn's last token: feed that one again
    crop_to(t.tokens_after_prompt - 1);
    messages_.pop_back();  // the old answer
    rendered_ = format_.render(messages_, true);
    return answer_or_drop_turn({t.last_prompt_token}, on_text);
  }

  /// Why the last answer ended: eos (a stop token), length (max_new_tokens) or context (the model's
  /// context was one token from full). FinishReason::none before the first answer.
  FinishReason last_finish_reason() const { return finish_reason_; }
  /// Exchanges (user turn + answer) that undo() can take back.
  size_t turns() const { return turns_.size(); }

  const std::vector<ChatMessage>& messages() const { return messages_; }
  /// The whole conversation as rendered so far (what the cache holds).
  const std::string& rendered() const { return rendered_; }
  /// Every token fed through the model so far; the cache holds exactly these.
  const std::vector<int64_t>& tokens() const { return tokens_; }
  int64_t cached_tokens() const { return cache_->seq_length(); }

 private:
  /// Where an exchange began in the conversation, the cache and the messages.
  struct Turn {
    size_t messages_before;
    std::string rendered_before;
    size_t tokens_before;        // tokens fed before the user turn
    size_t tokens_after_prompt;  // ... and after it (the generation prompt included)
    int64_t last_prompt_token;   // the turn's last token, whose logits choose the answer's first
  };

  /// answer() for the last turn; if it fails, the turn is dropped (as undo() would) before the error goes on,
  /// so the conversation stays one the cache holds.
  std::string answer_or_drop_turn(std::vector<int64_t> feed, const std::function<void(const std::string&)>& on_text) {
    try {
      return answer(std::move(feed), on_text);
    } catch (...) {
      undo();
      throw;
    }
  }

  /// Feeds `feed` (the rest of the prompt) and generates the answer; closes the turn in the cache.
  std::string answer(std::vector<int64_t> feed, const std::function<void(const std::string&)>& on_text) {
    const int64_t context = model_.config().max_position_embeddings;
    const ResolvedGenerationConfig rc =
        resolve(options_, static_cast<int64_t>(tokens_.size() + feed.size()), context, model_.config().vocab_size);
    detail::NextTokenChooser<Model> chooser(model_, rc);
    const int64_t no_pads = 0;
    // Feed the new turn (one prefill of just these tokens), then one token per step. The answer ends at a
    // stop token, at max_new_tokens, or one token before the context is full (room for the end token).
    const int64_t limit = std::min(rc.max_length, context - 1);
    std::vector<int32_t> answer;
    DecodeStream stream(tok_, /*skip_special=*/true);
    while (true) {
      step(chooser, feed);
      if (static_cast<int64_t>(tokens_.size()) >= limit) {
        finish_reason_ = static_cast<int64_t>(tokens_.size()) >= rc.max_length ? FinishReason::length : FinishReason::context;
        break;
      }
      const int64_t next = chooser.choose(std::span<const std::vector<int64_t>>(&tokens_, 1), std::span<const int64_t>(&no_pads, 1), rng_)[0];
      if (std::find(stops_.begin(), stops_.end(), next) != stops_.end()) {
        finish_reason_ = FinishReason::eos;
        break;
      }
      answer.push_back(static_cast<int32_t>(next));
      if (on_text)
        if (auto piece = stream.step(static_cast<int32_t>(next))) on_text(*piece);
      feed = {next};
    }
    // Close the turn in the cache as the format renders it: the format's end-of-answer token (whichever stop
    // token the model chose, or none when the length ran out).
    step(chooser, {stops_.front()});
    const std::string text = tok_.decode(answer, /*skip_special=*/true);
    messages_.push_back({"assistant", text});
    rendered_ = format_.render(messages_, false);
    return text;
  }

  /// Back to the first `n` tokens: the cache cropped (KvCache::crop), or, when a sliding-window layer has
  /// already dropped keys it would need, a fresh cache fed the kept tokens in one prefill (equal up to
  /// the rounding of a prefill against step-by-step feeding).
  void crop_to(size_t n) {
    if (!cache_->crop(static_cast<int64_t>(n))) {
      cache_ = std::make_shared<typename Model::Cache>(model_.make_cache(1));
      if (n > 0) {
        ForwardInput in = ForwardInput::from_ids({std::vector<int64_t>(tokens_.begin(), tokens_.begin() + static_cast<std::ptrdiff_t>(n))});
        in.logits_to_keep = 1;
        model_.forward(in, cache_);
      }
    }
    tokens_.resize(n);
  }

  /// Feeds `ids` through the cache; `chooser` keeps the logits of the last position.
  void step(detail::NextTokenChooser<Model>& chooser, const std::vector<int64_t>& ids) {
    ForwardInput in = ForwardInput::from_ids({ids});
    in.logits_to_keep = 1;
    chooser.forward(in, cache_);
    tokens_.insert(tokens_.end(), ids.begin(), ids.end());
  }

  Model& model_;
  const Tokenizer& tok_;
  ChatFormat format_;
  GenerationConfig options_;
  std::optional<std::string> system_;
  SamplingRng rng_;
  std::vector<int64_t> stops_;
  std::vector<ChatMessage> messages_;
  std::string rendered_;
  std::vector<int64_t> tokens_;
  std::shared_ptr<typename Model::Cache> cache_;
  std::vector<Turn> turns_;
  FinishReason finish_reason_ = FinishReason::none;
};

}  // namespace dots1
