// dots1 — the command-line tool. A thin client of the public API: every subcommand is a few library
// calls (see cmd_*.cpp). Errors from the library end the program with one line and exit code 1; so does a
// failed write to standard output (a full disk, a closed pipe), with its cause.
//
// DOTS1_ERROR_TYPES=1 in the environment adds the dots1 error type to that line ("dots1: error [InputError]:
// ..."), which the bad-input tests check.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <dots1/error.hpp>

#include "commands.hpp"

namespace {

/// `dots1 --version`: the project version (CMake's project(VERSION)) and the facts of this build.
std::string version_text() {
#if defined(__clang__)
  const std::string compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
  const std::string compiler = "g++ " __VERSION__;
#else
  const std::string compiler = "unknown compiler";
#endif
  std::string v = "dots1 " DOTS1_VERSION " (" + compiler + ", C++" + std::to_string(__cplusplus / 100 % 100);
#if DOTS1_WITH_CUDA
  v += ", CUDA on";
#else
  v += ", CUDA off";
#endif
#if DOTS1_WITH_MPI
  v += ", MPI on";
#else
  v += ", MPI off";
#endif
#ifdef NDEBUG
  v += ", release";
#else
  v += ", debug";
#endif
  return v + ")";
}

int report(const std::exception& e) {
  const char* typed = std::getenv("DOTS1_ERROR_TYPES");
  const std::string type = dots1::error_type_name(e);
  if (typed && std::string(typed) == "1") std::fprintf(stderr, "dots1: error [%s]: %s\n", type.empty() ? "other" : type.c_str(), e.what());
  else std::fprintf(stderr, "dots1: error: %s\n", e.what());
  return 1;
}

/// Whatever the command printed must have reached its destination: a write error (stdout on a full disk,
/// /dev/full, a pipe closed early) is an error of the run, not a silent success.
int check_stdout() {
  // A failed write earlier (each answer is flushed as it is printed) left its errno; glibc keeps only the error
  // flag. Nothing since has reset errno (only failing calls set it), so it is the best account of the cause.
  const int earlier = errno;
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  if (flushed && !std::ferror(stdout)) return 0;
  int err = !flushed && errno ? errno : earlier;
  // errno may have been set since by an unrelated failing call: only a write's errors are believed.
  if (err != ENOSPC && err != EDQUOT && err != EFBIG && err != EIO && err != EPIPE && err != EBADF && err != EROFS && err != EAGAIN &&
      err != ENXIO && err != EINVAL && err != ECONNRESET)
    err = 0;
  return report(dots1::IoError(std::string("cannot write the output to standard output: ") + (err ? std::strerror(err) : "an earlier write failed")));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dots1: run, study and teach rednote-hilab's dots.llm1 (Dots1) from C++"};
  app.set_version_flag("--version", version_text(), "print the version and build (compiler, CUDA, MPI) and exit");
  app.require_subcommand(1);
  auto& commands = dots1_cli::registry();
  std::stable_sort(commands.begin(), commands.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, add] : commands) add(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return check_stdout() ? 1 : rc;
  } catch (const std::exception& e) {
    check_stdout();
    return report(e);
  }
  return check_stdout();
}
