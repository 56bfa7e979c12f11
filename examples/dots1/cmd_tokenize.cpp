// dots1 tokenize --tokenizer PATH [--no-special] | --decode [--skip-special]
//
// A filter for scripts: reads one JSON string per line on stdin and writes one JSON array of ids per
// line on stdout; with --decode, reads JSON arrays of ids and writes JSON strings. Each answer is
// flushed at once, so a script can also talk to it line by line through a pipe. Special tokens written in
// the text (<|endoftext|>) become their ids, as HF's tokenizer does by default; --no-special encodes them
// as plain text (HF's split_special_tokens=True).
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <dots1/error.hpp>
#include <dots1/base/json_input.hpp>
#include <dots1/base/limits.hpp>
#include <dots1/tokenizer.hpp>

#include "commands.hpp"

namespace {

struct TokenizeOptions {
  std::string tokenizer;
  bool decode = false;
  bool special = true;        // parse special tokens (the result of the two flags below)
  bool no_special_flag = false, special_flag = false;
  bool skip_special = false;
};

dots1::Tokenizer load(const std::string& path) {
  if (std::filesystem::is_directory(path)) return dots1::Tokenizer::from_folder(path);
  return dots1::Tokenizer::from_file(path);
}

void append_ids(std::string& out, const std::vector<int32_t>& ids) {
  out += '[';
  char buf[16];
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    auto r = std::to_chars(buf, buf + sizeof buf, ids[i]);
    out.append(buf, r.ptr);
  }
  out += ']';
}

/// std::getline with a bound: a line longer than `max_bytes` is an error, not an unbounded allocation.
bool read_line(std::istream& in, std::string& line, size_t max_bytes, size_t lineno) {
  line.clear();
  std::istream::sentry ok(in, true);
  if (!ok) return false;
  std::streambuf* buf = in.rdbuf();
  for (;;) {
    const int c = buf->sbumpc();
    if (c == std::char_traits<char>::eof()) {
      in.setstate(std::ios::eofbit);
      return !line.empty();
    }
    if (c == '\n') return true;
    if (line.size() >= max_bytes)
      throw dots1::TokenizerError("stdin line " + std::to_string(lineno) + " is longer than " + std::to_string(max_bytes) +
                                  " bytes (dots1 tokenize reads one JSON value per line)");
    line.push_back(static_cast<char>(c));
  }
}

void run_tokenize(const TokenizeOptions& o) {
  const dots1::Tokenizer tok = load(o.tokenizer);
  const auto vocab = static_cast<int64_t>(tok.vocab_size());
  std::ios::sync_with_stdio(false);
  std::string line, out;
  size_t lineno = 0;
  while (read_line(std::cin, line, dots1::limits::kMaxInputLineBytes, lineno + 1)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string where = "stdin line " + std::to_string(lineno);
    const nlohmann::json j = dots1::io::parse_json(line, [&](const std::string& problem) {
      throw dots1::TokenizerError(where + ": not JSON (" + problem + ")");
    });
    out.clear();
    if (!o.decode) {
      if (!j.is_string()) throw dots1::TokenizerError(where + ": expected a JSON string");
      try {
        append_ids(out, tok.encode(j.get_ref<const std::string&>(), o.special));
      } catch (const dots1::TokenizerError& e) {
        throw dots1::TokenizerError(where + ": " + e.what());
      }
    } else {
      if (!j.is_array()) throw dots1::TokenizerError(where + ": expected a JSON array of token ids");
      std::vector<int32_t> ids;
      ids.reserve(j.size());
      for (const auto& v : j) {
        // Stricter than HF's decode, which silently drops unknown ids: a script passing a bad id wants to know.
        const auto id = dots1::io::json_int64(v);  // not get<int64_t>(), which wraps values above 2^63
        if (!id || *id < 0 || *id >= vocab || !tok.id_to_token(static_cast<int32_t>(*id)))
          throw dots1::TokenizerError(where + ": " + dots1::io::shown_json(v) + " is not a token id of this tokenizer (0.." + std::to_string(vocab - 1) + ")");
        ids.push_back(static_cast<int32_t>(*id));
      }
      out = nlohmann::json(tok.decode(ids, o.skip_special)).dump();
    }
    out += '\n';
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
  }
}

}  // namespace

namespace dots1_cli {

void add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "tokenize", "Encode JSON strings read one per line from stdin into JSON arrays of ids (or the reverse with --decode)");
  auto o = std::make_shared<TokenizeOptions>();
  o->tokenizer = default_model_dir();
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json, or a folder with tokenizer.json (and tokenizer_config.json)")
      ->capture_default_str();
  auto* dec = cmd->add_flag("--decode", o->decode, "read JSON arrays of ids, write JSON strings");
  auto* plain = cmd->add_flag("--no-special", o->no_special_flag,
                              "special tokens written in the text (<|endoftext|>) are plain text, not their ids")
                    ->excludes(dec);
  auto* special = cmd->add_flag("--special", o->special_flag, "parse special tokens written in the text (the default, as HF's tokenizer)")
                      ->excludes(dec);
  plain->excludes(special);
  special->excludes(plain);
  cmd->add_flag("--skip-special", o->skip_special, "with --decode: leave special tokens out of the text")->needs(dec);
  cmd->callback([o] {
    o->special = !o->no_special_flag;
    run_tokenize(*o);
  });
}

}  // namespace dots1_cli

namespace {
dots1_cli::RegisterCommand registered_tokenize(30, dots1_cli::add_tokenize_command);
}  // namespace
