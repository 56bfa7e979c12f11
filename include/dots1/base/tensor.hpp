// dots1/base/tensor.hpp — element types and a view of a tensor's bytes: the vocabulary that the file
// readers (io/), the backends (which turn views into their own storage) and the model's weight loading share.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dots1/error.hpp"

namespace dots1 {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2, U16, U32, U64 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: case DType::U64: return 8;
    case DType::F32: case DType::I32: case DType::U32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: case DType::U16: return 2;
    default: return 1;
  }
}

inline const char* dtype_name(DType t) {
  static const char* names[] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "U16", "U32", "U64"};
  return names[static_cast<int>(t)];
}

inline bool parse_dtype(std::string_view s, DType& out) {
  for (int i = 0; i <= static_cast<int>(DType::U64); ++i)
    if (s == dtype_name(static_cast<DType>(i))) {
      out = static_cast<DType>(i);
      return true;
    }
  return false;
}

/// bfloat16 / float16 bit patterns to float.
inline float bf16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

/// float to bfloat16 with round-to-nearest-even (as torch does); NaN stays NaN.
inline uint16_t float_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

/// A tensor inside a mapped file (or any host buffer): dtype, shape and a pointer to its bytes.
/// `keepalive` owns the mapping, so a view stays valid after the file object is gone.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // where it came from, for messages
  std::shared_ptr<const void> keepalive;

  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::string shape_string() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }

  /// Element i converted to float (F32, F16, BF16, F64).
  float float_at(int64_t i) const {
    switch (dtype) {
      case DType::F32: { float v; std::memcpy(&v, data + i * 4, 4); return v; }
      case DType::BF16: { uint16_t v; std::memcpy(&v, data + i * 2, 2); return bf16_to_float(v); }
      case DType::F16: { uint16_t v; std::memcpy(&v, data + i * 2, 2); return f16_to_float(v); }
      case DType::F64: { double v; std::memcpy(&v, data + i * 8, 8); return static_cast<float>(v); }
      default: throw SafetensorsError("tensor '" + name + "' in " + file + " has dtype " + dtype_name(dtype) + ", expected a float dtype (F32, F16, BF16, F64)");
    }
  }

  /// The whole tensor as T (float or double), converting from F32/F16/BF16/F64.
  template <class T = float>
  std::vector<T> to_vector() const {
    std::vector<T> out(static_cast<size_t>(numel()));
    if (dtype == DType::F32 && std::is_same_v<T, float>) {
      if (nbytes > 0) std::memcpy(out.data(), data, nbytes);  // an empty vector's data() may be null: memcpy UB
    } else {
      for (int64_t i = 0; i < numel(); ++i) out[static_cast<size_t>(i)] = static_cast<T>(float_at(i));
    }
    return out;
  }

  /// Integer tensors (I64, I32, I16, I8, U8, BOOL) as int64.
  std::vector<int64_t> to_int64() const {
    std::vector<int64_t> out(static_cast<size_t>(numel()));
    for (int64_t i = 0; i < numel(); ++i) {
      switch (dtype) {
        case DType::I64: std::memcpy(&out[i], data + i * 8, 8); break;
        case DType::I32: { int32_t v; std::memcpy(&v, data + i * 4, 4); out[i] = v; break; }
        case DType::I16: { int16_t v; std::memcpy(&v, data + i * 2, 2); out[i] = v; break; }
        case DType::I8: out[i] = static_cast<int8_t>(data[i]); break;
        case DType::U8: case DType::BOOL: out[i] = static_cast<uint8_t>(data[i]); break;
        default: throw SafetensorsError("tensor '" + name + "' in " + file + " has dtype " + dtype_name(dtype) + ", expected an integer dtype");
      }
    }
    return out;
  }

  /// Rows [begin, begin + count) of the first dimension, as a view (for fused expert tensors).
  TensorView slice_rows(int64_t begin, int64_t count, std::string new_name) const {
    TensorView v = *this;
    const size_t row_bytes = shape.empty() || shape[0] == 0 ? 0 : nbytes / static_cast<size_t>(shape[0]);
    v.name = std::move(new_name);
    v.shape[0] = count;
    v.data = data + static_cast<size_t>(begin) * row_bytes;
    v.nbytes = static_cast<size_t>(count) * row_bytes;
    return v;
  }
  /// Drops the first dimension at index i: [E, a, b] -> [a, b].
  TensorView select(int64_t i, std::string new_name) const {
    TensorView v = slice_rows(i, 1, std::move(new_name));
    v.shape.erase(v.shape.begin());
    return v;
  }
};

/// An owned copy of a float tensor in `target` (BF16: rounded to nearest even; F32: widened exactly).
inline TensorView converted(const TensorView& t, DType target) {
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

}  // namespace dots1
