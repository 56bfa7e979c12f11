// dots1/io/safetensors.hpp — memory-mapped safetensors reader and an atomic writer.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data; offsets are relative to the first byte after the header. Every malformed case
// (header length beyond the file, bad JSON, duplicate or non-UTF-8 names, unknown dtype, shape/byte-count
// mismatch, offsets out of range or overlapping) raises SafetensorsError naming the file and tensor.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "dots1/error.hpp"
#include "dots1/base/atomic_file.hpp"
#include "dots1/base/tensor.hpp"

namespace dots1 {

namespace detail {

/// A read-only memory mapping, unmapped when the last owner goes away.
struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) ::munmap(addr, size);
  }
};

}  // namespace detail

/// A memory-mapped safetensors file.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path) {
    SafetensorsFile f;
    f.path_ = path.string();
    const int fd = ::open(f.path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw IoError("cannot open safetensors file " + f.path_ + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw IoError("cannot stat " + f.path_);
    }
    const auto size = static_cast<size_t>(st.st_size);
    auto mapping = std::make_shared<detail::Mapping>();
    if (size > 0) {
      mapping->addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      mapping->size = size;
    }
    ::close(fd);
    if (size > 0 && mapping->addr == MAP_FAILED) throw IoError("cannot map " + f.path_ + ": " + std::strerror(errno));
    f.mapping_ = mapping;
    f.parse(static_cast<const std::byte*>(mapping->addr), size);
    return f;
  }

  /// Parses an in-memory safetensors image (the buffer must outlive the returned object unless `owner` keeps it).
  static SafetensorsFile parse_buffer(std::span<const std::byte> bytes, std::string name, std::shared_ptr<const void> owner = {}) {
    SafetensorsFile f;
    f.path_ = std::move(name);
    f.mapping_ = std::move(owner);
    f.parse(bytes.data(), bytes.size());
    return f;
  }

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorView* find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
  }
  const TensorView& at(const std::string& name) const {
    if (auto* t = find(name)) return *t;
    throw SafetensorsError("tensor '" + name + "' not found in " + path_);
  }

 private:
  void fail(const std::string& what) const { throw SafetensorsError(path_ + ": " + what); }

  void parse(const std::byte* base, size_t size) {
    if (size < 8) fail("file too short (" + std::to_string(size) + " bytes) for the 8-byte header length");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(base[i]);
    if (n > size - 8)
      fail("header length " + std::to_string(n) + " exceeds the file (" + std::to_string(size - 8) + " bytes after the length)");
    const char* hbegin = reinterpret_cast<const char*>(base + 8);
    std::set<std::string> seen;
    std::string duplicate;
    nlohmann::json::parser_callback_t cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
      if (depth == 1 && ev == nlohmann::json::parse_event_t::key) {
        const auto& k = parsed.get_ref<const std::string&>();
        if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
      }
      return true;
    };
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(hbegin, hbegin + n, cb);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("malformed JSON header: ") + e.what());
    }
    if (!duplicate.empty()) fail("duplicate tensor name '" + duplicate + "' in the header");
    if (!header.is_object()) fail("header is not a JSON object");
    const std::byte* data = base + 8 + n;
    const uint64_t data_size = size - 8 - n;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    std::vector<std::string> range_names;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) fail("__metadata__ must be an object of strings");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string()) fail("__metadata__ value for '" + m.key() + "' must be a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const std::string where = "tensor '" + name + "': ";
      if (!v.is_object()) fail(where + "entry must be an object");
      if (!v.contains("dtype") || !v["dtype"].is_string()) fail(where + "missing or non-string 'dtype'");
      if (!v.contains("shape") || !v["shape"].is_array()) fail(where + "missing or non-array 'shape'");
      if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
        fail(where + "'data_offsets' must be [begin, end]");
      TensorView t;
      t.name = name;
      t.file = path_;
      t.keepalive = mapping_;
      const auto dtype_str = v["dtype"].get<std::string>();
      if (!parse_dtype(dtype_str, t.dtype)) fail(where + "unknown dtype '" + dtype_str + "'");
      // At most 2^60 elements, so that numel * dtype_size (<= 8) cannot wrap in 64 bits and every dimension
      // fits the int64 shape (also for an empty tensor, whose element count stays 0).
      constexpr uint64_t kMaxElements = uint64_t(1) << 60;
      uint64_t numel = 1;
      for (const auto& d : v["shape"]) {
        if (!d.is_number_unsigned()) fail(where + "shape entries must be non-negative integers");
        const uint64_t dim = d.get<uint64_t>();
        if (dim > kMaxElements || (dim != 0 && numel > kMaxElements / dim))
          fail(where + "shape entry " + d.dump() + " overflows the element count (limit 2^60)");
        numel *= dim;
        t.shape.push_back(static_cast<int64_t>(dim));
      }
      const auto& off = v["data_offsets"];
      if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) fail(where + "data_offsets must be non-negative integers");
      const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
      if (b > e) fail(where + "data_offsets begin " + std::to_string(b) + " > end " + std::to_string(e));
      if (e > data_size)
        fail(where + "data_offsets end " + std::to_string(e) + " is beyond the data section (" + std::to_string(data_size) +
             " bytes; file truncated?)");
      const uint64_t expected = numel * dtype_size(t.dtype);
      if (e - b != expected)
        fail(where + "shape " + t.shape_string() + " of " + dtype_str + " needs " + std::to_string(expected) + " bytes but data_offsets span " +
             std::to_string(e - b));
      t.data = data + b;
      t.nbytes = static_cast<size_t>(e - b);
      ranges.emplace_back(b, e);
      range_names.push_back(name);
      tensors_.emplace(name, std::move(t));
    }
    std::vector<size_t> order(ranges.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
    for (size_t i = 1; i < order.size(); ++i) {
      const auto& prev = ranges[order[i - 1]];
      const auto& cur = ranges[order[i]];
      if (cur.first < prev.second && cur.first != cur.second && prev.first != prev.second)
        fail("tensors '" + range_names[order[i - 1]] + "' and '" + range_names[order[i]] + "' overlap in the data section");
    }
  }

  std::string path_;
  std::shared_ptr<const void> mapping_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// One tensor to write: raw little-endian bytes of `dtype` with `shape`.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;

  template <class T>
  static TensorToWrite from(std::string name, std::vector<int64_t> shape, std::span<const T> values) {
    TensorToWrite t;
    t.name = std::move(name);
    t.shape = std::move(shape);
    if constexpr (std::is_same_v<T, float>) t.dtype = DType::F32;
    else if constexpr (std::is_same_v<T, double>) t.dtype = DType::F64;
    else if constexpr (std::is_same_v<T, int64_t>) t.dtype = DType::I64;
    else if constexpr (std::is_same_v<T, int32_t>) t.dtype = DType::I32;
    else static_assert(sizeof(T) == 0, "unsupported element type");
    t.bytes.resize(values.size_bytes());
    std::memcpy(t.bytes.data(), values.data(), values.size_bytes());
    return t;
  }
};

/// Serialises tensors (and optional string metadata) to the safetensors byte layout.
inline std::vector<std::byte> serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                                                    const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second) throw SafetensorsError("cannot write two tensors named '" + t.name + "'");
    int64_t numel = 1;
    for (auto d : t.shape) numel *= d;
    if (static_cast<uint64_t>(numel) * dtype_size(t.dtype) != t.bytes.size())
      throw SafetensorsError("tensor '" + t.name + "' to write: shape does not match its byte count");
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // keep the data section 8-byte aligned
  std::vector<std::byte> out(8 + h.size() + offset);
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, h.data(), h.size());
  size_t pos = 8 + h.size();
  for (const auto& t : tensors) {
    if (!t.bytes.empty()) std::memcpy(out.data() + pos, t.bytes.data(), t.bytes.size());
    pos += t.bytes.size();
  }
  return out;
}

/// Writes a safetensors file atomically (temporary file + rename).
inline void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  auto bytes = serialize_safetensors(tensors, metadata);
  io::write_parts_atomically(path, std::array<std::span<const std::byte>, 1>{std::span<const std::byte>(bytes)});
}

}  // namespace dots1
