// dots1/io/checkpoint.hpp — an HF checkpoint folder (config.json + model.safetensors or sharded
// model-XXXXX-of-YYYYY.safetensors with model.safetensors.index.json), and the WeightReader the model
// uses to take its tensors by HF name with shape checks and unexpected-tensor detection.
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
#include "dots1/io/json_input.hpp"
#include "dots1/io/limits.hpp"
#include "dots1/io/safetensors.hpp"
#include "dots1/parallel/plan.hpp"

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
  /// The tensor's shape; sources that make tensors on request override it to avoid making one.
  virtual std::vector<int64_t> shape(const std::string& name) const { return get(name).shape; }
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

/// The dtype weight matrices reach the backend in: as the source stores them, or converted. Only weight
/// matrices (tensors of 2 or more dimensions) are converted, except the MoE router `mlp.gate.weight`,
/// which HF evaluates in float32 and which is tiny; norms, biases and the router's correction bias stay
/// as stored. The CPU backend reads F32 and BF16 matrices in place and accumulates in float32.
enum class WeightFormat { as_stored, f32, bf16 };

/// Whether `format` converts tensor `name` of this shape to `target` (and which dtype that is).
inline bool converts_weight(WeightFormat format, const std::string& name, const std::vector<int64_t>& shape, DType& target) {
  if (format == WeightFormat::as_stored || shape.size() < 2) return false;
  const std::string router = "mlp.gate.weight";
  if (name.size() >= router.size() && name.compare(name.size() - router.size(), router.size(), router) == 0) return false;
  target = format == WeightFormat::bf16 ? DType::BF16 : DType::F32;
  return true;
}

/// A weight source seen through a WeightFormat: matrices converted on request (and kept, so that fused
/// expert tensors, requested once per expert, are converted once).
class CastWeights final : public WeightSource {
 public:
  CastWeights(const WeightSource& inner, WeightFormat format) : inner_(inner), format_(format) {}
  bool contains(const std::string& name) const override { return inner_.contains(name); }
  TensorView get(const std::string& name) const override {
    if (auto it = converted_.find(name); it != converted_.end()) return it->second;
    TensorView t = inner_.get(name);
    DType target = t.dtype;
    if (!converts_weight(format_, name, t.shape, target) || t.dtype == target) return t;
    return converted_[name] = convert(t, target);
  }
  std::vector<std::string> names() const override { return inner_.names(); }
  std::string describe() const override { return inner_.describe(); }
  std::vector<int64_t> shape(const std::string& name) const override { return inner_.shape(name); }
  /// Converts only the rows asked for (kept, like get(): the gate and up halves of a fused expert share one).
  TensorView get_rows(const std::string& name, int64_t begin, int64_t end) const override {
    const std::string key = name + "#" + std::to_string(begin) + ":" + std::to_string(end);
    if (auto it = converted_.find(key); it != converted_.end()) return it->second;
    TensorView t = inner_.get_rows(name, begin, end);
    DType target = t.dtype;
    if (!converts_weight(format_, name, inner_.shape(name), target) || t.dtype == target) return t;
    return converted_[key] = convert(t, target);
  }

 private:
  static TensorView convert(const TensorView& t, DType target) {
    const auto n = static_cast<size_t>(t.numel());
    TensorView c = t;
    c.dtype = target;
    if (target == DType::BF16) {
      auto storage = std::make_shared<std::vector<uint16_t>>(n);
      for (size_t i = 0; i < n; ++i) (*storage)[i] = float_to_bf16(t.float_at(static_cast<int64_t>(i)));
      c.data = reinterpret_cast<const std::byte*>(storage->data());
      c.nbytes = n * 2;
      c.keepalive = storage;
    } else {
      auto storage = std::make_shared<std::vector<float>>(t.to_vector<float>());
      c.data = reinterpret_cast<const std::byte*>(storage->data());
      c.nbytes = n * 4;
      c.keepalive = storage;
    }
    return c;
  }

  const WeightSource& inner_;
  WeightFormat format_;
  mutable std::map<std::string, TensorView> converted_;
};

/// Deterministic random weights for a config (benchmarks, examples, teaching): every tensor is generated
/// on first request from (seed, name), so the same seed gives the same model whatever the access order.
/// With WeightFormat::bf16 the matrices are generated directly as bfloat16 (the float32 values rounded to
/// nearest even), without a float32 copy.
class RandomWeights final : public WeightSource {
 public:
  /// `expected` maps each tensor name to its shape (from model_tensor_shapes()).
  RandomWeights(std::map<std::string, std::vector<int64_t>> expected, uint64_t seed, WeightFormat format = WeightFormat::as_stored)
      : shapes_(std::move(expected)), seed_(seed), format_(format) {}

  bool contains(const std::string& name) const override { return shapes_.count(name) != 0; }
  TensorView get(const std::string& name) const override {
    const auto& shape = shapes_.at(name);
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
    DType target = DType::F32;
    if (converts_weight(format_, name, shape, target) && target == DType::BF16) {
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
    for (const auto& [name, s] : shapes_) n.push_back(name);
    return n;
  }
  std::string describe() const override { return "random weights (seed " + std::to_string(seed_) + ")"; }
  std::vector<int64_t> shape(const std::string& name) const override { return shapes_.at(name); }
  /// The whole tensor is generated (the values depend on the order of generation) and only the rows kept.
  TensorView get_rows(const std::string& name, int64_t begin, int64_t end) const override {
    return owned_copy(get(name).slice_rows(begin, end - begin, name));
  }

 private:
  std::map<std::string, std::vector<int64_t>> shapes_;
  uint64_t seed_;
  WeightFormat format_;
};

/// Takes tensors from a WeightSource by HF name, checking shape and dtype, and remembers what was taken
/// so that finish() can report tensors the model does not use. A model split across processes (see
/// parallel/plan.hpp) loads through a reader that knows the split: blocks ask parallel() for their shard
/// and take row or column slices; tensors another rank holds are skip()ped, so that finish() still
/// catches tensors no rank would use. held_bytes() sums the bytes of everything taken (as stored).
class WeightReader {
 public:
  explicit WeightReader(const WeightSource& source, std::shared_ptr<const Parallel> parallel = Parallel::single())
      : source_(source), parallel_(std::move(parallel)) {}

  /// How the model is split, and this process's place in it.
  const Parallel& parallel() const { return *parallel_; }
  const std::shared_ptr<const Parallel>& parallel_ptr() const { return parallel_; }

  TensorView take(const std::string& name, const std::vector<int64_t>& shape) {
    TensorView t = take_unheld(name, shape);
    held_bytes_ += t.nbytes;
    return t;
  }

  /// Rows `rows` of tensor `name` of shape `shape` (a shard of a [out, in] matrix or of a vector): a view
  /// into a memory-mapped checkpoint, which reads only those rows' pages.
  TensorView take_rows(const std::string& name, const std::vector<int64_t>& shape, IndexRange rows) {
    if (rows == IndexRange{0, shape[0]}) return take(name, shape);  // the whole tensor (an unsplit model)
    require(name, shape);
    check_shape(name, source_.shape(name), shape);
    TensorView t = source_.get_rows(name, rows.begin, rows.end);
    check(t, with_rows(shape, rows.size()));
    taken_.insert(name);
    held_bytes_ += t.nbytes;
    return t;
  }

  /// Columns `cols` of the [rows, cols] matrix `name`: an owned copy in the stored dtype (columns are not
  /// contiguous in a row-major file).
  TensorView take_columns(const std::string& name, const std::vector<int64_t>& shape, IndexRange cols) {
    if (cols == IndexRange{0, shape[1]}) return take(name, shape);  // the whole matrix, in place
    require(name, shape);
    const TensorView t = source_.get(name);
    check(t, shape);
    taken_.insert(name);
    const size_t element = t.nbytes / static_cast<size_t>(std::max<int64_t>(t.numel(), 1));
    const auto rows = static_cast<size_t>(shape[0]), row_bytes = static_cast<size_t>(shape[1]) * element;
    const size_t part = static_cast<size_t>(cols.size()) * element;
    auto storage = std::make_shared<std::vector<std::byte>>(rows * part);
    for (size_t r = 0; r < rows; ++r)
      std::memcpy(storage->data() + r * part, t.data + r * row_bytes + static_cast<size_t>(cols.begin) * element, part);
    TensorView c = t;
    c.shape = {shape[0], cols.size()};
    c.data = storage->data();
    c.nbytes = storage->size();
    c.keepalive = storage;
    held_bytes_ += c.nbytes;
    return c;
  }

  /// Marks `name` as used if present (with the right shape); for tensors HF ignores, like a tied lm_head.
  void skip_if_present(const std::string& name, const std::vector<int64_t>& shape) {
    if (source_.contains(name)) take_unheld(name, shape);
  }

  /// Marks expert e of `layer` as accounted for without reading it: another rank holds it.
  void skip_expert(int64_t layer, int64_t e) {
    const std::string prefix = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    for (const char* which : {"gate_proj", "up_proj", "down_proj"}) {
      const std::string per_expert = prefix + std::to_string(e) + "." + which + ".weight";
      if (source_.contains(per_expert)) taken_.insert(per_expert);
    }
    for (const char* fused : {"gate_up_proj", "down_proj"})
      if (source_.contains(prefix + fused)) taken_.insert(prefix + fused);
  }

  /// Bytes of every tensor and slice taken so far, in the dtype the source gave them.
  size_t held_bytes() const { return held_bytes_; }

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
    // Only expert e's slice of the fused tensor is asked for (a view of a checkpoint's pages).
    const std::vector<int64_t> fused_shape = which == "down_proj" ? std::vector<int64_t>{experts, hidden, inter} : std::vector<int64_t>{experts, 2 * inter, hidden};
    check_shape(fused, source_.shape(fused), fused_shape);
    TensorView one = source_.get_rows(fused, e, e + 1);
    check(one, with_rows(fused_shape, 1));
    taken_.insert(fused);
    one = one.select(0, per_expert);
    if (which != "down_proj") one = one.slice_rows(which == "gate_proj" ? 0 : inter, inter, per_expert);
    held_bytes_ += one.nbytes;
    return one;
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
  TensorView take_unheld(const std::string& name, const std::vector<int64_t>& shape) {
    require(name, shape);
    TensorView t = source_.get(name);
    check(t, shape);
    taken_.insert(name);
    return t;
  }
  void require(const std::string& name, const std::vector<int64_t>& shape) const {
    if (!source_.contains(name)) throw CheckpointError("missing tensor '" + name + "' (expected shape " + shape_str(shape) + ") in " + source_.describe());
  }
  static std::vector<int64_t> with_rows(std::vector<int64_t> shape, int64_t rows) {
    shape[0] = rows;
    return shape;
  }
  void check_shape(const std::string& name, const std::vector<int64_t>& have, const std::vector<int64_t>& shape) const {
    if (have != shape)
      throw CheckpointError("tensor '" + name + "' in " + source_.describe() + " has shape " + shape_str(have) + ", expected " + shape_str(shape));
  }
  void check(const TensorView& t, const std::vector<int64_t>& shape) const {
    if (t.shape != shape)
      throw CheckpointError("tensor '" + t.name + "' in " + t.file + " has shape " + t.shape_string() + ", expected " + shape_str(shape));
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16 && t.dtype != DType::F64)
      throw CheckpointError("tensor '" + t.name + "' in " + t.file + " has dtype " + dtype_name(t.dtype) + ", expected F32, BF16 or F16");
  }

  const WeightSource& source_;
  std::shared_ptr<const Parallel> parallel_;
  std::set<std::string> taken_;
  size_t held_bytes_ = 0;
};

}  // namespace dots1
