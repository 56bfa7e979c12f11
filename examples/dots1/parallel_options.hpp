// `--parallel ep=N|tp=N|ep=a,tp=b` for `dots1 forward|generate|bench`: the model split across the processes
// of an MPI run (mpirun -np N dots1 ...), each loading only its shard of the checkpoint; only rank 0 prints.
// On the GPU (--device cuda) the ranks talk over NCCL, bootstrapped over MPI.
// Without --parallel and outside mpirun nothing changes (no MPI is initialised). Under mpirun with several
// ranks and no --parallel, the experts are split over all ranks (ep=N).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include <dots1/config.hpp>
#include <dots1/error.hpp>
#include <dots1/parallel/plan.hpp>

#include "tool_model.hpp"
#if DOTS1_WITH_MPI
#include <dots1/parallel/mpi.hpp>
#endif

namespace dots1_cli {

/// Whether this process was started by an MPI launcher with more than one rank (Open MPI, MPICH/Hydra).
inline bool launched_by_mpirun() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(name); v && std::atoi(v) > 1) return true;
  return false;
}

#if DOTS1_WITH_MPI
/// MPI for the whole run: initialised on first use, finalised when the program ends.
inline dots1::MpiSession& mpi_session() {
  static dots1::MpiSession session;
  return session;
}
#endif

struct ParallelOptions {
  std::string spec;  // --parallel

  void add_to(CLI::App* cmd) {
    cmd->add_option("--parallel", spec,
                    "split the model over the ranks of an MPI run (mpirun -np N): ep=N (experts), tp=N (attention, dense MLP, shared "
                    "experts, LM head) or ep=a,tp=b; default under mpirun: ep=N");
  }

  /// The split of this run into `request` (the plan, and MPI's world for the device's communicators), unless
  /// the model is whole: no --parallel and not started by mpirun with several ranks.
  void request(ModelRequest& request, const dots1::Dots1Config& config) const {
    if (spec.empty() && !launched_by_mpirun()) return;
#if DOTS1_WITH_MPI
    auto& mpi = mpi_session();
    request.plan = dots1::ParallelPlan::parse(spec, mpi.world()->size());
    request.plan->check_config(config);
    request.world = mpi.world();
#else
    (void)request;
    (void)config;
    throw dots1::InputError("--parallel: this dots1 was built without MPI (install libopenmpi-dev and rebuild)");
#endif
  }
};

/// Runs `f`; in a split run, an error on one rank ends every rank (the others would wait for it forever).
template <class F>
void on_every_rank(const ModelRequest& request, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
#if DOTS1_WITH_MPI
    if (request.world && request.world->size() > 1) {
      std::fprintf(stderr, "dots1: error on rank %d: %s\n", request.world->rank(), e.what());
      std::fflush(stderr);
      dots1::MpiSession::abort(1);
    }
#endif
    throw;
  }
}

}  // namespace dots1_cli
