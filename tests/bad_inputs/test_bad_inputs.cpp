// The table of bad inputs (tests/bad_inputs/cases.json): each entry is one Boost.Test case, in a suite named
// after its kind, that passes only if the input raises exactly the named dots1 error type and the message
// contains every required word. Control entries (error null) must load or run without an error, so that a
// broken base cannot make the other cases pass for the wrong reason. See the "doc" key of cases.json.
//
//   test_bad_inputs --run_test=safetensors/duplicate_tensor_names   # one case
//   test_bad_inputs --list_content                                  # all of them
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <typeinfo>
#include <vector>

#include <unistd.h>

#include <cxxabi.h>

#include "../support/backend_under_test.hpp"
#include <dots1/generation.hpp>
#include <dots1/tokenizer.hpp>

#include "../support/fixtures.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kCasesFile = DOTS1_BAD_INPUTS_CASES;
const std::set<std::string> kKinds = {"config", "safetensors", "checkpoint", "tokenizer", "forward", "generation"};

json& table() {
  static json t = dots1_test::read_json(kCasesFile);
  return t;
}

/// The case's input: `input` as given, or bases[kind] with `patch` merged in (RFC 7386).
json case_input(const json& c) {
  if (c.contains("input")) return c["input"];
  json base = table()["bases"].at(c["kind"].get<std::string>());
  base.merge_patch(c.at("patch"));
  return base;
}

/// Splits off the keys starting with '$' (options of the runner, not part of the input format).
json take_runner_options(json& j) {
  json opts = json::object();
  if (!j.is_object()) return opts;
  for (auto it = j.begin(); it != j.end();) {
    if (!it.key().empty() && it.key()[0] == '$') {
      opts[it.key().substr(1)] = it.value();
      it = j.erase(it);
    } else {
      ++it;
    }
  }
  return opts;
}

/// A fresh folder for one case, removed when the case ends.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("dots1_bad_inputs_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("test runner: cannot write " + p.string());
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

/// header_text with each "\xHH" replaced by the byte HH (the only way to put invalid UTF-8 in a JSON string).
std::string unescape_bytes(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] == 'x') {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 2, 2), nullptr, 16)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

/// The bytes of a safetensors file from its structured description (see the doc key of cases.json).
std::string safetensors_bytes(const json& d) {
  if (d.contains("raw_hex")) return from_hex(d["raw_hex"].get<std::string>());
  std::string header;
  uint64_t data_bytes = 0;
  if (d.contains("header_text")) {
    header = unescape_bytes(d["header_text"].get<std::string>());
  } else {
    const json& h = d.at("header");
    header = h.dump();
    for (const auto& [name, entry] : h.items())  // default data size: the largest end offset
      if (entry.is_object() && entry.contains("data_offsets") && entry["data_offsets"].size() == 2 &&
          entry["data_offsets"][1].is_number_unsigned())
        data_bytes = std::max(data_bytes, entry["data_offsets"][1].get<uint64_t>());
  }
  if (d.contains("data_bytes")) data_bytes = d["data_bytes"].get<uint64_t>();
  if (data_bytes > (1u << 20)) throw std::runtime_error("test runner: data_bytes too large for a test file");
  uint64_t length = header.size();
  if (d.contains("length_field")) {
    const json& l = d["length_field"];
    length = l.is_string() ? std::stoull(l.get<std::string>()) : l.get<uint64_t>();
  }
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((length >> (8 * i)) & 0xff);
  bytes += header;
  bytes.append(static_cast<size_t>(data_bytes), '\0');
  if (d.contains("truncate_to")) bytes.resize(d["truncate_to"].get<size_t>());
  return bytes;
}

// ------------------------------------------------------------------------------------------------ kinds
// Each runs one case's input through the public API; an error propagates to check_case().

void run_config(const json& c) {
  if (c.contains("text")) {  // raw file text: through Dots1Config::load, as a checkpoint would read it
    TempDir dir("config_" + c["name"].get<std::string>());
    write_file(dir.path / "config.json", c["text"].get<std::string>());
    dots1::Dots1Config::load(dir.path / "config.json");
    return;
  }
  dots1::Dots1Config::from_json(case_input(c));
}

void run_safetensors(const json& c) {
  const std::string bytes = safetensors_bytes(case_input(c));
  // A heap copy of exactly the file's size, so that a sanitizer build sees any read past its end.
  auto owned = std::make_shared<std::vector<std::byte>>(bytes.size());
  std::memcpy(owned->data(), bytes.data(), bytes.size());
  const auto f = dots1::SafetensorsFile::parse_buffer(*owned, c["name"].get<std::string>() + ".safetensors", owned);
  for (const auto& [name, t] : f.tensors()) {  // the control file's tensors (float or I64) read end to end
    const size_t n = t.dtype == dots1::DType::I64 ? t.to_int64().size() : t.to_vector<float>().size();
    BOOST_TEST(n == static_cast<size_t>(t.numel()));
  }
}

void run_checkpoint(const json& c) {
  const json in = case_input(c);
  TempDir dir("checkpoint_" + c["name"].get<std::string>());
  if (in.contains("fixture")) {
    const fs::path src = dots1_test::fixtures_dir() / "model" / in["fixture"].get<std::string>();
    fs::copy_file(src / "config.json", dir.path / "config.json");
    // Tensors of the fixture, edited: dropped, then added (zero-filled).
    const auto f = dots1::SafetensorsFile::open(src / "model.safetensors");
    std::vector<dots1::TensorToWrite> tensors;
    const std::set<std::string> drop = in.value("drop", std::set<std::string>{});
    for (const auto& [name, t] : f.tensors()) {
      if (drop.count(name)) continue;
      dots1::TensorToWrite w{name, t.dtype, t.shape, std::vector<std::byte>(t.data, t.data + t.nbytes)};
      tensors.push_back(std::move(w));
    }
    const json add = in.value("add", json::object());  // a named copy: items() of a temporary would dangle
    for (const auto& [name, spec] : add.items()) {
      dots1::TensorToWrite w;
      w.name = name;
      if (!dots1::parse_dtype(spec.at("dtype").get<std::string>(), w.dtype)) throw std::runtime_error("test runner: bad dtype");
      w.shape = spec.at("shape").get<std::vector<int64_t>>();
      int64_t n = 1;
      for (auto s : w.shape) n *= s;
      w.bytes.assign(static_cast<size_t>(n) * dots1::dtype_size(w.dtype), std::byte{0});
      tensors.push_back(std::move(w));
    }
    dots1::write_safetensors(dir.path / "model.safetensors", tensors);
  }
  if (in.contains("config")) {
    if (in["config"].is_boolean() && !in["config"].get<bool>()) {
      fs::remove(dir.path / "config.json");
    } else {
      json cfg = table()["bases"]["config"];
      cfg.merge_patch(in["config"]);
      write_file(dir.path / "config.json", cfg.dump(2));
    }
  }
  const json files = in.value("files", json::object());
  for (const auto& [name, content] : files.items()) {
    if (content.contains("json")) write_file(dir.path / name, content["json"].dump(2));
    else if (content.contains("text")) write_file(dir.path / name, content["text"].get<std::string>());
    else write_file(dir.path / name, safetensors_bytes(content.at("safetensors")));
  }
  if (in.value("load", std::string("checkpoint")) == "model")
    (void)dots1::CpuModel::from_pretrained(dir.path);
  else
    (void)dots1::Checkpoint::open(dir.path);
}

void run_tokenizer(const json& c) {
  const std::string text = c.contains("text") ? c["text"].get<std::string>() : case_input(c).dump();
  const auto tok = dots1::Tokenizer::from_json_text(text, c["name"].get<std::string>() + "/tokenizer.json");
  if (c.contains("encode_hex")) {
    const auto ids = tok.encode(from_hex(c["encode_hex"].get<std::string>()));
    BOOST_TEST(!ids.empty());
  }
}

dots1::CpuModel& forward_model() {  // loaded once for all forward cases
  static dots1::CpuModel m = dots1::CpuModel::from_pretrained(dots1_test::fixtures_dir() / "model" / "gqa_dense2");
  return m;
}

void run_forward(const json& c) {
  json in = case_input(c);
  const json opt = take_runner_options(in);
  dots1::ForwardInput fi = dots1::forward_input_from_json(in);
  auto& model = forward_model();
  const int64_t hidden = model.config().hidden_size;
  if (opt.contains("inputs_embeds")) {
    const json& e = opt["inputs_embeds"];
    if (e.is_number()) fi.inputs_embeds.assign(static_cast<size_t>(fi.batch * fi.seq * hidden), e.get<float>());
    else fi.inputs_embeds = e.get<std::vector<float>>();
  }
  if (opt.value("drop_input_ids", false)) fi.input_ids.clear();
  if (opt.contains("batch")) fi.batch = opt["batch"].get<int64_t>();
  if (opt.contains("position_ids")) fi.position_ids = opt["position_ids"].get<std::vector<int64_t>>();
  if (opt.contains("cache_position")) fi.cache_position = opt["cache_position"].get<std::vector<int64_t>>();
  std::shared_ptr<dots1::CpuModel::Cache> cache;
  if (opt.contains("past")) {  // a cache already holding `past` tokens per row
    const int64_t past = opt["past"].get<int64_t>(), batch = opt.value("cache_batch", fi.batch);
    cache = std::make_shared<dots1::CpuModel::Cache>(model.make_cache(batch));
    std::vector<std::vector<int64_t>> rows(static_cast<size_t>(batch));
    for (auto& r : rows)
      for (int64_t t = 0; t < past; ++t) r.push_back(1 + t);
    try {
      (void)model.forward(dots1::ForwardInput::from_ids(rows), cache);
    } catch (const dots1::Error& e) {  // setup, not the case: must not pass for an expected InputError
      throw std::runtime_error(std::string("test runner: the $past prefill failed: ") + e.what());
    }
    BOOST_TEST_REQUIRE(cache->seq_length() == past);
  }
  const auto out = model.forward(fi, cache);
  BOOST_TEST(out.logits.shape.size() == 3u);
}

void run_generation(const json& c) {
  json in = case_input(c);
  const json opt = take_runner_options(in);
  const auto g = dots1::GenerationConfig::from_json(in);
  (void)dots1::resolve(g, opt.value("prompt_length", int64_t{3}), /*max_position_embeddings=*/64, /*vocab_size=*/96);
}

// ------------------------------------------------------------------------------------------------ checking

std::string demangled(const std::type_info& t) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> p(abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), std::free);
  return status == 0 && p ? p.get() : t.name();
}

/// The exact error type a case names; typeid comparison, so a sibling or the base class does not count.
const std::type_info* error_type(const std::string& name) {
  static const std::map<std::string, const std::type_info*> types = {
      {"ConfigError", &typeid(dots1::ConfigError)},       {"IoError", &typeid(dots1::IoError)},
      {"SafetensorsError", &typeid(dots1::SafetensorsError)}, {"CheckpointError", &typeid(dots1::CheckpointError)},
      {"InputError", &typeid(dots1::InputError)},         {"TokenizerError", &typeid(dots1::TokenizerError)},
      {"GenerationError", &typeid(dots1::GenerationError)}};
  auto it = types.find(name);
  return it == types.end() ? nullptr : it->second;
}

void run_kind(const json& c) {
  const std::string kind = c["kind"].get<std::string>();
  if (kind == "config") run_config(c);
  else if (kind == "safetensors") run_safetensors(c);
  else if (kind == "checkpoint") run_checkpoint(c);
  else if (kind == "tokenizer") run_tokenizer(c);
  else if (kind == "forward") run_forward(c);
  else if (kind == "generation") run_generation(c);
  else BOOST_FAIL("unknown kind '" << kind << "'");
}

void check_case(size_t index) {
  const json& c = table()["cases"][index];
  const bool expect_error = !c["error"].is_null();
  try {
    run_kind(c);
  } catch (const dots1::Error& e) {
    const std::string what = e.what();
    if (!expect_error) BOOST_FAIL("control case raised " << demangled(typeid(e)) << ": " << what);
    const std::string want = c["error"].get<std::string>();
    BOOST_TEST((typeid(e) == *error_type(want)), "expected dots1::" << want << ", got " << demangled(typeid(e)) << ": " << what);
    for (const auto& w : c["words"]) {
      const auto word = w.get<std::string>();
      BOOST_TEST(what.find(word) != std::string::npos, "message lacks '" << word << "': " << what);
    }
    if (c["kind"] == "safetensors")  // a file error names the file
      BOOST_TEST(what.find(c["name"].get<std::string>() + ".safetensors") != std::string::npos, "message lacks the file name: " << what);
    if (c.contains("field")) {
      const auto* ce = dynamic_cast<const dots1::ConfigError*>(&e);
      BOOST_TEST((ce && ce->field() == c["field"].get<std::string>()),
                 "expected field '" << c["field"].get<std::string>() << "', got '" << (ce ? ce->field() : "-") << "'");
    }
    return;
  } catch (const std::exception& e) {  // a non-dots1 exception is a bug: users catch dots1::Error
    BOOST_FAIL("raised " << demangled(typeid(e)) << " instead of a dots1 error: " << e.what());
  }
  if (expect_error) BOOST_FAIL("no error (expected dots1::" << c["error"].get<std::string>() << ")");
}

/// The table itself: parseable, unique identifier-like names per kind, known kinds and error types, words
/// for every error case, and enough cases of each kind.
void check_table() {
  const json& cases = table().at("cases");
  BOOST_TEST_REQUIRE(cases.is_array());
  BOOST_TEST(cases.size() >= 40u);
  std::set<std::string> names;
  std::map<std::string, int> per_kind;
  for (const auto& c : cases) {
    const std::string name = c.value("name", std::string()), kind = c.value("kind", std::string());
    BOOST_TEST_CONTEXT("case '" << kind << "/" << name << "'") {
      BOOST_TEST((!name.empty() && name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos));
      BOOST_TEST(names.insert(kind + "/" + name).second, "duplicate name");
      BOOST_TEST(kKinds.count(kind) == 1u, "unknown kind");
      BOOST_TEST((c.contains("input") || c.contains("patch") || c.contains("text")), "no input");
      BOOST_TEST((c.contains("error") && (c["error"].is_null() || error_type(c["error"].get<std::string>()))), "unknown error type");
      BOOST_TEST((c.contains("words") && c["words"].is_array()));
      if (c.contains("error") && !c["error"].is_null()) BOOST_TEST(!c["words"].empty(), "an error case needs words to check");
      ++per_kind[kind];
    }
  }
  for (const auto& k : kKinds) BOOST_TEST(per_kind[k] >= 5, "only " << per_kind[k] << " cases of kind " << k);
}

bool register_cases() {
  auto& master = boost::unit_test::framework::master_test_suite();
  master.p_name.value = "bad_inputs";
  master.add(BOOST_TEST_CASE_NAME(&check_table, "table_is_well_formed"));
  size_t count = 0;
  try {
    std::map<std::string, boost::unit_test::test_suite*> suites;
    const json& cases = table().at("cases");
    for (size_t i = 0; i < cases.size(); ++i) {
      const std::string kind = cases[i].value("kind", std::string("unknown")), name = cases[i].value("name", std::string("unnamed"));
      auto& suite = suites[kind];
      if (!suite) {
        suite = BOOST_TEST_SUITE(kind);
        master.add(suite);
      }
      suite->add(boost::unit_test::make_test_case([i] { check_case(i); }, name, __FILE__, __LINE__));
      ++count;
    }
  } catch (const std::exception& e) {  // an unreadable table fails loudly (table_is_well_formed reports it too)
    std::fprintf(stderr, "test_bad_inputs: cannot read %s: %s\n", kCasesFile.c_str(), e.what());
    return false;
  }
  return count > 0;
}

}  // namespace

int main(int argc, char* argv[]) { return boost::unit_test::unit_test_main(&register_cases, argc, argv); }
