// dots1/parallel/communicator.hpp — the collective operations a model split across processes needs, as one
// small interface, and SingleProcess, the communicator of a model that is not split.
//
// One process per rank; every rank of a communicator calls the same collectives in the same order (the
// model guarantees that by running the same forward on every rank). Buffers live where the backend keeps
// its activations: host memory for SingleProcess and MpiCommunicator (dots1/parallel/mpi.hpp), device
// memory for NcclCommunicator (dots1/parallel/nccl.hpp) — except all_gather_host and broadcast_host, whose
// small integer payloads (counts, ids) always sit in host memory.
//
//   all_reduce_sum   x <- sum over ranks of x                                   (tensor-parallel partial sums)
//   all_gather_v     out = concat_r in_r, in_r of counts[r] elements            (shards back to a whole)
//   all_to_all_v     rank r sends send_counts[d] elements to each d, in rank order (expert dispatch/combine)
//   all_gather_host  int64 counts from every rank, host memory
//   broadcast_host   bytes from `root` to every rank, host memory
//   split            the sub-communicator of the ranks with the same colour (a tensor- or expert-parallel group)
//
// Every operation adds its wall time (including the time spent waiting for the slowest rank) and the bytes
// this rank sent to stats(), which a communicator shares with those split from it: `dots1 bench` reports
// communication time separately from compute with it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include "dots1/error.hpp"

namespace dots1 {

/// The element types collectives carry.
enum class CommType { f32, f64, i32, i64 };

template <class T>
constexpr CommType comm_type_of() {
  if constexpr (std::is_same_v<T, float>) return CommType::f32;
  else if constexpr (std::is_same_v<T, double>) return CommType::f64;
  else if constexpr (std::is_same_v<T, int32_t>) return CommType::i32;
  else {
    static_assert(std::is_same_v<T, int64_t>, "collectives carry float, double, int32 or int64");
    return CommType::i64;
  }
}

inline size_t comm_type_size(CommType t) { return t == CommType::f32 || t == CommType::i32 ? 4 : 8; }

/// Time and traffic of the collectives of one communicator and its sub-communicators.
struct CommStats {
  double seconds = 0;       // wall time inside collectives (transfer + waiting for the other ranks)
  uint64_t bytes_sent = 0;  // payload this rank sent (all_reduce: counted as the buffer size)
  uint64_t calls = 0;
  void reset() { *this = CommStats{}; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "single process", "MPI", "NCCL".
  virtual std::string describe() const = 0;

  // ---- typed entry points (the model calls these)
  template <class T>
  void all_reduce_sum(T* data, size_t count) {
    Timed t(*this, count * sizeof(T));
    do_all_reduce_sum(data, count, comm_type_of<T>());
  }
  /// out (sum(counts) elements) = the concatenation of every rank's `in` (counts[rank()] elements), by rank.
  template <class T>
  void all_gather_v(const T* in, T* out, std::span<const size_t> counts) {
    check_counts(counts, "all_gather_v");
    Timed t(*this, counts[static_cast<size_t>(rank())] * sizeof(T));
    do_all_gather_v(in, out, counts.data(), comm_type_of<T>());
  }
  /// Sends send_counts[d] elements (consecutive in `send`, destinations in rank order) to each rank d and
  /// receives recv_counts[s] elements from each rank s (consecutive in `recv`, sources in rank order).
  template <class T>
  void all_to_all_v(const T* send, std::span<const size_t> send_counts, T* recv, std::span<const size_t> recv_counts) {
    check_counts(send_counts, "all_to_all_v");
    check_counts(recv_counts, "all_to_all_v");
    size_t sent = 0;
    for (size_t d = 0; d < send_counts.size(); ++d)
      if (static_cast<int>(d) != rank()) sent += send_counts[d];
    Timed t(*this, sent * sizeof(T));
    do_all_to_all_v(send, send_counts.data(), recv, recv_counts.data(), comm_type_of<T>());
  }
  /// out[r * n + i] = rank r's in[i]; host memory.
  void all_gather_host(const int64_t* in, size_t n, int64_t* out) {
    Timed t(*this, n * sizeof(int64_t));
    do_all_gather_host(in, n, out);
  }
  /// `bytes` of host memory from `root` to every rank.
  void broadcast_host(void* data, size_t bytes, int root) {
    Timed t(*this, rank() == root ? bytes : 0);
    do_broadcast_host(data, bytes, root);
  }
  void barrier() {
    Timed t(*this, 0);
    do_barrier();
  }
  /// The ranks with the same `color` form a new communicator, ordered by `key`; it shares this one's stats.
  std::shared_ptr<Communicator> split(int color, int key) {
    auto c = do_split(color, key);
    c->stats_ = stats_;
    return c;
  }

  CommStats& stats() { return *stats_; }
  const CommStats& stats() const { return *stats_; }

 protected:
  virtual void do_all_reduce_sum(void* data, size_t count, CommType type) = 0;
  virtual void do_all_gather_v(const void* in, void* out, const size_t* counts, CommType type) = 0;
  virtual void do_all_to_all_v(const void* send, const size_t* send_counts, void* recv, const size_t* recv_counts, CommType type) = 0;
  virtual void do_all_gather_host(const int64_t* in, size_t n, int64_t* out) = 0;
  virtual void do_broadcast_host(void* data, size_t bytes, int root) = 0;
  virtual void do_barrier() = 0;
  virtual std::shared_ptr<Communicator> do_split(int color, int key) = 0;

 private:
  /// Adds the scope's wall time and bytes to stats().
  struct Timed {
    Communicator& c;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    Timed(Communicator& comm, size_t bytes) : c(comm) {
      c.stats_->bytes_sent += bytes;
      ++c.stats_->calls;
    }
    ~Timed() { c.stats_->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); }
  };
  void check_counts(std::span<const size_t> counts, const char* op) const {
    if (counts.size() != static_cast<size_t>(size()))
      throw InputError(std::string(op) + ": " + std::to_string(counts.size()) + " counts for a communicator of " + std::to_string(size()) + " ranks");
  }

  std::shared_ptr<CommStats> stats_ = std::make_shared<CommStats>();
};

/// The communicator of an unsplit model: one rank, every collective the identity (copies where the output
/// is another buffer). Host memory only; the model never calls collectives on groups of one rank.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "single process"; }

 protected:
  void do_all_reduce_sum(void*, size_t, CommType) override {}
  void do_all_gather_v(const void* in, void* out, const size_t* counts, CommType type) override { copy(in, out, counts[0] * comm_type_size(type)); }
  void do_all_to_all_v(const void* send, const size_t* send_counts, void* recv, const size_t*, CommType type) override {
    copy(send, recv, send_counts[0] * comm_type_size(type));
  }
  void do_all_gather_host(const int64_t* in, size_t n, int64_t* out) override { copy(in, out, n * sizeof(int64_t)); }
  void do_broadcast_host(void*, size_t, int) override {}
  void do_barrier() override {}
  std::shared_ptr<Communicator> do_split(int, int) override { return std::make_shared<SingleProcess>(); }

 private:
  static void copy(const void* from, void* to, size_t bytes) {
    if (bytes && from != to) std::memmove(to, from, bytes);
  }
};

/// A rank's place in a run without any transport: rank `rank` of `size`, for planning (what would rank r
/// of N hold? see Parallel::planned). Every collective throws.
class PlannedRank final : public Communicator {
 public:
  PlannedRank(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override { return "planned rank " + std::to_string(rank_) + " of " + std::to_string(size_) + " (no transport)"; }

 protected:
  void do_all_reduce_sum(void*, size_t, CommType) override { refuse(); }
  void do_all_gather_v(const void*, void*, const size_t*, CommType) override { refuse(); }
  void do_all_to_all_v(const void*, const size_t*, void*, const size_t*, CommType) override { refuse(); }
  void do_all_gather_host(const int64_t*, size_t, int64_t*) override { refuse(); }
  void do_broadcast_host(void*, size_t, int) override { refuse(); }
  void do_barrier() override { refuse(); }
  std::shared_ptr<Communicator> do_split(int, int) override { refuse(); }

 private:
  [[noreturn]] void refuse() const { throw Error(describe() + ": a planned rank cannot communicate (use MpiCommunicator or NcclCommunicator)"); }
  int rank_, size_;
};

}  // namespace dots1
