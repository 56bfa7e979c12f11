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

/// This rank's shard with its weight matrices converted to `format` when loading (dots1 generate --dtype).
inline dots1::CpuModel load_cpu_model(const std::string& dir, const std::shared_ptr<const dots1::Parallel>& par, dots1::WeightFormat format) {
  if (format == dots1::WeightFormat::as_stored) return load_cpu_model(dir, par);
  const auto checkpoint = dots1::Checkpoint::open(dir);
  if (!par->is_single()) return dots1::CpuModel(checkpoint.config(), checkpoint, format, par);
  const dots1::ProgressWeightSource progress(checkpoint, dots1::terminal_progress_bar());
  return dots1::CpuModel(checkpoint.config(), progress, format);
}

}  // namespace dots1_cli
