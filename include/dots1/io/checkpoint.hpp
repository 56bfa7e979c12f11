// dots1/io/checkpoint.hpp — where a model's tensors come from (WeightSource): an HF checkpoint folder
// (config.json + model.safetensors or sharded model-XXXXX-of-YYYYY.safetensors with
// model.safetensors.index.json, all memory-mapped), or deterministic random weights. The model takes its
// tensors from a source through model/weights.hpp.
#pragma once

#include <filesystem>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dots1/config.hpp"
#include "dots1/error.hpp"
#include "dots1/base/json_input.hpp"
#include "dots1/base/limits.hpp"
#include "dots1/io/safetensors.hpp"
#include "dots1/base/tensor_spec.hpp"

namespace dots1 {

/// Where named tensors come from: a checkpoint folder, or generated weights.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool contains(const std::string& name) const = 0;
  /// The tensor; only called for names for which contains() is true.
  virtual TensorView get(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;
  /// A short description for messages ("checkpoint /path", "random weights seed 7").
  virtual std::string describe() const = 0;
  /// The tensor's shape and dtype; sources that make tensors on request override them to avoid making one.
  virtual std::vector<int64_t> shape(const std::string& name) const { return get(name).shape; }
  virtual DType dtype(const std::string& name) const { return get(name).dtype; }
  /// Rows [begin, end) of the tensor's first dimension (a process's shard, see parallel/plan.hpp). The
  /// default is a view into get()'s tensor, so a memory-mapped checkpoint keeps its rows in place and only
  /// those pages are ever read; sources that generate or convert tensors override it to hold only the slice.
  virtual TensorView get_rows(const std::string& name, int64_t begin, int64_t end) const { return get(name).slice_rows(begin, end - begin, name); }
};

/// An owned copy of a view's bytes (so that the copy no longer keeps the view's whole tensor alive).
inline TensorView owned_copy(const TensorView& t) {
  auto storage = std::make_shared<std::vector<std::byte>>(t.data, t.data + t.nbytes);
  TensorView c = t;
  c.data = storage->data();
  c.keepalive = storage;
  return c;
}

/// An HF checkpoint folder: config.json and its safetensors, all memory-mapped.
class Checkpoint final : public WeightSource {
 public:
  /// Reads a config.json into the config every model family uses (Dots1Config::from_json for dots1; a
  /// family's own reader for other model types, see model/family.hpp).
  using ConfigReader = Dots1Config (*)(const nlohmann::json&);

  static Checkpoint open(const std::filesystem::path& dir, ConfigReader read_config = &Dots1Config::from_json) {
    namespace fs = std::filesystem;
    Checkpoint c;
    c.dir_ = dir;
    if (!fs::is_directory(dir)) throw CheckpointError("checkpoint folder " + dir.string() + " does not exist or is not a folder");
    const fs::path config_path = dir / "config.json";
    if (!fs::exists(config_path)) throw CheckpointError("checkpoint folder " + dir.string() + " has no config.json");
    c.config_ = Dots1Config::load(config_path, read_config);
    const fs::path index_path = dir / "model.safetensors.index.json";
    const fs::path single = dir / "model.safetensors";
    if (fs::exists(index_path)) {
      const nlohmann::json index = io::read_json_file(index_path, "checkpoint index file", limits::kMaxSmallJsonBytes, [&](const std::string& problem) {
        throw CheckpointError(index_path.string() + ": malformed JSON: " + problem);
      });
      if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
        throw CheckpointError(index_path.string() + ": expected an object with a 'weight_map' object");
      std::map<std::string, size_t> file_slot;
      for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
        if (!it.value().is_string()) throw CheckpointError(index_path.string() + ": weight_map entry for '" + shown(it.key()) + "' is not a file name");
        const std::string file = it.value().get<std::string>();
        if (file.find('/') != std::string::npos || file.find('\0') != std::string::npos || file == ".." || file == "." || file.empty())
          throw CheckpointError(index_path.string() + ": weight_map names '" + shown(file) + "', which is not a plain file name in the folder");
        if (!file_slot.count(file)) {
          if (!fs::exists(dir / file))
            throw CheckpointError(index_path.string() + " names shard '" + shown(file) + "' (for tensor '" + shown(it.key()) + "'), which does not exist in " + dir.string());
          file_slot[file] = c.files_.size();
          c.files_.push_back(SafetensorsFile::open(dir / file));
        }
        c.where_[it.key()] = file_slot[file];
      }
      for (const auto& [name, slot] : c.where_)
        if (!c.files_[slot].contains(name))
          throw CheckpointError(index_path.string() + " maps tensor '" + shown(name) + "' to " + c.files_[slot].path() + ", which does not hold it");
    } else if (fs::exists(single)) {
      c.files_.push_back(SafetensorsFile::open(single));
      for (const auto& [name, t] : c.files_[0].tensors()) c.where_[name] = 0;
    } else {
      throw CheckpointError("checkpoint folder " + dir.string() + " has neither model.safetensors nor model.safetensors.index.json");
    }
    return c;
  }

  const Dots1Config& config() const { return config_; }
  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }

  bool contains(const std::string& name) const override { return where_.count(name) != 0; }
  TensorView get(const std::string& name) const override {
    auto it = where_.find(name);
    if (it == where_.end()) throw CheckpointError("tensor '" + name + "' missing from checkpoint " + dir_.string());
    return files_[it->second].at(name);
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> n;
    for (const auto& [name, slot] : where_) n.push_back(name);
    return n;
  }
  std::string describe() const override { return "checkpoint " + dir_.string(); }

 private:
  std::filesystem::path dir_;
  Dots1Config config_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;
};

/// A source seen through a WeightFormat, as a model whose tensors are `tensors` would hold it (held_dtype()
/// by each tensor's kind; tensors the list does not name, such as fused expert tensors, count as matrices).
/// Converted tensors are kept, so that a tensor asked for twice is converted once. The model itself needs
/// no such wrapper (it converts as it loads: CausalLM(config, source, format)); this is for chaining
/// formats, e.g. float32 matrices holding bf16-rounded values.
class CastWeights final : public WeightSource {
 public:
  CastWeights(const WeightSource& inner, WeightFormat format, const std::vector<TensorSpec>& tensors) : inner_(inner), format_(format) {
    for (const auto& t : tensors) kinds_[t.name] = t.kind;
  }
  bool contains(const std::string& name) const override { return inner_.contains(name); }
  TensorView get(const std::string& name) const override {
    if (auto it = converted_.find(name); it != converted_.end()) return it->second;
    TensorView t = inner_.get(name);
    const DType target = held_dtype(kind(name), format_, t.dtype);
    if (target == t.dtype) return t;
    return converted_[name] = converted(t, target);
  }
  std::vector<std::string> names() const override { return inner_.names(); }
  std::string describe() const override { return inner_.describe(); }
  std::vector<int64_t> shape(const std::string& name) const override { return inner_.shape(name); }
  DType dtype(const std::string& name) const override { return held_dtype(kind(name), format_, inner_.dtype(name)); }

 private:
  TensorKind kind(const std::string& name) const {
    const auto it = kinds_.find(name);
    return it != kinds_.end() ? it->second : TensorKind::matrix;
  }
  const WeightSource& inner_;
  WeightFormat format_;
  std::map<std::string, TensorKind> kinds_;
  mutable std::map<std::string, TensorView> converted_;
};

/// Deterministic random weights for a model (benchmarks, examples, teaching): every tensor is generated
/// on first request from (seed, name), so the same seed gives the same model whatever the access order.
/// With WeightFormat::bf16 the tensors held_dtype() converts are generated directly as bfloat16 (the float32
/// values rounded to nearest even), without a float32 copy.
class RandomWeights final : public WeightSource {
 public:
  /// `tensors`: the model's (model_tensors(config) of model/describe.hpp, or any model's describe()).
  RandomWeights(const std::vector<TensorSpec>& tensors, uint64_t seed, WeightFormat format = WeightFormat::as_stored) : seed_(seed), format_(format) {
    for (const auto& t : tensors) tensors_.emplace(t.name, Entry{t.shape, t.kind});
  }

  bool contains(const std::string& name) const override { return tensors_.count(name) != 0; }
  TensorView get(const std::string& name) const override {
    const Entry& e = tensors_.at(name);
    const auto& shape = e.shape;
    int64_t n = 1;
    for (auto d : shape) n *= d;
    const bool is_norm = name.find("norm") != std::string::npos;
    const bool is_bias = name.find("bias") != std::string::npos;
    std::mt19937_64 rng(seed_ ^ std::hash<std::string>{}(name));
    // Norm weights near 1, biases small, matrices scaled by 1/sqrt(fan_in) so activations stay O(1).
    const double scale = shape.size() >= 2 ? 1.0 / std::sqrt(static_cast<double>(shape.back())) : 0.02;
    std::normal_distribution<float> normal(0.0f, static_cast<float>(scale));
    auto next = [&] { return is_norm ? 1.0f + 0.1f * normal(rng) / static_cast<float>(scale) : (is_bias ? 0.1f * normal(rng) : normal(rng)); };
    TensorView t;
    t.name = name;
    t.dtype = DType::F32;
    t.shape = shape;
    t.file = describe();
    if (dtype(name) == DType::BF16) {
      auto storage = std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(n));
      for (auto& x : *storage) x = float_to_bf16(next());
      t.dtype = DType::BF16;
      t.data = reinterpret_cast<const std::byte*>(storage->data());
      t.nbytes = storage->size() * sizeof(uint16_t);
      t.keepalive = storage;
      return t;
    }
    auto storage = std::make_shared<std::vector<float>>(static_cast<size_t>(n));
    for (auto& x : *storage) x = next();
    t.data = reinterpret_cast<const std::byte*>(storage->data());
    t.nbytes = storage->size() * sizeof(float);
    t.keepalive = storage;
    return t;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> n;
    for (const auto& [name, e] : tensors_) n.push_back(name);
    return n;
  }
  std::string describe() const override { return "random weights (seed " + std::to_string(seed_) + ")"; }
  std::vector<int64_t> shape(const std::string& name) const override { return tensors_.at(name).shape; }
  DType dtype(const std::string& name) const override { return held_dtype(tensors_.at(name).kind, format_, DType::F32); }
  /// The whole tensor is generated (the values depend on the order of generation) and only the rows kept.
  TensorView get_rows(const std::string& name, int64_t begin, int64_t end) const override {
    return owned_copy(get(name).slice_rows(begin, end - begin, name));
  }

 private:
  struct Entry {
    std::vector<int64_t> shape;
    TensorKind kind;
  };
  std::map<std::string, Entry> tensors_;
  uint64_t seed_;
  WeightFormat format_;
};

}  // namespace dots1
