// The dots1 tool's subcommands. Each cmd_*.cpp defines one add_*_command, called from main.cpp.
#pragma once

#include <CLI/CLI.hpp>

namespace dots1_cli {

void add_info_command(CLI::App& app);
void add_forward_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);

}  // namespace dots1_cli
