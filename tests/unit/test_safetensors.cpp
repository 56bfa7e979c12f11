// safetensors reader/writer and the checkpoint loader: round trips, dtype conversion, fused experts, and
// a typed error naming the file and tensor for every malformed case.
#define BOOST_TEST_MODULE safetensors
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "../support/backend_under_test.hpp"

#include "../support/fixtures.hpp"

namespace fs = std::filesystem;
using namespace dots1;

namespace {

fs::path temp(const std::string& name) { return fs::temp_directory_path() / ("dots1_test_" + name); }

std::vector<std::byte> image(const std::string& header, size_t data_bytes) {
  std::vector<std::byte> out(8 + header.size() + data_bytes);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = std::byte((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

void expect_bad(const std::vector<std::byte>& bytes, const std::string& words) {
  try {
    SafetensorsFile::parse_buffer(bytes, "bad.safetensors");
    BOOST_ERROR("no SafetensorsError (expected '" << words << "')");
  } catch (const SafetensorsError& e) {
    BOOST_TEST(std::string(e.what()).find(words) != std::string::npos, "message '" << e.what() << "' lacks '" << words << "'");
    BOOST_TEST(std::string(e.what()).find("bad.safetensors") != std::string::npos);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(write_then_read_round_trip_with_metadata) {
  std::vector<float> a{1, 2, 3, 4, 5, 6};
  std::vector<int64_t> b{-1, 7};
  const auto path = temp("rt.safetensors");
  write_safetensors(path, {TensorToWrite::from<float>("a", {2, 3}, a), TensorToWrite::from<int64_t>("b", {2}, b)}, {{"format", "pt"}});
  const auto f = SafetensorsFile::open(path);
  BOOST_TEST(f.metadata().at("format") == "pt");
  BOOST_TEST(f.at("a").shape == (std::vector<int64_t>{2, 3}));
  BOOST_TEST(f.at("a").to_vector<float>() == a);
  BOOST_TEST(f.at("b").to_int64() == b);
  BOOST_TEST(!fs::exists(path.string() + ".tmp." + std::to_string(::getpid())));
  fs::remove(path);
}

BOOST_AUTO_TEST_CASE(bf16_and_f16_convert_exactly) {
  BOOST_TEST(bf16_to_float(0x3f80) == 1.0f);
  BOOST_TEST(bf16_to_float(0xc040) == -3.0f);
  BOOST_TEST(float_to_bf16(1.0f) == 0x3f80);
  BOOST_TEST(float_to_bf16(1.00390625f) == 0x3f80);  // tie rounds to even
  BOOST_TEST(float_to_bf16(1.01171875f) == 0x3f82);  // tie rounds to even (up)
  BOOST_TEST(f16_to_float(0x3c00) == 1.0f);
  BOOST_TEST(f16_to_float(0xc000) == -2.0f);
  BOOST_TEST(f16_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  BOOST_TEST(std::isinf(f16_to_float(0x7c00)));
}

BOOST_AUTO_TEST_CASE(malformed_files_raise_typed_errors) {
  expect_bad(std::vector<std::byte>(5), "too short");
  auto huge = image("{}", 0);
  huge[0] = std::byte(0xff);
  expect_bad(huge, "exceeds the file");
  expect_bad(image("{not json", 0), "malformed JSON");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), "duplicate");
  expect_bad(image(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype 'Q4'");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 12 bytes");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8), "beyond the data section");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "overlap");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "non-negative");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "begin");
  expect_bad(image("{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "malformed JSON");
}

BOOST_AUTO_TEST_CASE(checkpoint_errors_name_the_file_and_tensor) {
  const auto src = dots1_test::fixtures_dir() / "model" / "rope_llama3";
  const auto dir = temp("ck");
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(src / "config.json", dir / "config.json");
  // Drop one tensor, change one shape, add one unexpected tensor, one at a time.
  const auto f = SafetensorsFile::open(src / "model.safetensors");
  auto rewrite = [&](const std::string& drop, const std::string& reshape, const std::string& extra) {
    std::vector<TensorToWrite> ts;
    for (const auto& [name, t] : f.tensors()) {
      if (name == drop) continue;
      auto v = t.to_vector<float>();
      auto shape = t.shape;
      if (name == reshape) shape = {t.numel()};
      ts.push_back(TensorToWrite::from<float>(name, shape, v));
    }
    if (!extra.empty()) {
      std::vector<float> z(4);
      ts.push_back(TensorToWrite::from<float>(extra, {4}, z));
    }
    write_safetensors(dir / "model.safetensors", ts);
  };
  auto expect = [&](const std::string& words) {
    try {
      CpuModel::from_pretrained(dir);
      BOOST_ERROR("no CheckpointError (expected '" << words << "')");
    } catch (const CheckpointError& e) {
      BOOST_TEST(std::string(e.what()).find(words) != std::string::npos, "message '" << e.what() << "' lacks '" << words << "'");
    }
  };
  rewrite("model.layers.1.self_attn.q_norm.weight", "", "");
  expect("missing tensor 'model.layers.1.self_attn.q_norm.weight'");
  rewrite("", "model.layers.0.self_attn.q_proj.weight", "");
  expect("'model.layers.0.self_attn.q_proj.weight'");
  rewrite("", "", "model.layers.9.mlp.extra");
  expect("unexpected tensor 'model.layers.9.mlp.extra'");
  // A sharded index naming a shard that does not exist.
  rewrite("", "", "");
  fs::rename(dir / "model.safetensors", dir / "model-00001-of-00002.safetensors");
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [name, t] : f.tensors()) index["weight_map"][name] = "model-00001-of-00002.safetensors";
  index["weight_map"]["model.norm.weight"] = "model-00002-of-00002.safetensors";
  std::ofstream(dir / "model.safetensors.index.json") << index.dump();
  expect("model-00002-of-00002.safetensors");
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(sharded_checkpoint_gives_the_same_logits) {
  const auto src = dots1_test::fixtures_dir() / "model" / "gqa_dense2";
  const auto dir = temp("sharded");
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(src / "config.json", dir / "config.json");
  const auto f = SafetensorsFile::open(src / "model.safetensors");
  std::vector<TensorToWrite> shard[2];
  nlohmann::json index = {{"weight_map", nlohmann::json::object()}};
  size_t i = 0;
  for (const auto& [name, t] : f.tensors()) {
    auto v = t.to_vector<float>();
    const int s = (i++) % 2;
    shard[s].push_back(TensorToWrite::from<float>(name, t.shape, v));
    index["weight_map"][name] = "model-0000" + std::to_string(s + 1) + "-of-00002.safetensors";
  }
  for (int s = 0; s < 2; ++s) write_safetensors(dir / ("model-0000" + std::to_string(s + 1) + "-of-00002.safetensors"), shard[s]);
  std::ofstream(dir / "model.safetensors.index.json") << index.dump();
  auto a = CpuModel::from_pretrained(src), b = CpuModel::from_pretrained(dir);
  const auto in = ForwardInput::from_ids({{1, 2, 3, 4, 5}});
  BOOST_TEST(a.forward(in).logits.values == b.forward(in).logits.values);
  fs::remove_all(dir);
}
