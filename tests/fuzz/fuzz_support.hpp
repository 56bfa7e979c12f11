// Helpers shared by the libFuzzer targets in tests/fuzz.
//
// A target reports a bug by aborting (libFuzzer then saves the input as crash-*): a sanitizer report, an
// exception that is not the dots1 error type the API documents (it escapes LLVMFuzzerTestOneInput and
// terminates), or a FUZZ_CHECK that fails. Expected rejections (the typed dots1 errors) are caught.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

/// An invariant that must hold for every input the library accepts.
#define FUZZ_CHECK(cond, what)                                                                       \
  do {                                                                                               \
    if (!(cond)) {                                                                                   \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond,        \
                   std::string(what).c_str());                                                       \
      std::abort();                                                                                  \
    }                                                                                                \
  } while (0)

namespace dots1_fuzz {

/// A file the target needs: $env if set, else `fallback` (a path compiled in by CMake).
inline std::filesystem::path data_path(const char* env, const std::filesystem::path& fallback) {
  const char* v = std::getenv(env);
  return v && *v ? std::filesystem::path(v) : fallback;
}

}  // namespace dots1_fuzz
