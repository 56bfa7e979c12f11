// dots1/io/safetensors.hpp — memory-mapped safetensors reader and an atomic writer.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data; offsets are relative to the first byte after the header. The reader is as strict as HF's
// safetensors crate (safetensors/src/tensor.rs, read_metadata + Metadata::validate), and stricter where HF
// would silently pick one of two readings: SafetensorsError naming the file and tensor for
//   * a header length beyond the file or above HF's MAX_HEADER_SIZE (100 MB), a header that is not UTF-8 JSON
//     (nested at most 128 deep, base/json_input.hpp) or holds a NUL byte (HF pads with spaces, which are
//     allowed; nlohmann would stop reading at a NUL and ignore what follows);
//   * a key given twice anywhere in the header (two tensors of one name, or "dtype" twice in one entry),
//     an entry with keys other than dtype, shape and data_offsets, an unknown dtype, a shape whose element
//     or byte count overflows, a byte span that does not match dtype x shape;
//   * data offsets that do not tile the data section exactly: sorted by (begin, end), each tensor must begin
//     where the previous one ended and the last must end at the end of the file, so there are no holes, no
//     overlaps (an empty tensor placed inside another counts as one) and no trailing bytes.
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
#include "dots1/base/input_file.hpp"
#include "dots1/base/json_input.hpp"
#include "dots1/base/limits.hpp"

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
    const auto file = io::InputFile::open(path, "safetensors file");  // regular files only (base/input_file.hpp)
    const auto size = static_cast<size_t>(file.size());
    auto mapping = std::make_shared<detail::Mapping>();
    if (size > 0) {
      mapping->addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file.fd(), 0);
      if (mapping->addr == MAP_FAILED) throw IoError("cannot map " + shown(f.path_) + ": " + std::strerror(errno));
      mapping->size = size;
    }
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
  [[noreturn]] void fail(const std::string& what) const { throw SafetensorsError(shown(path_) + ": " + what); }

  void parse(const std::byte* base, size_t size) {
    if (size < 8) fail("file too short (" + std::to_string(size) + " bytes) for the 8-byte header length");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(base[i]);
    if (n > size - 8)
      fail("header length " + std::to_string(n) + " exceeds the file (" + std::to_string(size - 8) + " bytes after the length)");
    if (n > limits::kMaxSafetensorsHeaderBytes)
      fail("header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(limits::kMaxSafetensorsHeaderBytes) +
           " bytes (HF safetensors' MAX_HEADER_SIZE)");
    const std::string_view htext(reinterpret_cast<const char*>(base + 8), static_cast<size_t>(n));
    if (const std::string problem = io::json_prescan_problem(htext); !problem.empty())
      fail("malformed JSON header: " + problem + (problem.find("NUL") != std::string::npos ? "; HF safetensors pads headers with spaces only" : ""));
    check_allocation(checked_bytes({static_cast<int64_t>(n), 16}), shown(path_) + ": parsing its " + std::to_string(n) + "-byte header");
    // Every object's keys, to refuse a key given twice (nlohmann keeps the last silently; serde errs).
    std::vector<std::set<std::string>> keys;
    std::string entry;  // the tensor whose entry is being read (the last key at depth 1)
    std::string duplicate;
    nlohmann::json::parser_callback_t cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
      using E = nlohmann::json::parse_event_t;
      if (ev == E::object_start) keys.emplace_back();
      else if (ev == E::object_end && !keys.empty()) keys.pop_back();
      else if (ev == E::key && !keys.empty()) {
        const auto& k = parsed.get_ref<const std::string&>();
        if (depth == 1) entry = k;
        if (!keys.back().insert(k).second && duplicate.empty())
          duplicate = depth == 1 ? "duplicate tensor name '" + shown(k) + "' in the header"
                                 : "key '" + shown(k) + "' appears twice in the entry of '" + shown(entry) + "'";
      }
      return true;
    };
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(htext.begin(), htext.end(), cb);
    } catch (const nlohmann::json::exception& e) {
      fail("malformed JSON header: " + io::json_error_text(e));
    }
    if (!duplicate.empty()) fail(duplicate);
    if (!header.is_object()) fail("header is not a JSON object");
    const std::byte* data = base + 8 + n;
    const uint64_t data_size = size - 8 - n;
    struct Range {
      uint64_t begin, end;
      const std::string* name;
    };
    std::vector<Range> ranges;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        if (v.is_null()) continue;  // HF: Option<HashMap<String, String>>
        if (!v.is_object()) fail("__metadata__ must be an object of strings");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string()) fail("__metadata__ value for '" + shown(m.key()) + "' must be a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const std::string where = "tensor '" + shown(name) + "': ";
      if (!v.is_object()) fail(where + "entry must be an object");
      for (auto k = v.begin(); k != v.end(); ++k)
        if (k.key() != "dtype" && k.key() != "shape" && k.key() != "data_offsets")
          fail(where + "unknown key '" + shown(k.key()) + "' in its entry (expected dtype, shape, data_offsets)");
      if (!v.contains("dtype") || !v["dtype"].is_string()) fail(where + "missing or non-string 'dtype'");
      if (!v.contains("shape") || !v["shape"].is_array()) fail(where + "missing or non-array 'shape'");
      if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
        fail(where + "'data_offsets' must be [begin, end]");
      TensorView t;
      t.name = name;
      t.file = path_;
      t.keepalive = mapping_;
      const auto& dtype_str = v["dtype"].get_ref<const std::string&>();
      if (!parse_dtype(dtype_str, t.dtype)) fail(where + "unknown dtype '" + shown(dtype_str) + "'");
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
      const auto placed = tensors_.emplace(name, std::move(t)).first;
      ranges.push_back({b, e, &placed->first});
    }
    // HF's Metadata::validate: in (begin, end) order every tensor starts where the previous one ended, and the
    // last ends at the end of the file.
    std::stable_sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return std::pair(a.begin, a.end) < std::pair(b.begin, b.end); });
    uint64_t covered = 0;
    const std::string* previous = nullptr;
    for (const auto& r : ranges) {
      if (r.begin < covered)
        fail("tensors '" + shown(*previous) + "' and '" + shown(*r.name) + "' overlap in the data section (bytes [" + std::to_string(r.begin) +
             ", " + std::to_string(std::min(covered, r.end == r.begin ? covered : r.end)) + ")" +
             (r.begin == r.end ? "; an empty tensor must not lie inside another" : "") + ")");
      if (r.begin > covered)
        fail("bytes [" + std::to_string(covered) + ", " + std::to_string(r.begin) + ") of the data section belong to no tensor (a hole before '" +
             shown(*r.name) + "'; HF safetensors refuses such files)");
      covered = r.end;
      previous = r.name;
    }
    if (covered != data_size)
      fail("the data section has " + std::to_string(data_size - covered) + " bytes after the last tensor (tensors cover " + std::to_string(covered) +
           " of its " + std::to_string(data_size) + " bytes; HF safetensors refuses trailing bytes)");
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
  std::string h;
  try {
    h = header.dump();
  } catch (const nlohmann::json::type_error&) {  // dump() refuses strings that are not UTF-8
    throw SafetensorsError("cannot write a safetensors header: a tensor name or metadata value is not valid UTF-8 (the header is UTF-8 JSON)");
  }
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
