// dots1/parallel/nccl.hpp — the Communicator over NCCL (device memory): the CUDA model split across GPUs,
// one rank (process) per GPU. Compile with nvcc and link NCCL (libnccl) and the CUDA runtime.
//
// NCCL needs one unique id shared by all ranks before it can talk; a bootstrap communicator (MPI between
// the processes) carries it:
//
//   dots1::MpiSession mpi(&argc, &argv);
//   auto nccl = dots1::NcclCommunicator::create(*mpi.world());        // cudaSetDevice(local rank) + ncclCommInitRank
//   auto par = dots1::Parallel::create(nccl, dots1::ParallelPlan::parse("ep=8,tp=8", nccl->size()));
//
// The float collectives take device pointers (the Thrust backend's B::ptr) and run on the legacy default
// stream, so they are ordered after the kernels that produced their inputs; each call waits for its
// result (the timer then measures the transfer). all_gather_v and all_to_all_v, which NCCL lacks, are
// grouped broadcasts and grouped send/receive pairs. all_gather_host and broadcast_host stage their small
// host payloads through a device buffer.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <cuda_runtime.h>
#include <nccl.h>

#include "dots1/error.hpp"
#include "dots1/parallel/communicator.hpp"

namespace dots1 {

class NcclCommunicator final : public Communicator {
 public:
  /// One NCCL rank per process of `bootstrap` (e.g. MPI's world): picks this process's GPU — `device`, or
  /// the node-local rank (OMPI_COMM_WORLD_LOCAL_RANK / SLURM_LOCALID / LOCAL_RANK) modulo the GPU count —
  /// then shares an id from rank 0 and initialises the communicator.
  static std::shared_ptr<NcclCommunicator> create(Communicator& bootstrap, int device = -1) {
    int gpus = 0;
    check_cuda(cudaGetDeviceCount(&gpus), "cudaGetDeviceCount");
    if (gpus == 0) throw Error("NCCL: no CUDA device is visible to rank " + std::to_string(bootstrap.rank()));
    if (device < 0) device = local_rank() % gpus;
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    ncclUniqueId id;
    if (bootstrap.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    bootstrap.broadcast_host(&id, sizeof id, 0);
    ncclComm_t comm;
    check(ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()), "ncclCommInitRank");
    return std::shared_ptr<NcclCommunicator>(new NcclCommunicator(comm, device));
  }
  ~NcclCommunicator() override {
    if (staging_) cudaFree(staging_);
    ncclCommDestroy(comm_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override { return "NCCL (" + std::to_string(size_) + " ranks, GPU " + std::to_string(device_) + ")"; }
  int device() const { return device_; }

 protected:
  void do_all_reduce_sum(void* data, size_t count, CommType type) override {
    check(ncclAllReduce(data, data, count, nccl_type(type), ncclSum, comm_, stream()), "ncclAllReduce");
    sync();
  }
  void do_all_gather_v(const void* in, void* out, const size_t* counts, CommType type) override {
    const size_t element = comm_type_size(type);
    check(ncclGroupStart(), "ncclGroupStart");
    size_t at = 0;
    for (int r = 0; r < size_; ++r) {
      char* part = static_cast<char*>(out) + at * element;
      if (counts[r] > 0) check(ncclBroadcast(r == rank_ ? in : part, part, counts[r], nccl_type(type), r, comm_, stream()), "ncclBroadcast");
      at += counts[r];
    }
    check(ncclGroupEnd(), "ncclGroupEnd");
    sync();
  }
  void do_all_to_all_v(const void* send, const size_t* send_counts, void* recv, const size_t* recv_counts, CommType type) override {
    const size_t element = comm_type_size(type);
    check(ncclGroupStart(), "ncclGroupStart");
    size_t s = 0, r = 0;
    for (int peer = 0; peer < size_; ++peer) {
      if (send_counts[peer] > 0)
        check(ncclSend(static_cast<const char*>(send) + s * element, send_counts[peer], nccl_type(type), peer, comm_, stream()), "ncclSend");
      if (recv_counts[peer] > 0)
        check(ncclRecv(static_cast<char*>(recv) + r * element, recv_counts[peer], nccl_type(type), peer, comm_, stream()), "ncclRecv");
      s += send_counts[peer];
      r += recv_counts[peer];
    }
    check(ncclGroupEnd(), "ncclGroupEnd");
    sync();
  }
  void do_all_gather_host(const int64_t* in, size_t n, int64_t* out) override {
    auto* dev = static_cast<int64_t*>(staging(n * sizeof(int64_t) * static_cast<size_t>(size_ + 1)));
    check_cuda(cudaMemcpy(dev, in, n * sizeof(int64_t), cudaMemcpyHostToDevice), "cudaMemcpy");
    check(ncclAllGather(dev, dev + n, n, ncclInt64, comm_, stream()), "ncclAllGather");
    sync();
    check_cuda(cudaMemcpy(out, dev + n, n * sizeof(int64_t) * static_cast<size_t>(size_), cudaMemcpyDeviceToHost), "cudaMemcpy");
  }
  void do_broadcast_host(void* data, size_t bytes, int root) override {
    void* dev = staging(bytes);
    check_cuda(cudaMemcpy(dev, data, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    check(ncclBroadcast(dev, dev, bytes, ncclUint8, root, comm_, stream()), "ncclBroadcast");
    sync();
    check_cuda(cudaMemcpy(data, dev, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
  }
  void do_barrier() override {
    void* dev = staging(sizeof(float));
    check(ncclAllReduce(dev, dev, 1, ncclFloat32, ncclSum, comm_, stream()), "ncclAllReduce");
    sync();
  }
  std::shared_ptr<Communicator> do_split(int color, int key) override {
    ncclComm_t sub;
    check(ncclCommSplit(comm_, color, key, &sub, nullptr), "ncclCommSplit");
    return std::shared_ptr<NcclCommunicator>(new NcclCommunicator(sub, device_));
  }

 private:
  NcclCommunicator(ncclComm_t comm, int device) : comm_(comm), device_(device) {
    check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
    check(ncclCommCount(comm_, &size_), "ncclCommCount");
  }
  static cudaStream_t stream() { return cudaStreamLegacy; }
  static void sync() { check_cuda(cudaStreamSynchronize(cudaStreamLegacy), "cudaStreamSynchronize"); }
  static int local_rank() {
    for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"})
      if (const char* v = std::getenv(name)) return std::atoi(v);
    return 0;
  }
  void* staging(size_t bytes) {
    if (bytes > staging_bytes_) {
      if (staging_) cudaFree(staging_);
      check_cuda(cudaMalloc(&staging_, bytes), "cudaMalloc");
      staging_bytes_ = bytes;
    }
    return staging_;
  }
  static ncclDataType_t nccl_type(CommType t) {
    switch (t) {
      case CommType::f32: return ncclFloat32;
      case CommType::f64: return ncclFloat64;
      case CommType::i32: return ncclInt32;
      case CommType::i64: return ncclInt64;
    }
    return ncclUint8;
  }
  static void check(ncclResult_t rc, const char* what) {
    if (rc != ncclSuccess) throw Error(std::string(what) + " failed: " + ncclGetErrorString(rc));
  }
  static void check_cuda(cudaError_t rc, const char* what) {
    if (rc != cudaSuccess) throw Error(std::string(what) + " failed: " + cudaGetErrorString(rc));
  }

  ncclComm_t comm_;
  int device_ = 0, rank_ = 0, size_ = 1;
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
};

}  // namespace dots1
