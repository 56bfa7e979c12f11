// load_model(device, request) (tool_model.hpp): the CPU model is cpu_model.cpp's; the GPU model lives in a
// plugin, libdots1-cuda.so (gpu_model.cu, built by nvcc when DOTS1_ENABLE_CUDA is ON), which the tool loads
// with dlopen the first time a command asks for `--device cuda`. So the tool itself links neither the CUDA
// runtime nor cuBLAS: it starts and runs on the CPU on machines without them, and a CPU run does not pay for
// mapping them (~160 MB of RSS).
//
// Where the plugin is looked for: $DOTS1_CUDA_PLUGIN when set; otherwise beside the tool in the build tree
// (<bin>/../lib/dots1/) and in the install tree (<bindir>/../<libdir>/dots1/).
#include "gpu_plugin.hpp"
#include "tool_model.hpp"

#include <dots1/error.hpp>

#if DOTS1_WITH_CUDA
#include <dlfcn.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#endif

namespace dots1_cli {

#if !DOTS1_WITH_CUDA

namespace {
std::unique_ptr<ToolModel> load_cuda_model(const ModelRequest&) {
  throw dots1::InputError("--device cuda: this dots1 was built without CUDA (configure with -DDOTS1_ENABLE_CUDA=ON and a CUDA toolkit to use the GPU)");
}
}  // namespace

#else

namespace {

std::filesystem::path executable_dir() {
  std::array<char, 4096> buf{};
  const ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return {};
  return std::filesystem::path(std::string(buf.data(), static_cast<size_t>(n))).parent_path();
}

std::vector<std::filesystem::path> plugin_candidates() {
  if (const char* env = std::getenv("DOTS1_CUDA_PLUGIN"); env && *env) return {env};
  const auto bin = executable_dir();
  std::vector<std::filesystem::path> paths = {bin / ".." / "lib" / "dots1" / kPluginFile};
  if (std::string(DOTS1_INSTALL_LIBDIR) != "lib") paths.push_back(bin / ".." / DOTS1_INSTALL_LIBDIR / "dots1" / kPluginFile);
  return paths;
}

struct Loaded {
  const PluginApi* api = nullptr;
  std::string error;  // why it could not be loaded
};

const Loaded& plugin() {
  static const Loaded loaded = [] {
    Loaded l;
    std::string tried;
    auto refused = [&](const std::filesystem::path& path, const std::string& why) {
      tried += (tried.empty() ? "" : ", ") + path.lexically_normal().string() + " (" + why + ")";
    };
    for (const auto& path : plugin_candidates()) {
      std::error_code ec;
      if (!std::filesystem::exists(path, ec)) {
        refused(path, "not found");
        continue;
      }
      // never closed: the models it creates run its code until the process ends
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!handle) {
        const char* why = dlerror();
        refused(path, why ? why : "dlopen failed");
        continue;
      }
      const auto entry = reinterpret_cast<const PluginApi* (*)()>(dlsym(handle, kPluginEntry));
      const PluginApi* api = entry ? entry() : nullptr;
      if (!api || api->version != PluginApi::kVersion) {
        refused(path, "not a dots1 CUDA plugin of this version");
        continue;
      }
      l.api = api;
      return l;
    }
    l.error = "the CUDA plugin of this dots1 could not be loaded: " + tried;
    return l;
  }();
  return loaded;
}

std::unique_ptr<ToolModel> load_cuda_model(const ModelRequest& request) {
  if (!plugin().api) throw dots1::InputError("--device cuda: " + plugin().error);
  return plugin().api->load(request);
}

}  // namespace

#endif

std::unique_ptr<ToolModel> load_model(const std::string& device, const ModelRequest& request) {
  if (device == "cuda") return load_cuda_model(request);
  if (device != "cpu") throw dots1::InputError("--device: '" + device + "' is not cpu or cuda");
  return load_cpu_model(request);
}

}  // namespace dots1_cli
