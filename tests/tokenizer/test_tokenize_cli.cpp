// `dots1 tokenize`, run as a subprocess: the HF reference ids of the corpus (special tokens in the text
// parsed by default, as HF's tokenizer does; plain text with --no-special), --decode, errors, and 100k lines
// in one run.
#define BOOST_TEST_MODULE tokenize_cli
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <dots1/tokenizer.hpp>

#include "tokenizer_fixtures.hpp"

namespace fs = std::filesystem;
using dots1_test::fixtures;
using dots1_test::ids_of;
using dots1_test::qwen2_dir;
using dots1_test::read_jsonl;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("dots1_tokenize_cli_" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// Runs `dots1 tokenize <args> < in > out 2> err`; returns the exit status.
int run(const std::string& args, const fs::path& in, const fs::path& out, const fs::path& err) {
  const std::string cmd = std::string("\"") + DOTS1_TOOL_PATH + "\" tokenize " + args + " < \"" + in.string() + "\" > \"" +
                          out.string() + "\" 2> \"" + err.string() + "\"";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::string> v;
  std::string l;
  while (std::getline(f, l)) v.push_back(l);
  return v;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

BOOST_AUTO_TEST_CASE(corpus_ids_both_ways) {
  TempDir tmp;
  const auto records = read_jsonl(fixtures() / "qwen2_corpus.jsonl");
  {
    std::ofstream in(tmp.path / "texts.jsonl");
    for (const auto& r : records) in << r["text"].dump() << '\n';
    std::ofstream ids(tmp.path / "ids.jsonl");
    for (const auto& r : records) ids << r["ids"].dump() << '\n';
  }
  const std::string tok = "--tokenizer \"" + qwen2_dir().string() + "\"";
  // Default, and --special: special tokens in the text are parsed (HF's default encode).
  std::vector<std::string> out;
  for (const char* flag : {"", " --special"}) {
    BOOST_TEST_REQUIRE(run(tok + flag, tmp.path / "texts.jsonl", tmp.path / "out.jsonl", tmp.path / "err") == 0);
    out = lines_of(tmp.path / "out.jsonl");
    BOOST_TEST_REQUIRE(out.size() == records.size());
    size_t bad = 0;
    for (size_t i = 0; i < records.size(); ++i) bad += ids_of(nlohmann::json::parse(out[i])) != ids_of(records[i]["ids"]);
    BOOST_TEST(bad == 0u, "flags '" << flag << "'");
  }
  size_t bad = 0;
  // --no-special: special tokens are plain text (HF's split_special_tokens=True).
  BOOST_TEST_REQUIRE(run(tok + " --no-special", tmp.path / "texts.jsonl", tmp.path / "out.jsonl", tmp.path / "err") == 0);
  out = lines_of(tmp.path / "out.jsonl");
  BOOST_TEST_REQUIRE(out.size() == records.size());
  bad = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    bad += ids_of(nlohmann::json::parse(out[i])) != ids_of(r.contains("ids_plain") ? r["ids_plain"] : r["ids"]);
  }
  BOOST_TEST(bad == 0u);
  // --decode.
  BOOST_TEST_REQUIRE(run(tok + " --decode", tmp.path / "ids.jsonl", tmp.path / "out.jsonl", tmp.path / "err") == 0);
  out = lines_of(tmp.path / "out.jsonl");
  BOOST_TEST_REQUIRE(out.size() == records.size());
  bad = 0;
  for (size_t i = 0; i < records.size(); ++i)
    bad += nlohmann::json::parse(out[i]).get<std::string>() != records[i].value("decoded", records[i]["text"].get<std::string>());
  BOOST_TEST(bad == 0u);
}

BOOST_AUTO_TEST_CASE(hundred_thousand_lines) {
  TempDir tmp;
  {
    std::ofstream in(tmp.path / "in.jsonl");
    for (int i = 0; i < 100000; ++i) in << nlohmann::json("line " + std::to_string(i) + ": naïve café <|endoftext|> 日本語").dump() << '\n';
  }
  const auto t0 = std::chrono::steady_clock::now();
  BOOST_TEST_REQUIRE(run("--tokenizer \"" + (qwen2_dir() / "tokenizer.json").string() + "\"", tmp.path / "in.jsonl",
                         tmp.path / "out.jsonl", tmp.path / "err") == 0);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST_MESSAGE("100k lines in " << secs << " s");
  const auto out = lines_of(tmp.path / "out.jsonl");
  BOOST_TEST_REQUIRE(out.size() == 100000u);
  const auto tok = dots1::Tokenizer::from_file(qwen2_dir() / "tokenizer.json");
  for (int i : {0, 1, 4567, 99999})
    BOOST_TEST(ids_of(nlohmann::json::parse(out[i])) ==
               tok.encode("line " + std::to_string(i) + ": naïve café <|endoftext|> 日本語"));
  BOOST_TEST(secs < 60.0);  // ~1-2 s in Release; a slowdown per line (quadratic behaviour) would blow this up
}

BOOST_AUTO_TEST_CASE(errors_name_the_line) {
  TempDir tmp;
  const std::string tok = "--tokenizer \"" + qwen2_dir().string() + "\"";
  {
    std::ofstream(tmp.path / "bad.jsonl") << "\"ok\"\n[1,2]\n";
    std::ofstream(tmp.path / "badid.jsonl") << "[9707]\n[151669]\n";
    std::ofstream(tmp.path / "badutf8.jsonl") << "\"ok\"\n\"\xff\"\n";
  }
  BOOST_TEST(run(tok, tmp.path / "bad.jsonl", tmp.path / "out", tmp.path / "err") == 1);
  BOOST_TEST(slurp(tmp.path / "err").find("stdin line 2: expected a JSON string") != std::string::npos);
  BOOST_TEST(lines_of(tmp.path / "out").size() == 1u);  // the good line was answered first
  BOOST_TEST(run(tok + " --decode", tmp.path / "badid.jsonl", tmp.path / "out", tmp.path / "err") == 1);
  BOOST_TEST(slurp(tmp.path / "err").find("stdin line 2: 151669 is not a token id") != std::string::npos);
  BOOST_TEST(run(tok + " --special --no-special", tmp.path / "bad.jsonl", tmp.path / "out", tmp.path / "err") != 0);
  BOOST_TEST(slurp(tmp.path / "err").find("excludes") != std::string::npos);
  BOOST_TEST(run(tok, tmp.path / "badutf8.jsonl", tmp.path / "out", tmp.path / "err") == 1);
  BOOST_TEST(slurp(tmp.path / "err").find("stdin line 2") != std::string::npos);
}
