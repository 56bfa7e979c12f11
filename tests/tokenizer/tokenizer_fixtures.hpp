// Helpers shared by the tokenizer tests: where the fixtures are, and a JSON-lines reader.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <dots1/error.hpp>

namespace dots1_test {

inline std::filesystem::path fixtures() { return std::filesystem::path(DOTS1_FIXTURES_DIR) / "tokenizer"; }
inline std::filesystem::path qwen2_dir() { return std::filesystem::path(DOTS1_SHARED_DIR) / "tokenizers" / "qwen2-bpe"; }

inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::ifstream f(p);
  if (!f) throw dots1::IoError("cannot open fixture " + p.string());
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

inline std::vector<int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

}  // namespace dots1_test
