// dots1/parallel/mpi.hpp — the Communicator over MPI (host memory): the CPU model split across processes
// and machines. Include it only in programs that link MPI (CMake: find_package(MPI), MPI::MPI_CXX).
//
//   dots1::MpiSession mpi(&argc, &argv);                        // MPI_Init ... MPI_Finalize
//   auto par = dots1::Parallel::create(mpi.world(), dots1::ParallelPlan::parse("ep=2", mpi.world()->size()));
//   auto model = dots1::CpuModel::from_pretrained(dir, par);   // this rank's shard only
//   // run with: mpirun -np 2 ./program
#pragma once

#include <algorithm>
#include <climits>
#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "dots1/error.hpp"
#include "dots1/parallel/communicator.hpp"

namespace dots1 {

class MpiCommunicator final : public Communicator {
 public:
  /// Wraps `comm` (MPI_COMM_WORLD, or a communicator this object then owns and frees when `owned`).
  explicit MpiCommunicator(MPI_Comm comm, bool owned = false) : comm_(comm), owned_(owned) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override { return "MPI (" + std::to_string(size_) + " ranks)"; }
  MPI_Comm handle() const { return comm_; }

 protected:
  void do_all_reduce_sum(void* data, size_t count, CommType type) override {
    // MPI counts are int: large buffers go in pieces
    const size_t step = INT_MAX;
    for (size_t at = 0; at < count; at += step)
      check(MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + at * comm_type_size(type), static_cast<int>(std::min(step, count - at)),
                          mpi_type(type), MPI_SUM, comm_),
            "MPI_Allreduce");
  }
  void do_all_gather_v(const void* in, void* out, const size_t* counts, CommType type) override {
    std::vector<int> c, displs;
    to_int(counts, c, displs, "all_gather_v");
    check(MPI_Allgatherv(in, c[static_cast<size_t>(rank_)], mpi_type(type), out, c.data(), displs.data(), mpi_type(type), comm_), "MPI_Allgatherv");
  }
  void do_all_to_all_v(const void* send, const size_t* send_counts, void* recv, const size_t* recv_counts, CommType type) override {
    std::vector<int> sc, sd, rc, rd;
    to_int(send_counts, sc, sd, "all_to_all_v");
    to_int(recv_counts, rc, rd, "all_to_all_v");
    check(MPI_Alltoallv(send, sc.data(), sd.data(), mpi_type(type), recv, rc.data(), rd.data(), mpi_type(type), comm_), "MPI_Alltoallv");
  }
  void do_all_gather_host(const int64_t* in, size_t n, int64_t* out) override {
    check(MPI_Allgather(in, static_cast<int>(n), MPI_INT64_T, out, static_cast<int>(n), MPI_INT64_T, comm_), "MPI_Allgather");
  }
  void do_broadcast_host(void* data, size_t bytes, int root) override {
    check(MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_), "MPI_Bcast");
  }
  void do_barrier() override { check(MPI_Barrier(comm_), "MPI_Barrier"); }
  std::shared_ptr<Communicator> do_split(int color, int key) override {
    MPI_Comm sub;
    check(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
    return std::make_shared<MpiCommunicator>(sub, true);
  }

 private:
  static MPI_Datatype mpi_type(CommType t) {
    switch (t) {
      case CommType::f32: return MPI_FLOAT;
      case CommType::f64: return MPI_DOUBLE;
      case CommType::i32: return MPI_INT32_T;
      case CommType::i64: return MPI_INT64_T;
    }
    return MPI_BYTE;
  }
  /// Counts and displacements as MPI's ints (an error beyond 2^31 - 1 elements).
  void to_int(const size_t* counts, std::vector<int>& c, std::vector<int>& displs, const char* op) const {
    c.resize(static_cast<size_t>(size_));
    displs.resize(static_cast<size_t>(size_));
    size_t at = 0;
    for (int r = 0; r < size_; ++r) {
      if (counts[r] > INT_MAX || at > INT_MAX)
        throw InputError(std::string(op) + ": " + std::to_string(at + counts[r]) + " elements exceed MPI's int counts");
      c[static_cast<size_t>(r)] = static_cast<int>(counts[r]);
      displs[static_cast<size_t>(r)] = static_cast<int>(at);
      at += counts[r];
    }
  }
  static void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw Error(std::string(what) + " failed: " + std::string(text, static_cast<size_t>(len)));
  }

  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

/// MPI_Init on construction (unless MPI is already initialised), MPI_Finalize on destruction (if it
/// initialised). Threads: the model calls MPI from the main thread only (MPI_THREAD_FUNNELED).
class MpiSession {
 public:
  MpiSession(int* argc = nullptr, char*** argv = nullptr) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
      owns_ = true;
    }
    // errors come back as return codes (reported as dots1::Error) instead of aborting every rank
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    world_ = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD);
  }
  ~MpiSession() {
    world_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  const std::shared_ptr<MpiCommunicator>& world() const { return world_; }
  /// Ends every rank (after an error on one of them, so that the others do not wait forever).
  static void abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

 private:
  bool owns_ = false;
  std::shared_ptr<MpiCommunicator> world_;
};

}  // namespace dots1
