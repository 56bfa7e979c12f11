// Loading a checkpoint for the tool's subcommands: with a progress bar (tensors and bytes) on stderr when
// stdout is a terminal, silent otherwise.
#pragma once

#include <string>

#include "cpu_model.hpp"
#include <dots1/io/load_progress.hpp>

namespace dots1_cli {

inline dots1::CpuModel load_cpu_model(const std::string& dir) {
  const auto checkpoint = dots1::Checkpoint::open(dir);
  const dots1::ProgressWeightSource source(checkpoint, dots1::terminal_progress_bar());
  return dots1::CpuModel(checkpoint.config(), source);  // weights keep their file mapping alive
}

/// This rank's shard of the model (the whole model when `par` is single), without a progress bar when split.
inline dots1::CpuModel load_cpu_model(const std::string& dir, const std::shared_ptr<const dots1::Parallel>& par) {
  if (par->is_single()) return load_cpu_model(dir);
  const auto checkpoint = dots1::Checkpoint::open(dir);
  return dots1::CpuModel(checkpoint.config(), checkpoint, par);
}

}  // namespace dots1_cli
