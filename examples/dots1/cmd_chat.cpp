// dots1 chat --model DIR [--system TEXT] [sampling options] [--print-prompt]
// An interactive loop in the model's chat format: the folder's Jinja chat_template, else dots.llm1's
// (<|system|>, <|userprompt|>, <|response|>). Each answer streams to stdout and stops at the template's
// end-of-turn token (<|endofresponse|>), eos or generation_config's eos; the KV cache is kept across turns.
// Markers typed in a message are plain text. One message per line on stdin; an empty line is ignored;
// /reset starts over; Ctrl-D (end of input) quits. Notices go to stderr; a message the template refuses
// (its raise_exception) is reported and skipped.
#include <cstdio>
#include <iostream>
#include <string>

#include <unistd.h>

#include <dots1/eigen.hpp>
#include <dots1/generation.hpp>
#include <dots1/generation/chat_session.hpp>
#include <dots1/tokenizer.hpp>

#include "commands.hpp"
#include "load_model.hpp"
#include "sampling_options.hpp"

namespace {

struct ChatOptions {
  std::string model;
  std::optional<std::string> system;
  dots1_cli::SamplingOptions sampling;
  bool print_prompt = false;
};

void run_chat(const ChatOptions& o) {
  auto model = dots1_cli::load_cpu_model(o.model);
  const auto tokenizer = dots1::Tokenizer::from_folder(o.model);
  const auto format = dots1::ChatFormat::for_tokenizer(tokenizer);
  dots1::ChatSession<dots1::CpuModel> session(model, tokenizer, format, o.sampling.resolve_for(o.model, model.config()), o.system);
  const bool interactive = ::isatty(STDIN_FILENO);
  if (interactive)
    std::fprintf(stderr, "dots1 chat (%s). One message per line; /reset starts over; Ctrl-D quits.\n", o.model.c_str());
  std::string line;
  while (true) {
    if (interactive) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line)) {
      std::fprintf(stderr, "%s(end of input: goodbye)\n", interactive ? "\n" : "");
      return;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) {
      std::fprintf(stderr, "(empty message ignored: type a message, /reset, or Ctrl-D to quit)\n");
      continue;
    }
    if (line == "/reset") {
      session.reset();
      std::fprintf(stderr, "(conversation reset)\n");
      continue;
    }
    try {
      session.reply(line, [](const std::string& piece) {
        std::fputs(piece.c_str(), stdout);
        std::fflush(stdout);
      });
      std::fputs("\n", stdout);
      std::fflush(stdout);
    } catch (const dots1::InputError& e) {
      std::fprintf(stderr, "%s\n", e.what());
      continue;
    } catch (const dots1::TemplateError& e) {
      std::fprintf(stderr, "%s\n", e.what());
      continue;
    }
    if (o.print_prompt)
      std::fprintf(stderr, "[conversation] %s\n[cache] %lld tokens\n", session.rendered().c_str(),
                   static_cast<long long>(session.cached_tokens()));
  }
}

void add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  auto* cmd = app.add_subcommand("chat", "Chat with an instruct model in its chat template (KV cache kept across turns)");
  cmd->add_option("--model", o->model, "HF checkpoint folder with tokenizer.json")->default_val(dots1_cli::default_model_dir());
  cmd->add_option("--system", o->system, "system message (none by default)");
  o->sampling.add_to(cmd);
  cmd->add_flag("--print-prompt", o->print_prompt, "after each answer, print the rendered conversation and the cache size to stderr");
  cmd->callback([o] { run_chat(*o); });
}

dots1_cli::RegisterCommand registered(50, add_chat_command);

}  // namespace
