// dots1/base/atomic_file.hpp — the one way dots1 writes an output file (config.json, safetensors files,
// traces, reports), so that an interrupted or failed write never leaves a half-written file under the final
// name, and a write never destroys something that is not a file.
//
// By what the path is (symbolic links followed):
//   * a regular file, or nothing yet: written to a new temporary file beside it (same folder, unique name),
//     flushed to disk (fsync), then renamed over the target, which keeps the old file's permissions. The
//     target is replaced only once the new content is complete.
//   * a symbolic link: its target is written as above (the link stays a link, now to the new content); a
//     link to a missing file creates that file, as a shell's `>` does.
//   * a character device or a FIFO (/dev/null, /dev/stdout, a pipe from `>(cmd)`): written in place, as users of
//     `--out /dev/null` or `--out /dev/stdout` expect; no rename, which would replace the device node with a
//     regular file. A FIFO that no process reads is an error at once (opened with O_NONBLOCK), not a hang.
//   * a directory, a block device or a socket: refused with IoError (writing onto a disk device or
//     replacing a folder is never what an output option means).
// Every failure raises IoError with the system's cause (errno of open/write/fsync/close/rename, e.g. "No space
// left on device", "Permission denied"); the temporary file is removed.
#pragma once

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dots1/error.hpp"
#include "dots1/base/input_file.hpp"

namespace dots1::io {

namespace detail {

[[noreturn]] inline void write_failed(const std::string& what, int err) { throw IoError(what + ": " + std::strerror(err)); }

/// Writes every part to `fd`; returns 0 or the errno of the failed write.
template <class Parts>
int write_all(int fd, const Parts& parts) {
  for (const auto& part : parts) {
    const auto* p = reinterpret_cast<const char*>(part.data());
    size_t left = part.size() * sizeof(*part.data());
    while (left > 0) {
      const ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno;
      if (n == 0) return EIO;
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  return 0;
}

/// The file a symbolic link finally names (lexically, for links whose target does not exist yet).
inline std::filesystem::path link_target(const std::filesystem::path& link) {
  namespace fs = std::filesystem;
  fs::path p = link;
  for (int hop = 0; hop < 40; ++hop) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    std::error_code ec;
    const fs::path next = fs::read_symlink(p, ec);
    if (ec) throw IoError("cannot read the symbolic link " + shown(p.string()) + ": " + ec.message());
    p = next.is_absolute() ? next : p.parent_path() / next;
  }
  throw IoError("cannot write " + shown(link.string()) + ": too many levels of symbolic links");
}

/// In place, for character devices and FIFOs.
template <class Parts>
void write_in_place(const std::filesystem::path& path, mode_t mode, const Parts& parts) {
  const std::string name = shown(path.string());
  const bool fifo = S_ISFIFO(mode);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY | (fifo ? O_NONBLOCK : 0));
  if (fd < 0) {
    if (fifo && errno == ENXIO) throw IoError("cannot write " + name + ": it is a FIFO (named pipe) that no process is reading");
    write_failed("cannot open " + name + " for writing", errno);
  }
  if (fifo) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);  // a reader exists: wait for it as usual
  const int err = write_all(fd, parts);
  const int close_err = ::close(fd) != 0 ? errno : 0;
  if (err) write_failed("cannot write " + name, err);
  if (close_err && close_err != EINTR) write_failed("cannot write " + name + " (closing it)", close_err);
}

/// Through a temporary file beside `target` (a regular file or none), renamed over it.
template <class Parts>
void write_replacing(const std::filesystem::path& target, const struct stat* existing, const Parts& parts) {
  namespace fs = std::filesystem;
  static std::atomic<uint64_t> counter{0};
  const std::string name = shown(target.string());
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  fs::path tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {  // a unique name: O_EXCL never opens someone else's file
    std::string tmp_name = ".";  // appended piece by piece: GCC 12 warns (-Wrestrict) on a chain of + here
    tmp_name += target.filename().string();
    tmp_name += ".tmp.";
    tmp_name += std::to_string(::getpid());
    tmp_name += '.';
    tmp_name += std::to_string(counter++);
    tmp = dir / tmp_name;
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || attempt > 100))
      write_failed("cannot create a temporary file in " + shown(dir.string()) + " (writing " + name + ")", errno);
  }
  auto fail = [&](const std::string& what, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    write_failed(what, err);
  };
  if (existing) ::fchmod(fd, existing->st_mode & 07777);  // the replaced file's permissions, not the umask's
  if (const int err = write_all(fd, parts)) fail("cannot write " + name + " (to its temporary file " + shown(tmp.string()) + ")", err);
  if (::fsync(fd) != 0) fail("cannot write " + name + " (flushing its temporary file " + shown(tmp.string()) + ")", errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    write_failed("cannot write " + name + " (closing its temporary file)", err);
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    write_failed("cannot rename the temporary file " + shown(tmp.string()) + " to " + name, err);
  }
}

}  // namespace detail

/// Writes `parts` (concatenated; each a contiguous range of bytes or chars) to `path` as the file comment
/// describes.
template <class Parts>
void write_parts_atomically(const std::filesystem::path& path, const Parts& parts) {
  const std::string name = shown(path.string());
  if (path.empty()) throw IoError("cannot write an output file with an empty name");
  struct stat st {};
  std::filesystem::path target = path;
  bool exists = ::stat(path.c_str(), &st) == 0;  // follows links (also /proc/self/fd/N to pipes and terminals)
  if (!exists && errno != ENOENT) detail::write_failed("cannot write " + name, errno);
  if (exists && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) return detail::write_in_place(path, st.st_mode, parts);
  if (exists && !S_ISREG(st.st_mode))
    throw IoError("cannot write " + name + ": it is " + file_type_name(st.st_mode) +
                  "; dots1 writes outputs to regular files (or in place to character devices such as /dev/null, and to pipes)");
  struct stat lst {};
  if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    if (exists) {
      char* real = ::realpath(path.c_str(), nullptr);  // the regular file the link names
      if (!real) detail::write_failed("cannot resolve the symbolic link " + name, errno);
      target = real;
      std::free(real);
    } else {
      target = detail::link_target(path);  // a link to a file yet to be created
    }
  }
  detail::write_replacing(target, exists ? &st : nullptr, parts);
}

inline void write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  write_parts_atomically(path, std::array<std::string_view, 1>{content});
}

}  // namespace dots1::io
