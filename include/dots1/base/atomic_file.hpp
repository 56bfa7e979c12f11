// dots1/base/atomic_file.hpp — write a file so that an interrupted write never leaves a half-written file
// under the final name: write to a temporary file beside it, flush, then rename over the target.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <array>
#include <system_error>
#include <unistd.h>

#include "dots1/error.hpp"

namespace dots1::io {

/// Writes `parts` (concatenated) to `path` atomically (temporary file + rename).
template <class Parts>
void write_parts_atomically(const std::filesystem::path& path, const Parts& parts) {
  namespace fs = std::filesystem;
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw IoError("cannot create " + tmp.string() + " (writing " + path.string() + ")");
    for (const auto& part : parts) out.write(reinterpret_cast<const char*>(part.data()), static_cast<std::streamsize>(part.size()));
    out.flush();
    if (!out) {
      out.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      throw IoError("write failed for " + tmp.string() + " (writing " + path.string() + ")");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw IoError("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
  }
}

inline void write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  write_parts_atomically(path, std::array<std::string_view, 1>{content});
}

}  // namespace dots1::io
