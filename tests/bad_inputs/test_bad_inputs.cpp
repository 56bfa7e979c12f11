// The table of bad inputs (tests/bad_inputs/cases.json): each entry is one Boost.Test case, in a suite named
// after its kind, that passes only if the input raises exactly the named dots1 error type and the message
// contains every required word. Control entries (error null) must load or run without an error, so that a
// broken base cannot make the other cases pass for the wrong reason. See the "doc" key of cases.json.
//
// Bounded: every case has a time limit (Boost.Test's timeout, default 60 s), so a hang (a FIFO read in blocking
// mode, a regex that backtracks forever) fails the case instead of stalling the suite; the `cli` cases run the
// dots1 tool as a child process with a wall-clock limit and an address-space limit (setrlimit RLIMIT_AS, 4 GiB
// unless the case says otherwise; not under AddressSanitizer, which reserves terabytes of shadow memory), and
// CTest runs this program under an address-space limit too (tests/bad_inputs/CMakeLists.txt).
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

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <thread>

#include <cxxabi.h>

#include "../support/backend_under_test.hpp"
#include <dots1/generation.hpp>
#include <dots1/generation/chat_session.hpp>
#include <dots1/instrument/report.hpp>
#include <dots1/base/json_input.hpp>
#include <dots1/tokenizer.hpp>

#include "../support/fixtures.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kCasesFile = DOTS1_BAD_INPUTS_CASES;
const std::set<std::string> kKinds = {"config", "safetensors", "checkpoint", "tokenizer", "forward", "generation",
                                      "trace",  "file",        "output",     "cli"};

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

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

/// A text from its description: a string, or a list of parts, each a string or {"repeat": s, "times": n}
/// (how the table writes a 100 MB value or a 100000-deep nesting without holding it).
std::string expand_text(const json& t) {
  if (t.is_string()) return t.get<std::string>();
  std::string out;
  for (const auto& part : t) {
    if (part.is_string()) {
      out += part.get<std::string>();
    } else {
      const std::string unit = part.at("repeat").get<std::string>();
      const auto times = part.at("times").get<size_t>();
      if (unit.size() * times > (size_t(256) << 20)) throw std::runtime_error("test runner: a generated text over 256 MB");
      out.reserve(out.size() + unit.size() * times);
      for (size_t i = 0; i < times; ++i) out += unit;
    }
  }
  return out;
}

/// The case with every {"$repeat": s, "times": n} value replaced by the string (a huge value in a patch).
json expand_generated(const json& j) {
  if (j.is_object()) {
    if (j.size() == 2 && j.contains("$repeat") && j.contains("times"))
      return expand_text(json::array({json{{"repeat", j["$repeat"]}, {"times", j["times"]}}}));
    json out = json::object();
    for (const auto& [k, v] : j.items()) out[k] = expand_generated(v);
    return out;
  }
  if (j.is_array()) {
    json out = json::array();
    for (const auto& v : j) out.push_back(expand_generated(v));
    return out;
  }
  return j;
}

/// {dir} (the case's folder), {model} (examples/models/kjv-tiny), {fixtures}, {shared} in a string.
std::string substitute(std::string s, const fs::path& dir) {
  const std::pair<std::string, std::string> keys[] = {
      {"{dir}", dir.string()},
      {"{model}", (dots1_test::fixtures_dir() / ".." / ".." / "examples" / "models" / "kjv-tiny").lexically_normal().string()},
      {"{fixtures}", dots1_test::fixtures_dir().string()},
      {"{shared}", dots1_test::shared_dir().string()}};
  for (const auto& [k, v] : keys)
    for (size_t at = s.find(k); at != std::string::npos; at = s.find(k, at + v.size())) s.replace(at, k.size(), v);
  return s;
}

/// Sets the case's environment ("env": {name: value}) for its lifetime, restoring what was there.
struct ScopedEnv {
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  explicit ScopedEnv(const json& env) {
    for (const auto& [k, v] : env.items()) {
      const char* old = std::getenv(k.c_str());
      saved.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
      ::setenv(k.c_str(), v.get<std::string>().c_str(), 1);
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }
};

/// The bytes of a safetensors file from its structured description (see the doc key of cases.json).
std::string safetensors_bytes(const json& d) {
  if (d.contains("raw_hex")) return from_hex(d["raw_hex"].get<std::string>());
  std::string header;
  uint64_t data_bytes = 0;
  if (d.contains("header_text")) {
    header = unescape_bytes(expand_text(d["header_text"]));
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
    write_file(dir.path / "config.json", expand_text(c["text"]));
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
    else if (content.contains("text")) write_file(dir.path / name, expand_text(content["text"]));
    else write_file(dir.path / name, safetensors_bytes(content.at("safetensors")));
  }
  if (in.value("load", std::string("checkpoint")) == "model")
    (void)dots1::CpuModel::from_pretrained(dir.path);
  else
    (void)dots1::Checkpoint::open(dir.path);
}

void run_tokenizer(const json& c) {
  const std::string text = c.contains("text") ? expand_text(c["text"]) : case_input(c).dump();
  const json config = c.value("tokenizer_config", json());  // a tokenizer_config.json beside it
  const auto tok = dots1::Tokenizer::from_json_text(text, c["name"].get<std::string>() + "/tokenizer.json", config.is_null() ? nullptr : &config,
                                                    c["name"].get<std::string>() + "/tokenizer_config.json");
  if (c.contains("encode_hex")) {
    const auto ids = tok.encode(from_hex(c["encode_hex"].get<std::string>()));
    BOOST_TEST(!ids.empty());
  }
  if (c.contains("encode_text")) (void)tok.encode(expand_text(c["encode_text"]));
  if (c.value("chat", false)) dots1::ChatFormat::for_tokenizer(tok).require_tokens(tok);  // what a ChatSession checks first
}

dots1::CpuModel& forward_model() {  // loaded once for all forward cases
  static dots1::CpuModel m = dots1::CpuModel::from_pretrained(dots1_test::fixtures_dir() / "model" / "gqa_dense2");
  return m;
}

void run_forward(const json& c) {
  // "text": the input file's text, parsed as `dots1 forward` parses it (depth limit, NUL bytes).
  json in = c.contains("text") ? dots1::io::parse_json(expand_text(c["text"]), [](const std::string& p) -> void {
    throw dots1::InputError("forward input: not valid JSON: " + p);
  })
                               : case_input(c);
  const json opt = take_runner_options(in);
  dots1::ForwardInput fi = dots1::forward_input_from_json(in);
  fi.output_attentions = opt.value("output_attentions", false);
  fi.output_hidden_states = opt.value("output_hidden_states", false);
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
  if (c.contains("text")) {  // a generation_config.json file, as for_checkpoint reads it
    TempDir dir("generation_" + c["name"].get<std::string>());
    write_file(dir.path / "generation_config.json", expand_text(c["text"]));
    (void)dots1::GenerationConfig::load(dir.path / "generation_config.json");
    return;
  }
  json in = case_input(c);
  const json opt = take_runner_options(in);
  const auto g = dots1::GenerationConfig::from_json(in);
  (void)dots1::resolve(g, opt.value("prompt_length", int64_t{3}), /*max_position_embeddings=*/64, /*vocab_size=*/96);
}

// ---- traces: a trace file from a description ({tensors: {name: {dtype, shape, values | fill}}, metadata,
// options, compare}), merged over bases.trace, read with read_trace and rendered with render_report.

dots1::TensorToWrite tensor_from(const std::string& name, const json& spec) {
  dots1::TensorToWrite t;
  t.name = name;
  if (!dots1::parse_dtype(spec.at("dtype").get<std::string>(), t.dtype)) throw std::runtime_error("test runner: bad dtype in " + name);
  t.shape = spec.at("shape").get<std::vector<int64_t>>();
  int64_t n = 1;
  for (auto d : t.shape) n *= d;
  if (n < 0 || n > (int64_t(1) << 26)) throw std::runtime_error("test runner: tensor " + name + " too large for a test file");
  std::vector<double> values = spec.contains("values") ? spec["values"].get<std::vector<double>>() : std::vector<double>(static_cast<size_t>(n), spec.value("fill", 0.0));
  if (static_cast<int64_t>(values.size()) != n) throw std::runtime_error("test runner: tensor " + name + " has the wrong number of values");
  t.bytes.resize(static_cast<size_t>(n) * dots1::dtype_size(t.dtype));
  for (int64_t i = 0; i < n; ++i) {
    const double v = values[static_cast<size_t>(i)];
    std::byte* at = t.bytes.data() + i * static_cast<int64_t>(dots1::dtype_size(t.dtype));
    switch (t.dtype) {
      case dots1::DType::F32: { const float x = static_cast<float>(v); std::memcpy(at, &x, 4); break; }
      case dots1::DType::F64: std::memcpy(at, &v, 8); break;
      case dots1::DType::I64: { const int64_t x = static_cast<int64_t>(v); std::memcpy(at, &x, 8); break; }
      case dots1::DType::I32: { const int32_t x = static_cast<int32_t>(v); std::memcpy(at, &x, 4); break; }
      case dots1::DType::U8: { const uint8_t x = static_cast<uint8_t>(v); std::memcpy(at, &x, 1); break; }
      default: throw std::runtime_error("test runner: dtype not supported in trace descriptions");
    }
  }
  return t;
}

/// The bytes of a trace file: its tensors (null entries dropped) and metadata (strings as they are, {"$text":
/// parts} expanded, other JSON values dumped).
std::vector<std::byte> trace_bytes(const json& d) {
  std::vector<dots1::TensorToWrite> tensors;
  for (const auto& [name, spec] : d.at("tensors").items())
    if (!spec.is_null()) tensors.push_back(tensor_from(name, spec));
  std::map<std::string, std::string> meta;
  const json metadata = d.value("metadata", json::object());  // named: items() of a temporary would dangle
  for (const auto& [k, v] : metadata.items())
    if (!v.is_null()) meta[k] = v.is_string() ? v.get<std::string>() : v.is_object() && v.contains("$text") ? expand_text(v["$text"]) : v.dump();
  return dots1::serialize_safetensors(tensors, meta);
}

json trace_description(const json& c) {
  json d = table()["bases"].at("trace");
  d.merge_patch(c.value("patch", json::object()));
  return d;
}

dots1::ReportOptions report_options(const json& o) {
  dots1::ReportOptions ro;
  ro.row = o.value("row", int64_t{0});
  ro.max_tokens = o.value("max_tokens", int64_t{256});
  const json attention = o.value("attention", json::array());
  for (const auto& p : attention) ro.attention.emplace_back(p.at(0).get<int64_t>(), p.at(1).get<int64_t>());
  ro.expert_layers = o.value("layers", std::vector<int64_t>{});
  return ro;
}

void write_bytes(const fs::path& p, const std::vector<std::byte>& b) {
  write_file(p, std::string(reinterpret_cast<const char*>(b.data()), b.size()));
}

void run_trace(const json& c) {
  TempDir dir("trace_" + c["name"].get<std::string>());
  const json d = trace_description(c);
  const fs::path a = dir.path / "a.safetensors";
  if (c.contains("safetensors")) write_file(a, safetensors_bytes(c["safetensors"]));  // a raw file instead
  else write_bytes(a, trace_bytes(d));
  const auto trace = dots1::read_trace(a);
  const auto options = report_options(d.value("options", json::object()));
  if (d.contains("compare")) {
    json db = d;
    db.merge_patch(d["compare"]);
    write_bytes(dir.path / "b.safetensors", trace_bytes(db));
    BOOST_TEST(!dots1::render_comparison(trace, dots1::read_trace(dir.path / "b.safetensors"), options).empty());
  } else {
    BOOST_TEST(!dots1::render_report(trace, options).empty());
  }
}

// ---- files that are not regular files, given to every reader: {entry, make, path, size, target}.

/// Makes the object `make` at `p`: fifo, directory, devzero / devnull (symbolic links to them), socket, missing,
/// sparse (a file of `size` bytes with no data written), dangling (a link to nothing).
void make_object(const std::string& make, const fs::path& p, const json& c) {
  fs::remove_all(p);
  if (make == "fifo") {
    if (::mkfifo(p.c_str(), 0644) != 0) throw std::runtime_error("test runner: mkfifo failed");
  } else if (make == "directory") {
    fs::create_directories(p);
  } else if (make == "devzero" || make == "devnull") {
    fs::create_symlink(make == "devzero" ? "/dev/zero" : "/dev/null", p);
  } else if (make == "socket") {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (p.string().size() >= sizeof addr.sun_path) throw std::runtime_error("test runner: socket path too long");
    std::strcpy(addr.sun_path, p.c_str());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("test runner: bind failed");
    ::close(fd);
  } else if (make == "sparse") {  // optionally starting with the bytes prefix_hex
    const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ::ftruncate(fd, c.at("size").get<off_t>()) != 0) throw std::runtime_error("test runner: sparse file failed");
    const std::string prefix = from_hex(c.value("prefix_hex", std::string()));
    if (::pwrite(fd, prefix.data(), prefix.size(), 0) != static_cast<ssize_t>(prefix.size())) throw std::runtime_error("test runner: pwrite failed");
    ::close(fd);
  } else if (make == "dangling") {
    fs::create_symlink(p.parent_path() / "nowhere", p);
  } else if (make == "chardev_null" || make == "chardev_full") {
    // As root a node of our own (a regression then replaces it, never /dev/null); otherwise, or where root may
    // not make nodes, a link to the real device (a regression replaces the link, and a non-root process
    // cannot replace the device).
    const bool null = make == "chardev_null";
    if (::geteuid() != 0 || ::mknod(p.c_str(), S_IFCHR | 0666, ::makedev(1, null ? 3 : 7)) != 0)
      fs::create_symlink(null ? "/dev/null" : "/dev/full", p);
  } else if (make != "missing") {
    throw std::runtime_error("test runner: unknown make '" + make + "'");
  }
}

void run_file(const json& c) {
  TempDir dir("file_" + c["name"].get<std::string>());
  const std::string entry = c.at("entry").get<std::string>(), make = c.at("make").get<std::string>();
  auto valid_config = [&] { write_file(dir.path / "config.json", table()["bases"]["config"].dump()); };
  auto valid_tokenizer = [&] { write_file(dir.path / "tokenizer.json", table()["bases"]["tokenizer"].dump()); };
  static const std::map<std::string, std::string> default_path = {
      {"config", "config.json"},       {"tokenizer_file", "tokenizer.json"}, {"tokenizer_folder", "tokenizer_config.json"},
      {"generation_config", "generation_config.json"}, {"safetensors", "model.safetensors"}, {"checkpoint", "model.safetensors"},
      {"trace", "trace.safetensors"},  {"forward_input", "in.json"}};
  const fs::path p = dir.path / c.value("path", default_path.at(entry));
  if (entry == "checkpoint" || entry == "tokenizer_folder") {  // a valid folder around the object
    if (entry == "checkpoint") valid_config();
    else valid_tokenizer();
  }
  make_object(make, p, c);
  if (entry == "config") (void)dots1::Dots1Config::load(p);
  else if (entry == "tokenizer_file") (void)dots1::Tokenizer::from_file(p);
  else if (entry == "tokenizer_folder") (void)dots1::Tokenizer::from_folder(dir.path);
  else if (entry == "generation_config") (void)dots1::GenerationConfig::load(p);
  else if (entry == "safetensors") (void)dots1::SafetensorsFile::open(p);
  else if (entry == "checkpoint") (void)dots1::Checkpoint::open(dir.path);
  else if (entry == "trace") (void)dots1::read_trace(p);
  else if (entry == "forward_input")
    (void)dots1::forward_input_from_json(dots1::io::read_json_file(p, "forward input file", dots1::limits::kMaxForwardInputBytes,
                                                                   [](const std::string& m) { throw dots1::InputError(m); }));
  else throw std::runtime_error("test runner: unknown entry '" + entry + "'");
}

// ---- outputs: {write, target}; afterwards the target must still be what it was (a device node, a link, a
// folder), and no temporary file may be left behind.

/// A character device for `name` (null or full): as root a node of our own in the case's folder (so that a
/// regression replaces that node, never /dev/null), or where root may not make nodes (a container without
/// CAP_MKNOD) a symbolic link to the device in that folder (a regression then replaces the link); otherwise
/// /dev/<name> itself, which a non-root process cannot replace.
fs::path char_device(const std::string& name, const fs::path& dir) {
  if (::geteuid() != 0) return fs::path("/dev") / name;
  const fs::path node = dir / name;
  if (::mknod(node.c_str(), S_IFCHR | 0666, ::makedev(1, name == "null" ? 3 : 7)) != 0) fs::create_symlink(fs::path("/dev") / name, node);
  return node;
}

void run_output(const json& c) {
  TempDir dir("output_" + c["name"].get<std::string>());
  const std::string what = c.at("write").get<std::string>(), target = c.at("target").get<std::string>();
  fs::path out = dir.path / "out.file";
  int reader = -1;  // the read end of a FIFO with a reader (opened first, drained after the write)
  size_t read_bytes = 0;
  if (target == "devnull" || target == "devfull") {
    out = char_device(target == "devnull" ? "null" : "full", dir.path);
  } else if (target == "readonly_dir") {
    // Root ignores permission bits, so as root the read-only folder is /sys (creating a file there fails).
    if (::geteuid() == 0) {
      out = "/sys/dots1_bad_inputs_out.file";
    } else {
      fs::create_directories(dir.path / "ro");
      fs::permissions(dir.path / "ro", fs::perms::owner_read | fs::perms::owner_exec);
      out = dir.path / "ro" / "out.file";
    }
  } else if (target == "directory") {
    fs::create_directories(out);
  } else if (target == "symlink" || target == "dangling_symlink") {
    if (target == "symlink") write_file(dir.path / "real.file", "old");
    fs::create_symlink(target == "symlink" ? "real.file" : "new.file", out);
  } else if (target == "fifo_no_reader" || target == "fifo_with_reader") {
    make_object("fifo", out, c);
    if (target == "fifo_with_reader") reader = ::open(out.c_str(), O_RDONLY | O_NONBLOCK);  // the outputs fit the pipe's buffer
  } else if (target == "socket") {
    make_object("socket", out, c);
  } else if (target == "existing_file") {
    write_file(out, "old");
    fs::permissions(out, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  } else if (target != "new_file") {
    throw std::runtime_error("test runner: unknown target '" + target + "'");
  }
  struct stat before {};
  const bool existed = ::lstat(out.c_str(), &before) == 0;
  size_t expected_bytes = 0;
  auto check_after = [&] {
    struct stat after {};
    if (existed && !S_ISREG(before.st_mode)) {  // a node, link or folder stays what it was
      BOOST_TEST_REQUIRE(::lstat(out.c_str(), &after) == 0);
      BOOST_TEST(((after.st_mode & S_IFMT) == (before.st_mode & S_IFMT)), out << " changed type");
    }
    if (target == "symlink") BOOST_TEST(fs::file_size(dir.path / "real.file") == expected_bytes);
    if (target == "dangling_symlink") BOOST_TEST(fs::file_size(dir.path / "new.file") == expected_bytes);
    if (target == "existing_file") {
      BOOST_TEST(fs::file_size(out) == expected_bytes);
      BOOST_TEST(((fs::status(out).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read)),
                 "the replaced file's permissions were not kept");
    }
    for (const auto& e : fs::recursive_directory_iterator(dir.path))
      BOOST_TEST(e.path().filename().string().find(".tmp.") == std::string::npos, "temporary file left: " << e.path());
  };
  try {
    if (what == "text") {
      const std::string text(1000, 'x');
      expected_bytes = text.size();
      dots1::io::write_file_atomically(out, text);
    } else if (what == "safetensors") {
      const std::vector<float> v(250, 1.0f);
      const std::vector<dots1::TensorToWrite> t{dots1::TensorToWrite::from<float>("a", {250}, v)};
      expected_bytes = dots1::serialize_safetensors(t).size();
      dots1::write_safetensors(out, t);
    } else if (what == "config") {
      const auto cfg = dots1::Dots1Config::from_json(table()["bases"]["config"]);
      expected_bytes = cfg.to_json().dump(2).size() + 1;
      cfg.save(out);
    } else {
      throw std::runtime_error("test runner: unknown write '" + what + "'");
    }
  } catch (...) {
    if (reader >= 0) ::close(reader);
    check_after();
    throw;
  }
  if (reader >= 0) {
    char buf[4096];
    for (ssize_t n; (n = ::read(reader, buf, sizeof buf)) > 0;) read_bytes += static_cast<size_t>(n);
    ::close(reader);
    BOOST_TEST(read_bytes == expected_bytes);
  }
  check_after();
}

// ---- the dots1 tool as a child process: {args, stdin, files, env, timeout, address_space, stdout_to}.

struct ToolRun {
  int exit_code = -1;
  bool timed_out = false;
  std::string err, out;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

ToolRun run_tool(const std::vector<std::string>& args, const fs::path& dir, const fs::path& stdin_file, const fs::path& stdout_file,
                 const json& env, double timeout_s, uint64_t address_space) {
#ifdef DOTS1_TOOL_PATH
  const fs::path err_file = dir / "stderr.txt";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int in = ::open(stdin_file.c_str(), O_RDONLY);
    const int out = ::open(stdout_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) ::_exit(127);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    if (!kAddressSanitizer && address_space > 0) {
      struct rlimit rl {address_space, address_space};
      ::setrlimit(RLIMIT_AS, &rl);
    }
    ::setenv("DOTS1_ERROR_TYPES", "1", 1);
    ::setenv("OMP_NUM_THREADS", "2", 0);
    for (const auto& [k, v] : env.items()) ::setenv(k.c_str(), v.get<std::string>().c_str(), 1);
    std::vector<char*> argv{const_cast<char*>(DOTS1_TOOL_PATH)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(DOTS1_TOOL_PATH, argv.data());
    ::_exit(127);
  }
  ToolRun r;
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  while (true) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  r.err = slurp(err_file);
  if (stdout_file.filename() == "stdout.txt") r.out = slurp(stdout_file);  // not a device the case wrote to
  return r;
#else
  (void)args, (void)dir, (void)stdin_file, (void)stdout_file, (void)env, (void)timeout_s, (void)address_space;
  throw std::runtime_error("test runner: this build has no dots1 tool (DOTS1_BUILD_EXAMPLES=OFF)");
#endif
}

/// The files a cli or checkpoint case writes first: name -> {text} | {json} | {safetensors} | {trace: patch}
/// | {config: patch over the kjv-tiny config} | {symlink: target} | {make: fifo | directory | ...}.
void write_case_files(const json& files, const fs::path& dir) {
  for (const auto& [name, content] : files.items()) {
    const fs::path p = dir / name;
    fs::create_directories(p.parent_path());
    if (content.contains("json")) write_file(p, content["json"].dump());
    else if (content.contains("text")) write_file(p, substitute(expand_text(content["text"]), dir));
    else if (content.contains("safetensors")) write_file(p, safetensors_bytes(content["safetensors"]));
    else if (content.contains("trace")) {
      json d = table()["bases"]["trace"];
      d.merge_patch(content["trace"]);
      write_bytes(p, trace_bytes(d));
    } else if (content.contains("config")) {
      json cfg = dots1_test::read_json(fs::path(substitute("{model}", dir)) / "config.json");
      cfg.merge_patch(content["config"]);
      write_file(p, cfg.dump());
    } else if (content.contains("symlink")) {
      fs::create_symlink(substitute(content["symlink"].get<std::string>(), dir), p);
    } else {
      make_object(content.at("make").get<std::string>(), p, content);
    }
  }
}

void run_cli(const json& c) {
  TempDir dir("cli_" + c["name"].get<std::string>());
  write_case_files(c.value("files", json::object()), dir.path);
  std::vector<std::string> args;
  for (const auto& a : c.at("args")) args.push_back(substitute(expand_text(a), dir.path));
  write_file(dir.path / "stdin.txt", c.contains("stdin") ? expand_text(c["stdin"]) : std::string());
  fs::path stdout_file = dir.path / "stdout.txt";
  if (c.value("stdout_to", std::string()) == "devfull") {
    stdout_file = char_device("full", dir.path);
  }
  const double timeout = c.value("timeout", 60.0) * (kAddressSanitizer ? 3 : 1);
  const ToolRun r = run_tool(args, dir.path, dir.path / "stdin.txt", stdout_file, c.value("env", json::object()), timeout,
                             c.value("address_space", uint64_t{4} << 30));
  BOOST_TEST_INFO("dots1 " << c["args"].dump() << "\nexit " << r.exit_code << "\nstderr: " << dots1::shown(r.err, 2000));
  BOOST_TEST_REQUIRE(!r.timed_out, "dots1 ran past its " << timeout << " s limit");
  BOOST_TEST_REQUIRE(r.exit_code < 128, "dots1 was killed by signal " << r.exit_code - 128);
  BOOST_TEST(r.err.find("std::bad_alloc") == std::string::npos, "an allocation failed instead of a preflight");
  for (const auto& w : c.value("stdout_words", json::array())) BOOST_TEST(r.out.find(w.get<std::string>()) != std::string::npos, "stdout lacks " << w);
  for (const auto& name : c.value("still_char_devices", json::array())) {  // outputs written in place, not replaced
    struct stat st {};
    BOOST_TEST((::stat((dir.path / name.get<std::string>()).c_str(), &st) == 0 && S_ISCHR(st.st_mode)), name << " is no longer a character device");
    BOOST_TEST((::lstat((dir.path / name.get<std::string>()).c_str(), &st) == 0 && (S_ISCHR(st.st_mode) || S_ISLNK(st.st_mode))), name << " was replaced");
  }
  if (c["error"].is_null()) {
    BOOST_TEST(r.exit_code == 0, "a control case failed: " << r.err);
    return;
  }
  const std::string want = c["error"].get<std::string>();
  static const std::regex typed(R"(dots1: error \[(\w+)\]: )");
  std::smatch m;
  if (want == "UsageError") {  // CLI11's own message and exit code for a malformed command line
    BOOST_TEST((r.exit_code != 0 && r.exit_code != 1), "expected a usage error, got exit " << r.exit_code);
  } else {
    BOOST_TEST(r.exit_code == 1);
    BOOST_TEST_REQUIRE(std::regex_search(r.err, m, typed), "no dots1 error line on stderr");
    BOOST_TEST(m[1].str() == want, "expected dots1::" << want << ", got " << m[1].str());
  }
  for (const auto& w : c["words"]) BOOST_TEST(r.err.find(substitute(w.get<std::string>(), dir.path)) != std::string::npos, "stderr lacks '" << w << "'");
  if (c.contains("max_message")) BOOST_TEST(r.err.size() <= c["max_message"].get<size_t>(), "stderr is " << r.err.size() << " bytes");
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
      {"GenerationError", &typeid(dots1::GenerationError)}, {"ResourceError", &typeid(dots1::ResourceError)},
      {"UsageError", &typeid(void)}};  // cli only: CLI11's own refusal of a command line
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
  else if (kind == "trace") run_trace(c);
  else if (kind == "file") run_file(c);
  else if (kind == "output") run_output(c);
  else BOOST_FAIL("unknown kind '" << kind << "'");
}

void check_case(size_t index) {
  const json c = expand_generated(table()["cases"][index]);
  if (c["kind"] == "cli") return run_cli(c);  // the tool's exit code and stderr instead of an exception
  const bool expect_error = !c["error"].is_null();
  const ScopedEnv env(c.value("env", json::object()));
  try {
    run_kind(c);
  } catch (const dots1::Error& e) {
    const std::string what = e.what();
    if (!expect_error) BOOST_FAIL("control case raised " << demangled(typeid(e)) << ": " << what);
    const std::string want = c["error"].get<std::string>();
    BOOST_TEST((typeid(e) == *error_type(want)), "expected dots1::" << want << ", got " << demangled(typeid(e)) << ": " << what);
    for (const auto& w : c["words"]) {
      const auto word = w.get<std::string>();
      BOOST_TEST(what.find(word) != std::string::npos, "message lacks '" << word << "': " << dots1::shown(what, 2000));
    }
    if (c.contains("max_message"))  // a huge value in the input must not be repeated whole
      BOOST_TEST(what.size() <= c["max_message"].get<size_t>(), "the message is " << what.size() << " bytes: " << dots1::shown(what, 400));
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
      BOOST_TEST((c.contains("input") || c.contains("patch") || c.contains("text") || c.contains("args") || c.contains("entry") ||
                  c.contains("write") || c.contains("safetensors")),
                 "no input");
      if (c.value("error", json()) == "UsageError") BOOST_TEST(kind == "cli", "UsageError is for cli cases only");
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
#ifndef DOTS1_TOOL_PATH
      if (kind == "cli") {  // no tool in this build (DOTS1_BUILD_EXAMPLES=OFF): said once, not run
        static bool said = false;
        if (!said) std::fprintf(stderr, "test_bad_inputs: the cli cases are not run: this build has no dots1 tool\n");
        said = true;
        continue;
      }
#endif
      auto& suite = suites[kind];
      if (!suite) {
        suite = BOOST_TEST_SUITE(kind);
        master.add(suite);
      }
      // A time limit per case: a hang fails the case (SIGALRM) instead of stalling the suite.
      const unsigned timeout = cases[i].value("timeout", 60u) * (kAddressSanitizer ? 4u : 1u) + 30u;
      suite->add(boost::unit_test::make_test_case([i] { check_case(i); }, name, __FILE__, __LINE__), 0, timeout);
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
