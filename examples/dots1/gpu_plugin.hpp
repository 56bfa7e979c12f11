// What the dots1 tool's CUDA plugin (libdots1-cuda.so, gpu_model.cu) exports: `extern "C" const PluginApi*
// dots1_cuda_plugin_api()`, whose `load` gives the model on the GPU behind tool_model.hpp. The tool and the
// plugin must come from the same build (they share ToolModel's layout); kVersion changes with the interface.
#pragma once

#include <memory>

#include "tool_model.hpp"

namespace dots1_cli {

struct PluginApi {
  static constexpr int kVersion = 2;
  int version = kVersion;
  std::unique_ptr<ToolModel> (*load)(const ModelRequest& request) = nullptr;
};
inline constexpr const char* kPluginFile = "libdots1-cuda.so";
inline constexpr const char* kPluginEntry = "dots1_cuda_plugin_api";

}  // namespace dots1_cli
