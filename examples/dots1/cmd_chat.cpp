// dots1 chat --model DIR [--system TEXT] [sampling options] [--print-prompt]
// An interactive loop in the model's chat format: the folder's Jinja chat_template, else dots.llm1's
// (<|system|>, <|userprompt|>, <|response|>). Each answer streams to stdout and stops at the template's
// end-of-turn token (<|endofresponse|>), eos or generation_config's eos; the KV cache is kept across turns, so
// the history is never re-read. Markers typed in a message are plain text. One message per line on stdin; a
// line ending in a backslash continues on the next line (the message then holds a newline there). An empty
// message is ignored. Commands (a line that is exactly one of them): /help, /reset (start over), /undo (take
// the last exchange back: the cache is cropped to where it began), /regenerate (answer the last message
// again: a new draw when sampling), /quit. Ctrl-D (end of input) quits. A message the tokenizer refuses
// (invalid UTF-8), that the template refuses (its raise_exception) or that does not fit the context is
// reported and the conversation goes on. Notices go to stderr.
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include <unistd.h>

#include <filesystem>

#include <dots1/generation.hpp>
#include <dots1/tokenizer.hpp>

#include "commands.hpp"
#include "tool_model.hpp"
#include "sampling_options.hpp"

namespace {

struct ChatOptions {
  std::string model;
  std::optional<std::string> system;
  dots1_cli::SamplingOptions sampling;
  bool print_prompt = false;
  std::string device = "cpu";
};

constexpr const char* kHelp =
    "Type a message and press Enter. End a line with \\ to continue the message on the next line.\n"
    "  /undo        take the last exchange (your message and the answer) back\n"
    "  /regenerate  answer your last message again\n"
    "  /reset       start the conversation over\n"
    "  /help        this text\n"
    "  /quit        leave (or Ctrl-D)\n";

/// One message from stdin: lines joined while they end in a backslash. nullopt at end of input.
std::optional<std::string> read_message(bool interactive) {
  std::string message, line;
  bool more = true;
  while (more) {
    if (interactive) std::fprintf(stderr, message.empty() ? "> " : ". ");
    if (!std::getline(std::cin, line)) {
      if (message.empty()) return std::nullopt;
      return message;  // end of input inside a continued message: send what there is
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    more = !line.empty() && line.back() == '\\';
    if (more) line.back() = '\n';
    message += line;
  }
  return message;
}

void print_piece(const std::string& piece) {
  std::fputs(piece.c_str(), stdout);
  std::fflush(stdout);
}

void run_chat(const ChatOptions& o) {
  const auto config = dots1::Dots1Config::load(std::filesystem::path(o.model) / "config.json");
  const auto options = o.sampling.resolve_for(o.model, config);  // before loading: an option that cannot fit fails at once
  const auto tokenizer = dots1::Tokenizer::from_folder(o.model);
  const auto format = dots1::ChatFormat::for_tokenizer(tokenizer);
  dots1_cli::ModelRequest request;
  request.dir = o.model;
  const auto model = dots1_cli::load_model(o.device, request);
  const auto chat = model->chat(tokenizer, format, options, o.system);
  auto& session = *chat;
  const bool interactive = ::isatty(STDIN_FILENO);
  if (interactive)
    std::fprintf(stderr, "dots1 chat (%s). One message per line (\\ at the end continues it); /help lists the commands; Ctrl-D quits.\n",
                 o.model.c_str());
  auto report = [&] {
    if (o.print_prompt)
      std::fprintf(stderr, "[conversation] %s\n[cache] %lld tokens\n", session.rendered().c_str(),
                   static_cast<long long>(session.cached_tokens()));
  };
  while (true) {
    const std::optional<std::string> message = read_message(interactive);
    if (!message) {
      std::fprintf(stderr, "%s(end of input: goodbye)\n", interactive ? "\n" : "");
      return;
    }
    const std::string& m = *message;
    if (m.find_first_not_of(" \t\n") == std::string::npos) {
      std::fprintf(stderr, "(empty message ignored: type a message, /help, or Ctrl-D to quit)\n");
      continue;
    }
    if (m == "/quit") {
      std::fprintf(stderr, "(goodbye)\n");
      return;
    }
    if (m == "/help") {
      std::fputs(kHelp, stderr);
      continue;
    }
    if (m == "/reset") {
      session.reset();
      std::fprintf(stderr, "(conversation reset)\n");
      continue;
    }
    if (m == "/undo") {
      if (session.undo()) std::fprintf(stderr, "(last exchange undone; %zu left)\n", session.turns());
      else std::fprintf(stderr, "(nothing to undo)\n");
      report();
      continue;
    }
    try {
      if (m == "/regenerate") {
        if (!session.regenerate(print_piece)) {
          std::fprintf(stderr, "(nothing to regenerate: no answer yet)\n");
          continue;
        }
      } else {
        dots1::tok::validate_utf8(m, "the message");  // offsets in the message, not in the rendered turn
        session.reply(m, print_piece);
      }
      std::fputs("\n", stdout);
      std::fflush(stdout);
    } catch (const dots1::InputError& e) {  // does not fit the context: the conversation is unchanged
      std::fprintf(stderr, "%s\n", e.what());
      continue;
    } catch (const dots1::TokenizerError& e) {  // e.g. invalid UTF-8: the conversation is unchanged
      std::fprintf(stderr, "(message not sent: %s)\n", e.what());
      continue;
    } catch (const dots1::TemplateError& e) {  // the template's raise_exception (a role order it refuses)
      std::fprintf(stderr, "(message not sent: %s)\n", e.what());
      continue;
    }
    if (session.last_finish_reason() == dots1::FinishReason::context)
      std::fprintf(stderr, "(the answer stopped at the end of the model's context: /undo or /reset to go on)\n");
    report();
  }
}

void add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  auto* cmd = app.add_subcommand("chat", "Chat with an instruct model in its chat template (KV cache kept across turns)");
  cmd->add_option("--model", o->model, "HF checkpoint folder with tokenizer.json")->default_val(dots1_cli::default_model_dir());
  cmd->add_option("--system", o->system, "system message (none by default)");
  o->sampling.add_to(cmd);
  cmd->add_flag("--print-prompt", o->print_prompt, "after each answer, print the rendered conversation and the cache size to stderr");
  cmd->add_option("--device", o->device, "cpu, or cuda (the chat on the GPU model; needs a dots1 built with CUDA)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->callback([o] { run_chat(*o); });
}

dots1_cli::RegisterCommand registered(50, add_chat_command);

}  // namespace
