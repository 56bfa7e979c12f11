// dots1/io/checkpoint.hpp — an HF checkpoint folder (config.json + model.safetensors or sharded
// model-XXXXX-of-YYYYY.safetensors with model.safetensors.index.json), and the WeightReader the model
// uses to take its tensors by HF name with shape checks and unexpected-tensor detection.
#pragma once

#include <filesystem>
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
#include "dots1/io/safetensors.hpp"

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
};

/// An HF checkpoint folder: config.json and its safetensors, all memory-mapped.
class Checkpoint final : public WeightSource {
 public:
  static Checkpoint open(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    Checkpoint c;
    c.dir_ = dir;
    if (!fs::is_directory(dir)) throw CheckpointError("checkpoint folder " + dir.string() + " does not exist or is not a folder");
    const fs::path config_path = dir / "config.json";
    if (!fs::exists(config_path)) throw CheckpointError("checkpoint folder " + dir.string() + " has no config.json");
    c.config_ = Dots1Config::load(config_path);
    const fs::path index_path = dir / "model.safetensors.index.json";
    const fs::path single = dir / "model.safetensors";
    if (fs::exists(index_path)) {
      nlohmann::json index;
      {
        std::ifstream in(index_path);
        try {
          index = nlohmann::json::parse(in);
        } catch (const nlohmann::json::exception& e) {
          throw CheckpointError(index_path.string() + ": malformed JSON: " + e.what());
        }
      }
      if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
        throw CheckpointError(index_path.string() + ": expected an object with a 'weight_map' object");
      std::map<std::string, size_t> file_slot;
      for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
        if (!it.value().is_string()) throw CheckpointError(index_path.string() + ": weight_map entry for '" + it.key() + "' is not a file name");
        const std::string file = it.value().get<std::string>();
        if (file.find('/') != std::string::npos || file == ".." || file.empty())
          throw CheckpointError(index_path.string() + ": weight_map names '" + file + "', which is not a plain file name in the folder");
        if (!file_slot.count(file)) {
          if (!fs::exists(dir / file))
            throw CheckpointError(index_path.string() + " names shard '" + file + "' (for tensor '" + it.key() + "'), which does not exist in " + dir.string());
          file_slot[file] = c.files_.size();
          c.files_.push_back(SafetensorsFile::open(dir / file));
        }
        c.where_[it.key()] = file_slot[file];
      }
      for (const auto& [name, slot] : c.where_)
        if (!c.files_[slot].contains(name))
          throw CheckpointError(index_path.string() + " maps tensor '" + name + "' to " + c.files_[slot].path() + ", which does not hold it");
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

/// Deterministic random weights for a config (benchmarks, examples, teaching): every tensor is generated
/// on first request from (seed, name), so the same seed gives the same model whatever the access order.
class RandomWeights final : public WeightSource {
 public:
  /// `expected` maps each tensor name to its shape (from model_tensor_shapes()).
  RandomWeights(std::map<std::string, std::vector<int64_t>> expected, uint64_t seed)
      : shapes_(std::move(expected)), seed_(seed) {}

  bool contains(const std::string& name) const override { return shapes_.count(name) != 0; }
  TensorView get(const std::string& name) const override {
    const auto& shape = shapes_.at(name);
    int64_t n = 1;
    for (auto d : shape) n *= d;
    auto storage = std::make_shared<std::vector<float>>(static_cast<size_t>(n));
    const bool is_norm = name.find("norm") != std::string::npos;
    const bool is_bias = name.find("bias") != std::string::npos;
    std::mt19937_64 rng(seed_ ^ std::hash<std::string>{}(name));
    // Norm weights near 1, biases small, matrices scaled by 1/sqrt(fan_in) so activations stay O(1).
    const double scale = shape.size() >= 2 ? 1.0 / std::sqrt(static_cast<double>(shape.back())) : 0.02;
    std::normal_distribution<float> normal(0.0f, static_cast<float>(scale));
    for (auto& x : *storage) x = is_norm ? 1.0f + 0.1f * normal(rng) / static_cast<float>(scale) : (is_bias ? 0.1f * normal(rng) : normal(rng));
    TensorView t;
    t.name = name;
    t.dtype = DType::F32;
    t.shape = shape;
    t.data = reinterpret_cast<const std::byte*>(storage->data());
    t.nbytes = storage->size() * sizeof(float);
    t.file = describe();
    t.keepalive = storage;
    return t;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> n;
    for (const auto& [name, s] : shapes_) n.push_back(name);
    return n;
  }
  std::string describe() const override { return "random weights (seed " + std::to_string(seed_) + ")"; }

 private:
  std::map<std::string, std::vector<int64_t>> shapes_;
  uint64_t seed_;
};

/// Takes tensors from a WeightSource by HF name, checking shape and dtype, and remembers what was taken
/// so that finish() can report tensors the model does not use.
class WeightReader {
 public:
  explicit WeightReader(const WeightSource& source) : source_(source) {}

  TensorView take(const std::string& name, const std::vector<int64_t>& shape) {
    if (!source_.contains(name)) throw CheckpointError("missing tensor '" + name + "' (expected shape " + shape_str(shape) + ") in " + source_.describe());
    TensorView t = source_.get(name);
    check(t, shape);
    taken_.insert(name);
    return t;
  }

  /// Marks `name` as used if present (with the right shape); for tensors HF ignores, like a tied lm_head.
  void skip_if_present(const std::string& name, const std::vector<int64_t>& shape) {
    if (source_.contains(name)) take(name, shape);
  }

  /// Expert e's "gate_proj" / "up_proj" / "down_proj" of layer `layer`: per-expert tensors as released
  /// checkpoints store them, or slices of the fused `experts.gate_up_proj` [E, 2*Im, H] (gate rows first)
  /// and `experts.down_proj` [E, H, Im] that recent transformers save.
  TensorView take_expert(int64_t layer, int64_t e, const std::string& which, int64_t experts, int64_t hidden, int64_t inter) {
    const std::string prefix = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    const std::string per_expert = prefix + std::to_string(e) + "." + which + ".weight";
    const std::vector<int64_t> shape = which == "down_proj" ? std::vector<int64_t>{hidden, inter} : std::vector<int64_t>{inter, hidden};
    if (source_.contains(per_expert)) return take(per_expert, shape);
    const std::string fused = prefix + (which == "down_proj" ? "down_proj" : "gate_up_proj");
    if (!source_.contains(fused))
      throw CheckpointError("missing tensor '" + per_expert + "' (expected shape " + shape_str(shape) + "; nor is the fused '" + fused + "' present) in " +
                            source_.describe());
    TensorView all = source_.get(fused);
    if (which == "down_proj") {
      check(all, {experts, hidden, inter});
      taken_.insert(fused);
      return all.select(e, per_expert);
    }
    check(all, {experts, 2 * inter, hidden});
    taken_.insert(fused);
    return all.select(e, per_expert).slice_rows(which == "gate_proj" ? 0 : inter, inter, per_expert);
  }

  /// Throws if the source holds tensors that nothing took.
  void finish() const {
    std::vector<std::string> unexpected;
    for (const auto& n : source_.names())
      if (!taken_.count(n)) unexpected.push_back(n);
    if (unexpected.empty()) return;
    std::string list;
    for (size_t i = 0; i < unexpected.size() && i < 5; ++i) list += (i ? ", '" : "'") + unexpected[i] + "'";
    if (unexpected.size() > 5) list += " and " + std::to_string(unexpected.size() - 5) + " more";
    throw CheckpointError("unexpected tensor" + std::string(unexpected.size() > 1 ? "s " : " ") + list + " in " + source_.describe() +
                          " (not part of this config's model)");
  }

 private:
  static std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
  }
  void check(const TensorView& t, const std::vector<int64_t>& shape) const {
    if (t.shape != shape)
      throw CheckpointError("tensor '" + t.name + "' in " + t.file + " has shape " + t.shape_string() + ", expected " + shape_str(shape));
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16 && t.dtype != DType::F64)
      throw CheckpointError("tensor '" + t.name + "' in " + t.file + " has dtype " + dtype_name(t.dtype) + ", expected F32, BF16 or F16");
  }

  const WeightSource& source_;
  std::set<std::string> taken_;
};

}  // namespace dots1
