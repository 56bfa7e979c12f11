// bench_tokenizer — single-threaded encode throughput of dots1::Tokenizer, and of HF tokenizers on the
// same documents in the same run (through examples/bench_tokenizer_hf.py), plus load time.
//
//   bench_tokenizer [--tokenizer DIR|FILE] [--corpus FILE] [--min-mb 8] [--repeats 3] [--no-hf]
//                   [--python python3] [--threads N] [--save-corpus FILE]
//
// Without --corpus, a corpus of at least --min-mb MB is assembled from local files: the multilingual
// test corpus (tests/fixtures/tokenizer), prose (/usr/share/common-licenses, /usr/share/doc), C/C++
// headers (/usr/include), Python sources and logs. Documents are at most 64 kB, cut at line ends.
// Both sides encode the same documents one by one (HF: encode_batch with parallelism off), special
// tokens parsed, and the ids are compared through a checksum.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <dots1/tokenizer.hpp>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

bool valid_utf8(const std::string& s) {
  try {
    dots1::tok::validate_utf8(s);
    return true;
  } catch (const dots1::TokenizerError&) {
    return false;
  }
}

// Appends `text` as documents of at most 64 kB, cut after a newline where possible (never inside a
// UTF-8 sequence).
void add_documents(std::vector<std::string>& docs, const std::string& text, size_t& total) {
  constexpr size_t kMax = 64 * 1024;
  size_t i = 0;
  while (i < text.size()) {
    size_t end = std::min(text.size(), i + kMax);
    if (end < text.size()) {
      const size_t nl = text.rfind('\n', end);
      if (nl != std::string::npos && nl > i) end = nl + 1;
      while (end > i && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    }
    docs.push_back(text.substr(i, end - i));
    total += end - i;
    i = end;
  }
}

std::vector<std::string> assemble_corpus(size_t min_bytes) {
  std::vector<std::string> docs;
  size_t total = 0;
  // 1. The multilingual test corpus (prose and code in many scripts, edge cases).
  const fs::path fixture = fs::path(DOTS1_SOURCE_DIR) / "tests/fixtures/tokenizer/qwen2_corpus.jsonl";
  if (std::ifstream f(fixture); f) {
    std::string line, joined;
    while (std::getline(f, line)) joined += nlohmann::json::parse(line)["text"].get<std::string>() + "\n";
    add_documents(docs, joined, total);
  }
  // 2. Local files, round robin over kinds so that the mix does not depend on one directory's size.
  auto list = [](const fs::path& root, const std::vector<std::string>& exts, size_t depth) {
    std::vector<fs::path> out;
    std::error_code ec;
    if (!fs::exists(root, ec)) return out;
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (static_cast<size_t>(it.depth()) >= depth) it.disable_recursion_pending();
      if (!it->is_regular_file(ec) || it->file_size(ec) > 4 * 1024 * 1024) continue;
      const std::string name = it->path().filename().string();
      const bool ext_ok = exts.empty() || std::any_of(exts.begin(), exts.end(), [&](const std::string& e) {
        return name.size() >= e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0;
      });
      if (ext_ok) out.push_back(it->path());
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  std::vector<std::vector<fs::path>> kinds = {
      list("/usr/share/common-licenses", {}, 1),
      list("/usr/share/doc", {"README", "changelog", "copyright", ".txt", ".md", "NEWS"}, 3),
      list("/usr/include", {".h", ".hpp"}, 4),
      list("/usr/lib/python3", {".py"}, 3),
      list("/var/log", {".log"}, 2),
  };
  std::vector<size_t> next(kinds.size(), 0);
  bool progress = true;
  while (total < min_bytes && progress) {
    progress = false;
    for (size_t k = 0; k < kinds.size() && total < min_bytes; ++k) {
      while (next[k] < kinds[k].size()) {
        std::ifstream f(kinds[k][next[k]++], std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        std::string text = ss.str();
        if (text.empty() || !valid_utf8(text)) continue;
        add_documents(docs, text, total);
        progress = true;
        break;
      }
    }
  }
  return docs;
}

// Order-sensitive checksum of all ids, the same as bench_tokenizer_hf.py computes.
uint64_t checksum(const std::vector<std::vector<int32_t>>& all) {
  uint64_t h = 0, i = 0;
  for (const auto& ids : all)
    for (int32_t id : ids) h += (static_cast<uint64_t>(id) + 1) * (++i);
  return h;
}

struct Run {
  double seconds = 0;
  size_t tokens = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer = std::string(DOTS1_SOURCE_DIR) + "/../shared/tokenizers/qwen2-bpe";
  std::string corpus_file, save_corpus, python = "python3";
  double min_mb = 8;
  int repeats = 3, threads = 0;
  bool hf = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--tokenizer") tokenizer = value();
    else if (a == "--corpus") corpus_file = value();
    else if (a == "--save-corpus") save_corpus = value();
    else if (a == "--min-mb") min_mb = std::stod(value());
    else if (a == "--repeats") repeats = std::max(1, std::stoi(value()));
    else if (a == "--threads") threads = std::stoi(value());
    else if (a == "--python") python = value();
    else if (a == "--no-hf") hf = false;
    else {
      std::fprintf(stderr, "usage: %s [--tokenizer DIR|FILE] [--corpus FILE.jsonl|FILE.txt] [--min-mb 8] [--repeats 3] "
                           "[--no-hf] [--python python3] [--threads N] [--save-corpus FILE]\n", argv[0]);
      return 2;
    }
  }

  try {
    // Corpus: a JSON-lines file of strings, a plain text file, or assembled from local files.
    std::vector<std::string> docs;
    if (!corpus_file.empty()) {
      std::ifstream f(corpus_file, std::ios::binary);
      if (!f) throw dots1::IoError("cannot open " + corpus_file);
      size_t total = 0;
      if (corpus_file.size() > 6 && corpus_file.substr(corpus_file.size() - 6) == ".jsonl") {
        std::string line;
        while (std::getline(f, line))
          if (!line.empty()) docs.push_back(nlohmann::json::parse(line).get<std::string>());
      } else {
        std::stringstream ss;
        ss << f.rdbuf();
        add_documents(docs, ss.str(), total);
      }
    } else {
      docs = assemble_corpus(static_cast<size_t>(min_mb * 1e6));
    }
    size_t bytes = 0;
    for (const auto& d : docs) bytes += d.size();
    std::printf("corpus: %zu documents, %.2f MB\n", docs.size(), bytes / 1e6);

    // The same documents for the HF script.
    std::string jsonl = save_corpus.empty() ? (fs::temp_directory_path() / "dots1_bench_corpus.jsonl").string() : save_corpus;
    if (hf || !save_corpus.empty()) {
      std::ofstream out(jsonl, std::ios::binary);
      for (const auto& d : docs) out << nlohmann::json(d).dump() << '\n';
    }

    const auto t0 = Clock::now();
    const dots1::Tokenizer tok = fs::is_directory(tokenizer) ? dots1::Tokenizer::from_folder(tokenizer) : dots1::Tokenizer::from_file(tokenizer);
    const double load_s = seconds_since(t0);

    // Single-threaded encode, document by document; pass 1 starts with an empty word cache.
    std::vector<std::vector<int32_t>> ids(docs.size());
    std::vector<Run> runs;
    for (int r = 0; r < repeats; ++r) {
      Run run;
      const auto t = Clock::now();
      for (size_t i = 0; i < docs.size(); ++i) ids[i] = tok.encode(docs[i]);
      run.seconds = seconds_since(t);
      for (const auto& v : ids) run.tokens += v.size();
      runs.push_back(run);
    }
    const Run& first = runs.front();
    const Run& best = *std::min_element(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.seconds < b.seconds; });
    const uint64_t sum = checksum(ids);
    std::printf("dots1 (C++):      load %.3f s | first pass %7.2f MB/s %10.0f tokens/s | best of %d %7.2f MB/s %10.0f tokens/s | %zu tokens\n",
                load_s, bytes / 1e6 / first.seconds, first.tokens / first.seconds, repeats, bytes / 1e6 / best.seconds,
                best.tokens / best.seconds, first.tokens);
    if (threads > 0) {
      const auto t = Clock::now();
      auto batch = tok.encode_batch(docs, true, threads);
      const double s = seconds_since(t);
      std::printf("dots1 (C++), encode_batch on %d threads: %.2f MB/s%s\n", threads, bytes / 1e6 / s,
                  checksum(batch) == sum ? "" : "  (ids DIFFER from single-threaded!)");
    }
    std::fflush(stdout);

    if (hf) {
      const std::string script = std::string(DOTS1_SOURCE_DIR) + "/examples/bench_tokenizer_hf.py";
      const std::string tok_file = fs::is_directory(tokenizer) ? (fs::path(tokenizer) / "tokenizer.json").string() : tokenizer;
      const std::string cmd = python + " \"" + script + "\" --tokenizer \"" + tok_file + "\" --corpus \"" + jsonl +
                              "\" --repeats " + std::to_string(repeats);
      std::FILE* p = ::popen(cmd.c_str(), "r");
      std::string out;
      if (p) {
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        const int rc = ::pclose(p);
        if (rc != 0) out.clear();
      }
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(out.substr(out.rfind('{')));
      } catch (const std::exception&) {
        std::printf("HF tokenizers: not measured (could not run `%s`; is the `tokenizers` package installed?)\n", cmd.c_str());
        return 0;
      }
      std::printf("HF tokenizers:    load %.3f s | first pass %7.2f MB/s %10.0f tokens/s | best of %d %7.2f MB/s %10.0f tokens/s | %lld tokens (v%s, 1 thread)\n",
                  j["load_s"].get<double>(), j["first_mb_per_s"].get<double>(), j["first_tokens_per_s"].get<double>(), repeats,
                  j["best_mb_per_s"].get<double>(), j["best_tokens_per_s"].get<double>(), j["tokens"].get<long long>(),
                  j["version"].get<std::string>().c_str());
      const bool same = j["checksum"].get<uint64_t>() == sum && j["tokens"].get<size_t>() == first.tokens;
      std::printf("ids identical to HF: %s\n", same ? "yes" : "NO");
      std::printf("speed ratio dots1/HF (first pass): %.2fx, (best): %.2fx\n",
                  (bytes / 1e6 / first.seconds) / j["first_mb_per_s"].get<double>(),
                  (bytes / 1e6 / best.seconds) / j["best_mb_per_s"].get<double>());
      if (save_corpus.empty()) fs::remove(jsonl);
      return same ? 0 : 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenizer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
