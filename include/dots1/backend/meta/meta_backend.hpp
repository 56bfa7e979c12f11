// dots1/backend/meta/meta_backend.hpp — a backend of shapes only (torch's "meta" device): building a model on
// it runs every block's constructor, so every tensor is declared with its name, shape and kind (see
// base/tensor_spec.hpp), but nothing is read, allocated or computed. model/describe.hpp uses it to describe
// a model from its config alone: the parameter counts, the memory plan, the random weights and the traffic
// model all come from the blocks' own declarations.
//
// Its operations are declared and never defined: a model on the meta backend can be built and described,
// not run (a call would not link).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dots1/backend/backend_concept.hpp"

namespace dots1 {

struct MetaBackend {
  using Scalar = float;
  /// A buffer's size only.
  struct Vector {
    size_t size = 0;
  };
  struct IndexVector {
    size_t size = 0;
  };
  struct Int64Vector {
    size_t size = 0;
  };
  struct Matrix {
    int64_t rows = 0, cols = 0;
  };
  struct ExpertMatrices {
    Matrix gate, up, down;
  };
  static constexpr const char* name = "meta";
  static constexpr MemorySpace memory = MemorySpace::host;
  static bool keeps_in_place(DType) { return true; }

  static Matrix matrix(const TensorView& t) {
    const int64_t rows = t.shape.size() >= 2 ? t.shape[0] : 1;
    return {rows, rows ? t.numel() / rows : 0};
  }
  static Vector vector(const TensorView& t) { return {static_cast<size_t>(t.numel())}; }
  static Vector upload(std::span<const float> v) { return {v.size()}; }
  static IndexVector upload(std::span<const int32_t> v) { return {v.size()}; }
  static Int64Vector upload(std::span<const int64_t> v) { return {v.size()}; }
  static void resize(Vector& v, size_t n) { v.size = n; }
  static void resize(IndexVector& v, size_t n) { v.size = n; }
  static size_t size(const Vector& v) { return v.size; }
  static size_t bytes(const Matrix& m) { return static_cast<size_t>(m.rows * m.cols) * sizeof(float); }

  // Declared for the concept; a model on the meta backend is never run.
  static std::vector<float> download(const Vector&);
  static std::vector<int32_t> download(const IndexVector&);
  static float* ptr(Vector&);
  static const float* ptr(const Vector&);
  static int32_t* ptr(IndexVector&);
  static const int32_t* ptr(const IndexVector&);
  static const int64_t* ptr(const Int64Vector&);
  static void embedding(const Matrix&, const Int64Vector&, Vector&);
  static void linear(const Matrix&, const Vector*, const Vector&, int64_t, Vector&);
  static void rms_norm(const Vector&, const Vector&, int64_t, int64_t, double, Vector&);
  static void rope(Vector&, int64_t, int64_t, int64_t, const Vector&, const Vector&);
  static void act_mul(const Vector&, const Vector&, kernels::Activation, Vector&);
  static void add(Vector&, const Vector&);
  static void gather_rows(const Vector&, int64_t, const Int64Vector&, Vector&);
  static void kv_reserve(Vector&, int64_t, int64_t, int64_t, int64_t, int64_t);
  static void kv_write(Vector&, int64_t, int64_t, int64_t, int64_t, const Vector&, int64_t);
  static void kv_drop_front(Vector&, int64_t, int64_t, int64_t, int64_t, int64_t);
  template <class Window>
  static void attention(const Vector&, const Vector&, const Vector&, const AttentionShape&, const kernels::MaskSpec<Window>&, Vector&, Vector*);
  static void route(const Vector&, const Vector&, int64_t, const RouterShape&, IndexVector&, Vector&);
  static void moe_experts(const Vector&, int64_t, int64_t, const IndexVector&, const Vector&, int64_t, const std::vector<ExpertMatrices>&, int64_t,
                          kernels::Activation, Vector&);
  template <class F>
  static void for_each_index(int64_t, const F&);
};

static_assert(Backend<MetaBackend>);

}  // namespace dots1
