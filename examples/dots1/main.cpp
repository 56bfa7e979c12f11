// dots1 — the command-line tool. A thin client of the public API: every subcommand is a few library
// calls (see cmd_*.cpp). Errors from the library end the program with one line and exit code 1.
#include <cstdio>
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
    return app.exit(e);
  } catch (const dots1::Error& e) {
    std::fprintf(stderr, "dots1: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dots1: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
