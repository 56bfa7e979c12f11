// The dots1 tool's model on the CPU (dots1::CpuModel behind tool_model.hpp): the one translation unit that
// compiles it, so that a change to a block rebuilds this file and not every subcommand.
#include <omp.h>

#include <dots1/eigen.hpp>
#include <dots1/instantiate.hpp>

#include "tool_model_impl.hpp"

DOTS1_INSTANTIATE_MODEL(dots1::CausalLM<dots1::EigenBackend<float>, dots1::Dots1>)

namespace dots1_cli {

namespace {

struct Cpu {
  static void synchronize() {}
  static std::string name() { return "cpu (" + std::to_string(omp_get_max_threads()) + " thread(s))"; }
  static std::shared_ptr<dots1::Communicator> communicator(std::shared_ptr<dots1::Communicator> world) { return world; }  // MPI
};

}  // namespace

std::unique_ptr<ToolModel> load_cpu_model(const ModelRequest& request) { return load_tool_model<dots1::CpuModel, Cpu>(request); }

}  // namespace dots1_cli
