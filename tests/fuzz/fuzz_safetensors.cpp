// libFuzzer target: SafetensorsFile::parse_buffer on arbitrary bytes (the whole file: length, header, data).
// Rejections must be SafetensorsError; an accepted file must describe tensors that lie inside the buffer,
// whose byte counts match dtype x shape, that do not overlap, and whose every byte can be read.
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
      if (t.nbytes > 0) ranges.emplace_back(t.data, t.data + t.nbytes);
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
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) FUZZ_CHECK(ranges[i].first >= ranges[i - 1].second, "overlapping tensors accepted");
  } catch (const dots1::SafetensorsError&) {
  }
  return 0;
}
