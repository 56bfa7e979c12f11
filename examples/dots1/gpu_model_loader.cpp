// gpu_model.hpp's entry points in the tool: the GPU model lives in a plugin, libdots1-cuda.so (gpu_model.cu,
// built by nvcc when DOTS1_ENABLE_CUDA is ON), which the tool loads with dlopen the first time a command asks
// for `--device cuda`. So the tool itself links neither the CUDA runtime nor cuBLAS: it starts and runs on the
// CPU on machines without them, and a CPU run does not pay for mapping them (~160 MB of RSS).
//
// Where the plugin is looked for: $DOTS1_CUDA_PLUGIN when set; otherwise beside the tool in the build tree
// (<bin>/../lib/dots1/) and in the install tree (<bindir>/../<libdir>/dots1/).
#include "gpu_model.hpp"

#include <dots1/error.hpp>

#if DOTS1_WITH_CUDA
#include <dlfcn.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#endif

namespace dots1_cli::gpu {

#if !DOTS1_WITH_CUDA

bool available() { return false; }

void require(const std::string& option) {
  throw dots1::InputError(option + ": this dots1 was built without CUDA (configure with -DDOTS1_ENABLE_CUDA=ON and a CUDA toolkit to use the GPU)");
}

std::unique_ptr<Model> Model::from_pretrained(const std::string&, dots1::WeightFormat) {
  require();
  return nullptr;
}

std::unique_ptr<Model> Model::random(const dots1::Dots1Config&, uint64_t, dots1::WeightFormat, int) {
  require();
  return nullptr;
}

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
    for (const auto& path : plugin_candidates()) {
      std::error_code ec;
      if (!std::filesystem::exists(path, ec)) {
        tried += (tried.empty() ? "" : ", ") + path.lexically_normal().string() + " (not found)";
        continue;
      }
      // never closed: the models it creates run its code until the process ends
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!handle) {
        const char* why = dlerror();
        tried += (tried.empty() ? "" : ", ") + path.lexically_normal().string() + " (" + (why ? why : "dlopen failed") + ")";
        continue;
      }
      const auto entry = reinterpret_cast<const PluginApi* (*)()>(dlsym(handle, kPluginEntry));
      const PluginApi* api = entry ? entry() : nullptr;
      if (!api || api->version != PluginApi::kVersion) {
        tried += (tried.empty() ? "" : ", ") + path.lexically_normal().string() + " (not a dots1 CUDA plugin of this version)";
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

}  // namespace

bool available() { return plugin().api != nullptr; }

void require(const std::string& option) {
  if (!available()) throw dots1::InputError(option + ": " + plugin().error);
}

std::unique_ptr<Model> Model::from_pretrained(const std::string& dir, dots1::WeightFormat format) {
  require();
  return plugin().api->from_pretrained(dir, format);
}

std::unique_ptr<Model> Model::random(const dots1::Dots1Config& config, uint64_t seed, dots1::WeightFormat format, int threads) {
  require();
  return plugin().api->random(config, seed, format, threads);
}

#endif

}  // namespace dots1_cli::gpu
