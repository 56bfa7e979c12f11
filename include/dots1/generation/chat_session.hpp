// dots1/generation/chat_session.hpp — a multi-turn chat that keeps its KV cache across turns.
//
// Each turn renders the conversation in the model's chat format (the checkpoint's Jinja chat_template, or
// the built-in dots.llm1 format), feeds only the text the cache does not hold yet, and generates the
// answer until a stop token (the format's end-of-turn marker, the tokenizer's eos_token, and the
// GenerationConfig's eos_token_id). Message contents are encoded as plain text (ChatFormat): a user cannot
// forge turns by typing the markers. After an answer the cache is closed as the template renders the
// finished turn (e.g. "<|im_end|>\n"). The cache always holds exactly the text of rendered(); when a
// template does not render a conversation as an extension of the previous turn's text (Qwen3 drops old
// reasoning, some templates trim answers), the next turn re-reads the whole conversation instead.
// undo() takes the last exchange back and regenerate() answers the last user turn again, both by cropping
// the cache back to a turn boundary (KvCache::crop; a fresh prefill of the kept tokens when a sliding
// window has already dropped keys, or when the turn had re-read the conversation).
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
    auto add_stop = [&](int64_t id) {
      if (std::find(stops_.begin(), stops_.end(), id) == stops_.end()) stops_.push_back(id);
    };
    for (int32_t id : format_.stop_token_ids(tok_)) add_stop(id);
    for (int64_t id : options_.eos_token_id) add_stop(id);
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

  /// The tokens this turn would feed before the answer: the user turn and the generation prompt, after
  /// what the cache holds; or the whole conversation when the format does not render it as an extension
  /// of the cached text (see the top of this file).
  std::vector<int32_t> pending_tokens(const std::string& user) const { return plan(user).tokens; }

  /// Adds the user's turn, generates the answer (streamed through on_text as UTF-8 pieces) and returns it.
  /// Throws InputError, leaving the conversation unchanged, if the turn does not fit the model's context;
  /// a template's raise_exception (e.g. a role order it refuses) is a TemplateError, also before anything
  /// changes.
  std::string reply(const std::string& user, const std::function<void(const std::string&)>& on_text = {}) {
    const Plan turn = plan(user);
    const int64_t context = model_.config().max_position_embeddings;
    const auto used = turn.restart ? int64_t{0} : static_cast<int64_t>(tokens_.size());
    if (turn.tokens.empty()) throw InputError("chat: the chat format renders this message as nothing new");
    if (used + static_cast<int64_t>(turn.tokens.size()) + 1 > context)
      throw InputError("chat: this message is " + std::to_string(turn.tokens.size()) + " tokens and the conversation already holds " +
                       std::to_string(used) + "; the model's context is " + std::to_string(context) +
                       " tokens (max_position_embeddings). Send a shorter message or start over.");
    Turn t;
    t.messages_before = messages_.size();
    t.rendered_before = rendered_;
    t.tokens_before = tokens_.size();
    if (turn.restart) {  // the turn re-reads the conversation: undo() feeds the old tokens again
      t.restarted = true;
      t.tokens_saved = tokens_;
      tokens_.clear();
      cache_ = std::make_shared<typename Model::Cache>(model_.make_cache(1));
    }
    t.tokens_after_prompt = tokens_.size() + turn.tokens.size();
    t.last_prompt_token = turn.tokens.back();
    t.rendered_prompt = turn.rendered.text;
    messages_.push_back({"user", user});
    rendered_ = turn.rendered.text;
    turns_.push_back(std::move(t));
    return answer_or_drop_turn(std::vector<int64_t>(turn.tokens.begin(), turn.tokens.end()), on_text);
  }

  /// Forgets the last exchange (user turn and answer): the conversation, and the cache cropped back to where
  /// that turn began. False when there is no exchange to undo.
  bool undo() {
    if (turns_.empty()) return false;
    const Turn t = std::move(turns_.back());
    turns_.pop_back();
    if (t.restarted) refill(t.tokens_saved);
    else crop_to(t.tokens_before);
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
    rendered_ = t.rendered_prompt;
    return answer_or_drop_turn({t.last_prompt_token}, on_text);
  }

  /// Why the last answer ended: eos (a stop token), length (max_new_tokens) or context (the model's
  /// context was one token from full). FinishReason::none before the first answer.
  FinishReason last_finish_reason() const { return finish_reason_; }
  /// Exchanges (user turn + answer) that undo() can take back.
  size_t turns() const { return turns_.size(); }

  const std::vector<ChatMessage>& messages() const { return messages_; }
  /// The text the cache holds: the conversation as rendered so far (after a template that rewrote the
  /// last answer, the answer as generated).
  const std::string& rendered() const { return rendered_; }
  /// Every token fed through the model so far; the cache holds exactly these.
  const std::vector<int64_t>& tokens() const { return tokens_; }
  int64_t cached_tokens() const { return cache_->seq_length(); }

 private:
  struct Plan {
    RenderedChat rendered;        // the conversation with the new user turn and the generation prompt
    std::vector<int32_t> tokens;  // what to feed
    bool restart = false;         // feed from an empty cache
  };

  /// Where an exchange began in the conversation, the cache and the messages.
  struct Turn {
    size_t messages_before = 0;
    std::string rendered_before;
    size_t tokens_before = 0;             // tokens fed before the user turn
    bool restarted = false;               // the turn re-read the whole conversation into a fresh cache ...
    std::vector<int64_t> tokens_saved;    // ... which held these tokens before it
    size_t tokens_after_prompt = 0;       // tokens after the user turn (the generation prompt included)
    int64_t last_prompt_token = 0;        // the turn's last token, whose logits choose the answer's first
    std::string rendered_prompt;          // the conversation up to the generation prompt
  };

  Plan plan(const std::string& user) const {
    auto next = messages_;
    next.push_back({"user", user});
    Plan p;
    p.rendered = format_.render_chat(next, /*add_generation_prompt=*/true);
    const bool extends = p.rendered.text.compare(0, rendered_.size(), rendered_) == 0 && p.rendered.text.size() >= rendered_.size();
    p.restart = !extends || tokens_.empty();
    // The cached text normally ends with a special token, so the new text tokenizes on its own exactly as
    // it would inside the whole conversation.
    p.tokens = ChatFormat::encode_rendered(tok_, p.rendered, p.restart ? 0 : rendered_.size());
    return p;
  }

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

  /// Feeds `feed` (the rest of the prompt), generates the answer and closes the turn in the cache.
  std::string answer(std::vector<int64_t> feed, const std::function<void(const std::string&)>& on_text) {
    const int64_t context = model_.config().max_position_embeddings;
    const ResolvedGenerationConfig rc = resolve(options_, static_cast<int64_t>(tokens_.size() + feed.size()), context, model_.config().vocab_size);
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
    const std::string text = tok_.decode(answer, /*skip_special=*/true);
    messages_.push_back({"assistant", text});
    // Close the turn in the cache as the format renders the finished conversation: whatever follows the
    // answer's text (the end-of-turn marker and what the template puts after it), whichever stop token the
    // model chose, or none when the length ran out.
    const std::string held = rendered_ + tok_.decode(answer, /*skip_special=*/false);
    rendered_ = held;  // what the cache holds now
    RenderedChat closed;
    try {
      closed = format_.render_chat(messages_, false);
    } catch (const TemplateError&) {
      return text;  // a template that refuses this history: the next turn reports it (or re-reads)
    }
    if (closed.text.size() >= held.size() && closed.text.compare(0, held.size(), held) == 0) {
      const std::vector<int32_t> tail = ChatFormat::encode_rendered(tok_, closed, held.size());
      if (tail.empty()) {
        rendered_ = closed.text;
      } else if (static_cast<int64_t>(tokens_.size() + tail.size()) <= context) {
        step(chooser, std::vector<int64_t>(tail.begin(), tail.end()));
        rendered_ = closed.text;
      }
    }
    // else the template rewrote the answer (dropped reasoning, trimmed it): the next turn re-reads
    return text;
  }

  /// Back to the first `n` tokens: the cache cropped (KvCache::crop), or, when a sliding-window layer has
  /// already dropped keys it would need, a fresh cache fed the kept tokens in one prefill (equal up to
  /// the rounding of a prefill against step-by-step feeding).
  void crop_to(size_t n) {
    if (!cache_->crop(static_cast<int64_t>(n))) refill(std::vector<int64_t>(tokens_.begin(), tokens_.begin() + static_cast<std::ptrdiff_t>(n)));
    tokens_.resize(n);
  }

  /// A fresh cache holding `tokens` (one prefill).
  void refill(std::vector<int64_t> tokens) {
    cache_ = std::make_shared<typename Model::Cache>(model_.make_cache(1));
    if (!tokens.empty()) {
      ForwardInput in = ForwardInput::from_ids({tokens});
      in.logits_to_keep = 1;
      model_.forward(in, cache_);
    }
    tokens_ = std::move(tokens);
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
  std::vector<Turn> turns_;
  FinishReason finish_reason_ = FinishReason::none;
  std::shared_ptr<typename Model::Cache> cache_;
};

}  // namespace dots1
