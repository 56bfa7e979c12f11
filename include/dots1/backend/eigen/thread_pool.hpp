// dots1/backend/eigen/thread_pool.hpp — the CPU backend's parallel loops: a small persistent pool in which
// the calling thread works too and never waits for a thread that has not started.
//
// Why not `#pragma omp parallel for`: an OpenMP region ends in a barrier that every thread of the team must
// reach. On a machine whose other core is busy (another process, a compiler), the second thread is often
// not running when a region starts, and each of the ~100 regions of a decode step then waits for the
// scheduler to run it: measured on the 2-vCPU bench machine with a busy second core, a tiny model decoded
// at 318 tokens/s with 2 OpenMP threads against 32,000 with 1. Here the caller claims chunks of the loop
// itself from a shared counter; a worker that wakes up late finds nothing left and the caller has already
// returned. The caller only waits for chunks a worker has actually claimed (and is running).
//
// Thread count: what OpenMP would use (OMP_NUM_THREADS / omp_set_num_threads()), so `--threads N` and the
// environment keep working. Workers spin ~0.2 ms after a loop (decode issues one every few tens of
// microseconds), then sleep on a condition variable.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include <omp.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DOTS1_CPU_PAUSE() _mm_pause()
#else
#define DOTS1_CPU_PAUSE() std::this_thread::yield()
#endif

namespace dots1::cpu {

class ThreadPool {
 public:
  static ThreadPool& instance() {
    static ThreadPool pool;
    return pool;
  }

  /// True on a thread that is running a chunk of a pool loop (nested loops then run serially).
  static bool in_loop() { return in_loop_flag(); }

  /// f(i) for every i in [0, n), on at most `threads` threads including this one; returns when all are done.
  /// Runs serially when threads <= 1, inside another loop, or when another thread is using the pool.
  template <class F>
  void parallel_for(int64_t n, int threads, const F& f) {
    if (n <= 0) return;
    if (threads <= 1 || n == 1 || in_loop_flag() || !mutex_.try_lock()) {
      for (int64_t i = 0; i < n; ++i) f(i);
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_, std::adopt_lock);
    ensure_workers(threads - 1);
    Flag flag;
    const uint32_t g = ++generation_;
    fn_.store(&invoke<F>, std::memory_order_relaxed);
    ctx_.store(&f, std::memory_order_relaxed);
    participants_.store(threads - 1, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    ticket_.store((static_cast<uint64_t>(g) << 32) | static_cast<uint64_t>(n), std::memory_order_release);
    gen_.store(g, std::memory_order_seq_cst);
    wake_sleepers();
    int64_t mine = 0, i = 0;
    while (claim(g, i)) {
      f(i);
      ++mine;
    }
    int64_t done = done_.fetch_add(mine, std::memory_order_acq_rel) + mine;
    while (done < n) {
      DOTS1_CPU_PAUSE();
      done = done_.load(std::memory_order_acquire);
    }
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() {
    stop_.store(true, std::memory_order_seq_cst);
    gen_.fetch_add(1, std::memory_order_seq_cst);
    wake_sleepers();
    for (auto& t : workers_) t.join();
  }

 private:
  ThreadPool() = default;
  using Fn = void (*)(const void*, int64_t);

  template <class F>
  static void invoke(const void* ctx, int64_t i) {
    (*static_cast<const F*>(ctx))(i);
  }

  static bool& in_loop_flag() {
    thread_local bool flag = false;
    return flag;
  }
  struct Flag {
    Flag() { in_loop_flag() = true; }
    ~Flag() { in_loop_flag() = false; }
  };

  /// Takes the next unclaimed index of loop g (counting down from n - 1); false when none is left or the
  /// loop is no longer g. A successful claim proves loop g is unfinished, so its fn/ctx are still current.
  bool claim(uint32_t g, int64_t& i) {
    uint64_t t = ticket_.load(std::memory_order_acquire);
    for (;;) {
      if (static_cast<uint32_t>(t >> 32) != g || (t & 0xffffffffu) == 0) return false;
      if (ticket_.compare_exchange_weak(t, t - 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        i = static_cast<int64_t>((t & 0xffffffffu) - 1);
        return true;
      }
    }
  }

  /// After a change of gen_ (or stop_): wakes the workers that sleep on it.
  void wake_sleepers() {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    { std::lock_guard<std::mutex> lock(sleep_mutex_); }
    wake_.notify_all();
  }

  void ensure_workers(int wanted) {
    while (static_cast<int>(workers_.size()) < wanted) {
      const int index = static_cast<int>(workers_.size());
      const uint32_t seen = gen_.load(std::memory_order_acquire);
      workers_.emplace_back([this, index, seen] { work(index, seen); });
    }
  }

  /// `seen`: the generation when the worker was created, before the loop that created it was published. (Read
  /// here instead, a worker the scheduler starts late would take a later generation as seen: possibly the
  /// destructor's, and then sleep through it and hang the process at exit.)
  void work(int index, uint32_t seen) {
    for (;;) {
      uint32_t g = gen_.load(std::memory_order_acquire);
      if (g == seen && !stop_.load(std::memory_order_acquire)) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
        for (int spin = 0; g == seen; ++spin) {
          DOTS1_CPU_PAUSE();
          g = gen_.load(std::memory_order_acquire);
          if ((spin & 63) == 63 && std::chrono::steady_clock::now() > until) break;
        }
      }
      if (g == seen && !stop_.load(std::memory_order_acquire)) {
        // Sleep until the generation changes. The waker stores gen_ before it reads sleepers_, and this
        // thread counts itself in sleepers_ before it reads gen_ (all seq_cst): either the waker sees a
        // sleeper and notifies under sleep_mutex_, or this thread sees the new generation and does not sleep.
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        while ((g = gen_.load(std::memory_order_seq_cst)) == seen && !stop_.load(std::memory_order_seq_cst)) wake_.wait(lock);
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      }
      seen = g;
      if (stop_.load(std::memory_order_acquire)) return;
      if (index >= participants_.load(std::memory_order_relaxed)) continue;
      const Fn fn = fn_.load(std::memory_order_relaxed);
      const void* ctx = ctx_.load(std::memory_order_relaxed);
      Flag flag;
      int64_t mine = 0, i = 0;
      while (claim(g, i)) {
        fn(ctx, i);
        ++mine;
      }
      if (mine) done_.fetch_add(mine, std::memory_order_acq_rel);
    }
  }

  std::mutex mutex_;  // one loop at a time
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
  uint32_t generation_ = 0;
  std::atomic<uint32_t> gen_{0};
  std::atomic<uint64_t> ticket_{0};  // (generation << 32) | indices left
  std::atomic<Fn> fn_{nullptr};
  std::atomic<const void*> ctx_{nullptr};
  std::atomic<int> participants_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

/// Threads a parallel kernel may use here: 1 inside a pool loop or an OpenMP region, else OpenMP's count.
inline int threads_here() { return ThreadPool::in_loop() || omp_in_parallel() ? 1 : omp_get_max_threads(); }

/// f(i) for i in [0, n) on up to `threads` threads (see ThreadPool).
template <class F>
void parallel_for(int64_t n, int threads, const F& f) {
  ThreadPool::instance().parallel_for(n, threads, f);
}

}  // namespace dots1::cpu
