// dots1/model/weights.hpp — how a block takes its tensors: by name relative to its HF module path, with the
// full shape, the kind (base/tensor_spec.hpp) and, for a model split across processes, the part this rank
// holds. Every take is recorded as a TensorSpec, so a block's constructor is the one place its tensors are
// declared: loading (a WeightSource), describing (no source: model/describe.hpp, on the meta backend) and
// checking (finish(): every tensor of the source used) all go through it.
//
//   Weights w = loader.root().at("model").at("layers.3").at("self_attn");
//   w.take("q_norm.weight", {d}, TensorKind::vector);                       // model.layers.3.self_attn.q_norm.weight
//   w.take_rows("q_proj.weight", {nh * d, H}, my_rows, TensorKind::matrix);  // this rank's rows (a view)
//
// A WeightFormat converts embeddings, linear weights and the LM head when they are taken (held_dtype()),
// only the part this rank holds; everything else stays as stored. Routed experts are read per expert as
// released checkpoints store them (experts.{e}.gate_proj.weight, ...) or as slices of the fused
// experts.gate_up_proj [E, 2*Im, H] / experts.down_proj [E, H, Im] that recent transformers save.
#pragma once

#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dots1/base/geometry.hpp"
#include "dots1/base/tensor_spec.hpp"
#include "dots1/error.hpp"
#include "dots1/io/checkpoint.hpp"
#include "dots1/parallel/plan.hpp"

namespace dots1 {

class Weights;

/// The state of one model's load (or description): the source, the format, the split, what was taken.
class WeightLoader {
 public:
  /// Loads from `source`; `format` converts as held_dtype() says.
  WeightLoader(const WeightSource& source, WeightFormat format = WeightFormat::as_stored, std::shared_ptr<const Parallel> parallel = Parallel::single())
      : source_(&source), format_(format), parallel_(std::move(parallel)) {}
  /// Describes only: the blocks' takes are recorded but nothing is read. With `dtypes_from`, each spec's
  /// stored dtype is the source's (what a load of that source would hold; see io/memory_plan.hpp).
  static WeightLoader describing(std::shared_ptr<const Parallel> parallel = Parallel::single(), const WeightSource* dtypes_from = nullptr,
                                 WeightFormat format = WeightFormat::as_stored) {
    WeightLoader l(std::move(parallel), format);
    l.dtypes_ = dtypes_from;
    return l;
  }

  Weights root();
  bool describes() const { return source_ == nullptr; }
  const Parallel& parallel() const { return *parallel_; }
  const std::shared_ptr<const Parallel>& parallel_ptr() const { return parallel_; }
  /// Every tensor the blocks declared, in the order they took them.
  const std::vector<TensorSpec>& specs() const { return specs_; }
  std::vector<TensorSpec> take_specs() { return std::move(specs_); }
  /// Bytes of everything held (as held: converted tensors count in their new dtype).
  size_t held_bytes() const { return held_bytes_; }

  /// Throws if the source holds tensors that no block took.
  void finish() const {
    if (describes()) return;
    std::vector<std::string> unexpected;
    for (const auto& n : source_->names())
      if (!taken_.count(n)) unexpected.push_back(n);
    if (unexpected.empty()) return;
    std::string list;
    for (size_t i = 0; i < unexpected.size() && i < 5; ++i) list += (i ? ", '" : "'") + unexpected[i] + "'";
    if (unexpected.size() > 5) list += " and " + std::to_string(unexpected.size() - 5) + " more";
    throw CheckpointError("unexpected tensor" + std::string(unexpected.size() > 1 ? "s " : " ") + list + " in " + source_->describe() +
                          " (not part of this config's model)");
  }

 private:
  friend class Weights;
  WeightLoader(std::shared_ptr<const Parallel> parallel, WeightFormat format) : format_(format), parallel_(std::move(parallel)) {}

  static std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
  }
  void require(const std::string& name, const std::vector<int64_t>& shape) const {
    if (!source_->contains(name))
      throw CheckpointError("missing tensor '" + name + "' (expected shape " + shape_str(shape) + ") in " + source_->describe());
  }
  void check_shape(const std::string& name, const std::vector<int64_t>& have, const std::vector<int64_t>& shape) const {
    if (have != shape)
      throw CheckpointError("tensor '" + name + "' in " + source_->describe() + " has shape " + shape_str(have) + ", expected " + shape_str(shape));
  }
  static void check_dtype(const TensorView& t) {
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16 && t.dtype != DType::F64)
      throw CheckpointError("tensor '" + t.name + "' in " + t.file + " has dtype " + dtype_name(t.dtype) + ", expected F32, BF16, F16 or F64");
  }

  /// Records `spec`; in a load, converts `view` as the format says and counts what is held.
  TensorView hold(TensorSpec spec, TensorView view) {
    if (describes()) {
      if (dtypes_ && dtypes_->contains(spec.name)) spec.stored = dtypes_->dtype(spec.name);
      view.name = spec.name;
      view.shape = spec.held;
      view.dtype = held_dtype(spec.kind, format_, spec.stored);
      view.nbytes = static_cast<size_t>(spec.held_numel()) * dtype_size(view.dtype);
    } else {
      check_dtype(view);
      spec.stored = view.dtype;
      const DType target = held_dtype(spec.kind, format_, view.dtype);
      if (target != view.dtype) view = converted(view, target);
      held_bytes_ += view.nbytes;
    }
    specs_.push_back(std::move(spec));
    return view;
  }

  const WeightSource* source_ = nullptr;
  const WeightSource* dtypes_ = nullptr;
  WeightFormat format_ = WeightFormat::as_stored;
  std::shared_ptr<const Parallel> parallel_;
  std::set<std::string> taken_;
  std::vector<TensorSpec> specs_;
  size_t held_bytes_ = 0;
};

/// A block's tensors: names relative to its module path ("model.layers.3.mlp."), see the file comment.
class Weights {
 public:
  Weights(WeightLoader& loader, std::string prefix) : loader_(&loader), prefix_(std::move(prefix)) {}

  /// A sub-module: at("self_attn") of "model.layers.3." is "model.layers.3.self_attn.".
  Weights at(std::string_view child) const { return Weights(*loader_, prefix_ + std::string(child) + "."); }
  Weights at(int64_t index) const { return at(std::to_string(index)); }
  const std::string& prefix() const { return prefix_; }
  /// How the model is split, and this process's place in it.
  const Parallel& parallel() const { return loader_->parallel(); }
  const std::shared_ptr<const Parallel>& parallel_ptr() const { return loader_->parallel_ptr(); }

  /// The whole tensor.
  TensorView take(std::string_view name, std::vector<int64_t> shape, TensorKind kind) {
    const std::string full = prefix_ + std::string(name);
    TensorView t;
    if (!loader_->describes()) {
      loader_->require(full, shape);
      t = loader_->source_->get(full);
      if (t.shape != shape)
        throw CheckpointError("tensor '" + full + "' in " + t.file + " has shape " + t.shape_string() + ", expected " + WeightLoader::shape_str(shape));
      loader_->taken_.insert(full);
    }
    return loader_->hold(spec(full, shape, kind, shape), std::move(t));
  }

  /// Rows `rows` of the first dimension (a column-parallel shard; a view of a memory-mapped source).
  TensorView take_rows(std::string_view name, std::vector<int64_t> shape, IndexRange rows, TensorKind kind) {
    if (rows == IndexRange{0, shape[0]}) return take(name, std::move(shape), kind);
    const std::string full = prefix_ + std::string(name);
    std::vector<int64_t> held = shape;
    held[0] = rows.size();
    TensorView t;
    if (!loader_->describes()) {
      loader_->require(full, shape);
      loader_->check_shape(full, loader_->source_->shape(full), shape);
      t = loader_->source_->get_rows(full, rows.begin, rows.end);
      loader_->check_shape(full, t.shape, held);
      loader_->taken_.insert(full);
    }
    return loader_->hold(spec(full, shape, kind, held), std::move(t));
  }

  /// Columns `cols` of a [rows, cols] matrix (a row-parallel shard): a copy, columns are not contiguous.
  TensorView take_columns(std::string_view name, std::vector<int64_t> shape, IndexRange cols, TensorKind kind) {
    if (cols == IndexRange{0, shape[1]}) return take(name, std::move(shape), kind);
    const std::string full = prefix_ + std::string(name);
    TensorSpec s = spec(full, shape, kind, {shape[0], cols.size()});
    s.copied = true;
    TensorView c;
    if (!loader_->describes()) {
      loader_->require(full, shape);
      const TensorView t = loader_->source_->get(full);
      loader_->check_shape(full, t.shape, shape);
      WeightLoader::check_dtype(t);
      loader_->taken_.insert(full);
      const size_t element = dtype_size(t.dtype);
      const auto rows = static_cast<size_t>(shape[0]), row_bytes = static_cast<size_t>(shape[1]) * element;
      const size_t part = static_cast<size_t>(cols.size()) * element;
      auto storage = std::make_shared<std::vector<std::byte>>(rows * part);
      for (size_t r = 0; r < rows; ++r)
        std::memcpy(storage->data() + r * part, t.data + r * row_bytes + static_cast<size_t>(cols.begin) * element, part);
      c = t;
      c.shape = s.held;
      c.data = storage->data();
      c.nbytes = storage->size();
      c.keepalive = storage;
    }
    return loader_->hold(std::move(s), std::move(c));
  }

  /// Declared, but held by another rank (accounted for, so that finish() still catches unused tensors).
  void elsewhere(std::string_view name, std::vector<int64_t> shape, TensorKind kind, double used_per_token = 1, bool routed = false) {
    const std::string full = prefix_ + std::string(name);
    if (!loader_->describes() && loader_->source_->contains(full)) loader_->taken_.insert(full);
    TensorSpec s = spec(full, std::move(shape), kind, {});
    s.used_per_token = used_per_token;
    s.routed = routed;
    loader_->specs_.push_back(std::move(s));
  }

  /// Marks `name` as used if present, with the right shape, without holding it: a tensor HF ignores (a
  /// stored lm_head.weight under tie_word_embeddings).
  void ignore_if_present(std::string_view name, const std::vector<int64_t>& shape) {
    const std::string full = prefix_ + std::string(name);
    if (loader_->describes() || !loader_->source_->contains(full)) return;
    loader_->check_shape(full, loader_->source_->shape(full), shape);
    loader_->taken_.insert(full);
  }

  /// Routed expert e's "gate_proj" / "up_proj" ([inter, hidden]) or "down_proj" ([hidden, inter]) of this
  /// MoE module (whose "experts." these names are under): per expert, or a slice of the fused tensors.
  TensorView take_expert(int64_t e, std::string_view which, int64_t experts, int64_t hidden, int64_t inter, double used_per_token) {
    const bool down = which == "down_proj";
    const std::vector<int64_t> shape = down ? std::vector<int64_t>{hidden, inter} : std::vector<int64_t>{inter, hidden};
    const std::string per_expert = prefix_ + "experts." + std::to_string(e) + "." + std::string(which) + ".weight";
    TensorSpec s = spec(per_expert, shape, TensorKind::matrix, shape);
    s.used_per_token = used_per_token;
    s.routed = true;
    if (loader_->describes() || loader_->source_->contains(per_expert)) {
      TensorView t;
      if (!loader_->describes()) {
        t = loader_->source_->get(per_expert);
        loader_->check_shape(per_expert, t.shape, shape);
        loader_->taken_.insert(per_expert);
      }
      return loader_->hold(std::move(s), std::move(t));
    }
    const std::string fused = prefix_ + "experts." + (down ? "down_proj" : "gate_up_proj");
    if (!loader_->source_->contains(fused))
      throw CheckpointError("missing tensor '" + per_expert + "' (expected shape " + WeightLoader::shape_str(shape) + "; nor is the fused '" + fused +
                            "' present) in " + loader_->source_->describe());
    // Only expert e's slice of the fused tensor is asked for (a view of a checkpoint's pages).
    const std::vector<int64_t> fused_shape = down ? std::vector<int64_t>{experts, hidden, inter} : std::vector<int64_t>{experts, 2 * inter, hidden};
    loader_->check_shape(fused, loader_->source_->shape(fused), fused_shape);
    TensorView one = loader_->source_->get_rows(fused, e, e + 1);
    loader_->check_shape(fused, one.shape, {1, fused_shape[1], fused_shape[2]});
    loader_->taken_.insert(fused);
    one = one.select(0, per_expert);
    if (!down) one = one.slice_rows(which == "gate_proj" ? 0 : inter, inter, per_expert);
    return loader_->hold(std::move(s), std::move(one));
  }

  /// Routed expert e, held by another rank.
  void expert_elsewhere(int64_t e, int64_t hidden, int64_t inter, double used_per_token) {
    for (const char* which : {"gate_proj", "up_proj", "down_proj"}) {
      const bool down = std::string_view(which) == "down_proj";
      elsewhere("experts." + std::to_string(e) + "." + which + ".weight", down ? std::vector<int64_t>{hidden, inter} : std::vector<int64_t>{inter, hidden},
                TensorKind::matrix, used_per_token, /*routed=*/true);
    }
    if (loader_->describes()) return;
    for (const char* fused : {"gate_up_proj", "down_proj"})
      if (loader_->source_->contains(prefix_ + "experts." + fused)) loader_->taken_.insert(prefix_ + "experts." + fused);
  }

 private:
  static TensorSpec spec(std::string name, std::vector<int64_t> shape, TensorKind kind, std::vector<int64_t> held) {
    TensorSpec s;
    s.name = std::move(name);
    s.shape = std::move(shape);
    s.kind = kind;
    s.held = std::move(held);
    return s;
  }

  WeightLoader* loader_;
  std::string prefix_;
};

inline Weights WeightLoader::root() { return Weights(*this, ""); }

}  // namespace dots1
