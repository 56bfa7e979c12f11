// The dots1 tool's subcommands. Each cmd_*.cpp registers its subcommand with a RegisterCommand object;
// main.cpp builds the CLI from the registry, so adding a subcommand touches only its own file.
#pragma once

#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

namespace dots1_cli {

using AddCommand = std::function<void(CLI::App&)>;

/// (order in --help, adder) for every subcommand linked into the tool.
inline std::vector<std::pair<int, AddCommand>>& registry() {
  static std::vector<std::pair<int, AddCommand>> commands;
  return commands;
}

struct RegisterCommand {
  RegisterCommand(int order, AddCommand add) { registry().emplace_back(order, std::move(add)); }
};

/// Subcommands defined by name (registered from their own files with RegisterCommand).
void add_tokenize_command(CLI::App& app);

/// The model folder shipped with dots1 (examples/models/kjv-tiny), the default for --model.
inline std::string default_model_dir() { return std::string(DOTS1_SOURCE_DIR) + "/examples/models/kjv-tiny"; }

}  // namespace dots1_cli
