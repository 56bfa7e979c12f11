// gpu_model.hpp without CUDA: the tool was built without DOTS1_ENABLE_CUDA (gpu_model.cu is not compiled),
// so `--device cuda` fails with a clear message.
#if !DOTS1_WITH_CUDA
#include "gpu_model.hpp"

#include <dots1/error.hpp>

namespace dots1_cli::gpu {

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

}  // namespace dots1_cli::gpu
#endif
