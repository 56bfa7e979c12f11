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
    if (used + static_cast<int64_t>(turn.tokens.size()) + 1 > context)
      throw InputError("chat: this message is " + std::to_string(turn.tokens.size()) + " tokens and the conversation already holds " +
                       std::to_string(used) + "; the model's context is " + std::to_string(context) +
                       " tokens (max_position_embeddings). Send a shorter message or start over.");
    if (turn.restart) {
      tokens_.clear();
      cache_ = std::make_shared<typename Model::Cache>(model_.make_cache(1));
    }
    messages_.push_back({"user", user});
    rendered_ = turn.rendered.text;
    const ResolvedGenerationConfig rc = resolve(options_, used + static_cast<int64_t>(turn.tokens.size()), context, model_.config().vocab_size);
    detail::NextTokenChooser<Model> chooser(model_, rc);
    const int64_t no_pads = 0;
    // Feed the new turn (one prefill of just these tokens), then one token per step. The answer ends at a
    // stop token, at max_new_tokens, or one token before the context is full (room for the end token).
    const int64_t limit = std::min(rc.max_length, context - 1);
    std::vector<int64_t> feed(turn.tokens.begin(), turn.tokens.end());
    std::vector<int32_t> answer;
    DecodeStream stream(tok_, /*skip_special=*/true);
    while (true) {
      step(chooser, feed);
      if (static_cast<int64_t>(tokens_.size()) >= limit) break;
      const int64_t next = chooser.choose(std::span<const std::vector<int64_t>>(&tokens_, 1), std::span<const int64_t>(&no_pads, 1), rng_)[0];
      if (std::find(stops_.begin(), stops_.end(), next) != stops_.end()) break;
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
};

}  // namespace dots1
