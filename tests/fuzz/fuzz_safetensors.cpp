// libFuzzer target: SafetensorsFile::parse_buffer on arbitrary bytes (the whole file: length, header, data).
// Rejections must be SafetensorsError; an accepted file must describe tensors that lie inside the buffer,
// whose byte counts match dtype x shape, and whose every byte can be read; and, as HF's safetensors demands,
// sorted by offsets they tile the data section exactly (no hole, no overlap, an empty tensor included, no
// trailing byte).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include <dots1/io/safetensors.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // libFuzzer's buffer is a heap copy of exactly `size` bytes: ASan reports any read past it.
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto f = dots1::SafetensorsFile::parse_buffer(bytes, "fuzz.safetensors");
    std::vector<std::pair<const std::byte*, const std::byte*>> ranges;
    for (const auto& [name, t] : f.tensors()) {
      uint64_t numel = 1;
      for (int64_t d : t.shape) {
        FUZZ_CHECK(d >= 0, name);
        numel *= static_cast<uint64_t>(d);
      }
      FUZZ_CHECK(numel * dots1::dtype_size(t.dtype) == t.nbytes, name);
      FUZZ_CHECK(t.data >= bytes.data() + 8 && t.data + t.nbytes <= bytes.data() + size, name);
      ranges.emplace_back(t.data, t.data + t.nbytes);
      // Read every element through the public accessors (conversion code included).
      switch (t.dtype) {
        case dots1::DType::F32: case dots1::DType::F16: case dots1::DType::BF16: case dots1::DType::F64:
          FUZZ_CHECK(t.to_vector<float>().size() == numel, name);
          break;
        case dots1::DType::I64: case dots1::DType::I32: case dots1::DType::I16: case dots1::DType::I8:
        case dots1::DType::U8: case dots1::DType::BOOL:
          FUZZ_CHECK(t.to_int64().size() == numel, name);
          break;
        default:  // U16/U32/U64/F8: no converting accessor; touch the bytes
          for (size_t i = 0; i < t.nbytes; ++i) (void)static_cast<volatile uint8_t>(static_cast<uint8_t>(t.data[i]));
      }
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    std::sort(ranges.begin(), ranges.end());
    const std::byte* covered = bytes.data() + 8 + n;  // the data section's first byte
    for (const auto& [begin, end] : ranges) {
      FUZZ_CHECK(begin == covered, "a hole or an overlap accepted");
      covered = end;
    }
    FUZZ_CHECK(covered == bytes.data() + size, "bytes after the last tensor accepted");
  } catch (const dots1::SafetensorsError&) {
  }
  return 0;
}
