// dots1/base/tensor_spec.hpp — what a model's blocks say about each tensor they load: its HF name and shape,
// what kind of tensor it is, which part of it this process holds and how much of it one token uses.
//
// A block declares its tensors in one place, its constructor, by taking them from a Weights
// (model/weights.hpp); every take is recorded as a TensorSpec. The same constructors run on the meta backend
// (backend/meta/meta_backend.hpp) to describe a model without loading it, so the loader, the parameter
// counts, the memory plan, the random weights and the benchmark's traffic model all read one list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dots1/base/tensor.hpp"

namespace dots1 {

/// How a tensor is used: decides how a WeightFormat converts it and how it counts.
enum class TensorKind {
  embedding,  // a [V, H] lookup table: one row read per token (and the whole table by a tied LM head)
  matrix,     // an nn.Linear weight [out, in]: converted by a WeightFormat, read whole per token
  lm_head,    // the untied LM head [V, H]: a matrix whose FLOPs count once per kept position
  router,     // a MoE router [E, H]: a matrix HF evaluates in float32, never converted
  vector,     // norms and biases: kept as stored, never converted
  buffer,     // not a parameter (e_score_correction_bias): memory, but no parameter count
};

inline const char* tensor_kind_name(TensorKind k) {
  switch (k) {
    case TensorKind::embedding: return "embedding";
    case TensorKind::matrix: return "matrix";
    case TensorKind::lm_head: return "lm_head";
    case TensorKind::router: return "router";
    case TensorKind::vector: return "vector";
    default: return "buffer";
  }
}

/// The dtype weight matrices reach the backend in: as the source stores them, or converted. Embeddings,
/// linear weights and the LM head are converted; routers, norms, biases and buffers stay as stored (HF
/// evaluates the router in float32, and they are tiny).
enum class WeightFormat { as_stored, f32, bf16 };

/// The dtype a tensor of `kind` stored as `stored` is held in under `format`.
inline DType held_dtype(TensorKind kind, WeightFormat format, DType stored) {
  const bool converted = kind == TensorKind::embedding || kind == TensorKind::matrix || kind == TensorKind::lm_head;
  if (!converted || format == WeightFormat::as_stored) return stored;
  return format == WeightFormat::bf16 ? DType::BF16 : DType::F32;
}

/// One tensor of a model as a block declared it.
struct TensorSpec {
  std::string name;            // HF name: model.layers.3.mlp.experts.7.up_proj.weight
  std::vector<int64_t> shape;  // the whole tensor, as a checkpoint stores it
  TensorKind kind = TensorKind::matrix;
  std::vector<int64_t> held;   // what this process holds: `shape` unsplit, a slice of it when split, empty when another rank holds it
  bool copied = false;         // held as a copy (a column slice), not as a view of the stored bytes
  double used_per_token = 1;   // the fraction one token uses: top_k / n_experts for a routed expert, 1 otherwise
  bool routed = false;         // a routed expert's projection
  DType stored = DType::F32;   // its dtype in the source (F32 when described without one)

  static int64_t count(const std::vector<int64_t>& dims) {
    int64_t n = dims.empty() ? 0 : 1;
    for (auto d : dims) n *= d;
    return n;
  }
  int64_t numel() const { return shape.empty() ? 1 : count(shape); }
  int64_t held_numel() const { return held.empty() ? 0 : count(held); }
  bool is_parameter() const { return kind != TensorKind::buffer; }
};

}  // namespace dots1
