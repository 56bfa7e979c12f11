// dots1 — the command-line tool. A thin client of the public API: every subcommand is a few library
// calls (see cmd_*.cpp). Errors from the library end the program with one line and exit code 1.
#include <cstdio>
#include <exception>

#include <dots1/error.hpp>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"dots1: run, study and teach rednote-hilab's dots.llm1 (Dots1) from C++"};
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
