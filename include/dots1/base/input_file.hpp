// dots1/base/input_file.hpp — the one way dots1 opens a file it reads (config.json, tokenizer.json and its
// companions, generation_config.json, safetensors files (memory-mapped too), forward inputs, traces, prompt
// files): regular files only, checked before anything is read.
//
// A FIFO would block the reader forever and has no size; a directory, a device node or a socket is not a
// file of any format dots1 reads (and reading /dev/zero would never end). So the path is first checked with
// stat() (no open, so no FIFO or device is ever opened for reading in blocking mode), then opened with
// O_NONBLOCK and checked again with fstat() (in case the path changed in between); anything but a regular
// file raises IoError naming the path and what it is. A symbolic link is followed (to a regular file, fine).
// Files read whole have a size limit per format (base/limits.hpp), checked before reading, and read errors
// report the system's cause (errno).
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dots1/error.hpp"
#include "dots1/base/memory_check.hpp"

namespace dots1::io {

/// What a file of this mode is, for messages ("a directory", "a FIFO (named pipe)", ...).
inline const char* file_type_name(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

/// A regular file open for reading (see the file comment). `what` names it in messages ("config file").
class InputFile {
 public:
  static InputFile open(const std::filesystem::path& path, std::string_view what) {
    InputFile f;
    f.path_ = path.string();
    f.what_ = std::string(what);
    struct stat st {};
    if (::stat(f.path_.c_str(), &st) != 0) f.fail_errno("cannot open");
    if (!S_ISREG(st.st_mode)) f.fail_type(st.st_mode);
    f.fd_ = ::open(f.path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (f.fd_ < 0) f.fail_errno("cannot open");
    if (::fstat(f.fd_, &st) != 0) f.fail_errno("cannot stat");
    if (!S_ISREG(st.st_mode)) f.fail_type(st.st_mode);
    f.size_ = static_cast<uint64_t>(st.st_size);
    return f;
  }

  InputFile(InputFile&& o) noexcept : fd_(std::exchange(o.fd_, -1)), size_(o.size_), path_(std::move(o.path_)), what_(std::move(o.what_)) {}
  InputFile& operator=(InputFile&& o) noexcept {
    if (this != &o) {
      close_fd();
      fd_ = std::exchange(o.fd_, -1);
      size_ = o.size_;
      path_ = std::move(o.path_);
      what_ = std::move(o.what_);
    }
    return *this;
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile() { close_fd(); }

  int fd() const noexcept { return fd_; }
  uint64_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

  /// The whole file; IoError when it is larger than `max_bytes` (checked before reading) or a read fails.
  std::string read_all(uint64_t max_bytes) const {
    if (size_ > max_bytes)
      throw IoError(what_ + " " + shown(path_) + " is " + format_bytes(size_) + " (" + std::to_string(size_) + " bytes), more than the " +
                    format_bytes(max_bytes) + " a " + what_ + " may have");
    check_allocation(size_, "reading " + what_ + " " + shown(path_));
    std::string text(static_cast<size_t>(size_), '\0');
    size_t got = 0;
    while (got < text.size()) {
      const ssize_t n = ::read(fd_, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail_errno("cannot read");
      if (n == 0) break;  // the file shrank while being read
      got += static_cast<size_t>(n);
    }
    text.resize(got);
    return text;
  }

 private:
  InputFile() = default;
  void close_fd() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  [[noreturn]] void fail_errno(const char* action) const {
    const int e = errno;
    throw IoError(std::string(action) + " " + what_ + " " + shown(path_) + ": " + std::strerror(e));
  }
  [[noreturn]] void fail_type(mode_t mode) const {
    throw IoError(what_ + " " + shown(path_) + " is " + file_type_name(mode) + ", not a regular file (dots1 reads " + what_ +
                  "s from regular files only)");
  }

  int fd_ = -1;
  uint64_t size_ = 0;
  std::string path_, what_;
};

/// The whole of a regular file of at most `max_bytes` bytes (see InputFile).
inline std::string read_input_file(const std::filesystem::path& path, std::string_view what, uint64_t max_bytes) {
  return InputFile::open(path, what).read_all(max_bytes);
}

}  // namespace dots1::io
