// ThreadPool: the threads the CPU forward pass runs its kernels on (matmuls, norms, attention).
//
// What: `threads - 1` persistent workers plus the calling thread. parallel_for(n, fn) splits [0, n)
// into one contiguous chunk per participant (static: worker i gets the same rows of a matrix of a
// given shape every time, so its caches and thread_local scratch stay warm);
// parallel_for_dynamic(n, chunk, fn) hands out `chunk`-sized pieces from an atomic counter (for
// uneven work: attention, tiled GEMM blocks). fn(begin, end) is called with disjoint ranges that
// cover [0, n) exactly once; it must accept any range (a serial run calls fn(0, n) once).
//
// Why not OpenMP: one pool owned by the Engine (runtime/engine.h) instead of a team per kernel and a
// process-wide omp_set_num_threads: each engine's thread count is its own, a kernel called from a
// pool task (or from an OpenMP parallel region, the offline converter's) runs serially instead of
// nesting, and two engines on two threads do not share one team.
//
// Cost: a call hands each worker it needs a ticket (a store, and a futex wake only when that worker
// sleeps), runs part 0 itself, then takes over every part no worker has claimed yet (a worker that
// is descheduled or still waking never stalls the call: on a busy machine the caller just does more
// of the work) and waits only for parts in progress. Workers spin about 0.5 ms after a task
// (OMP_WAIT_POLICY=passive: not at all), then block in std::atomic::wait (a futex), so an idle pool
// uses no CPU. Calls from two threads to one pool do not queue: the second runs serially.
//
// Which pool a kernel uses: ThreadPool::current(), the pool of the innermost ThreadPool::Scope on the
// calling thread (the Engine installs its pool for each step), else the process-wide default pool
// (tests, benchmarks, the converter calling a matmul), of default_threads() threads.
//
// The offline work (src/convert, codebook encoding, eval, memory_bandwidth, the tools' decompress,
// verify, merge and convert loops) stays on OpenMP; `-t` sets both (tools/upg/loaded_model.cpp).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace upg {

class ThreadPool {
 public:
  // threads <= 0: default_threads(). Starts threads - 1 workers, which live as long as the pool.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();  // joins the workers (no call may be running)
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }

  // fn(begin, end) over min(threads, n) static contiguous chunks of [0, n), chunk i normally on
  // worker i (chunk 0 on the caller, which also runs any chunk no worker has started when it is
  // done with its own); returns when all are done. An exception thrown by fn reaches the caller (the first one, after every chunk has
  // finished or been abandoned); the pool stays usable. Serial (fn(0, n) on the calling thread)
  // when n <= 1, the pool has one thread, the caller is inside a pool task or an OpenMP parallel
  // region, or another thread is using this pool.
  template <class F>
  void parallel_for(int64_t n, F&& fn) {
    run(n, 0, task(fn));
  }
  // Like parallel_for, but participants take ranges of `chunk` indices (the last may be shorter)
  // from a shared counter until none is left.
  template <class F>
  void parallel_for_dynamic(int64_t n, int64_t chunk, F&& fn) {
    run(n, std::max<int64_t>(chunk, 1), task(fn));
  }

  // The calling thread's pool: its innermost Scope's, else the default pool.
  static ThreadPool& current();
  // current().threads() without creating the default pool.
  static int current_threads();

  // Makes `pool` the calling thread's current pool until destroyed (null: leaves it unchanged).
  class Scope {
   public:
    explicit Scope(ThreadPool* pool);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    ThreadPool* prev_;
  };

  // The default pool's thread count: set_default_threads(n) when n > 0 was given, else
  // OMP_NUM_THREADS when set (its first value), else the CPUs this process may run on.
  static int default_threads();
  // threads <= 0 returns to that automatic choice. Replaces the default pool if it exists with
  // another size: call it while no other thread uses the default pool (at start-up, as -t does).
  static void set_default_threads(int threads);
  // The CPUs in this process's affinity mask (at least 1).
  static int available_cores();

 private:
  struct Task {
    void (*fn)(void*, int64_t, int64_t);
    void* obj;
  };
  template <class F>
  static Task task(F& fn) {
    return Task{[](void* f, int64_t b, int64_t e) { (*static_cast<F*>(f))(b, e); },
                const_cast<void*>(static_cast<const void*>(&fn))};
  }
  // Worker w's part of the current task: state = (task number << 2) | phase, phase 0 open (a
  // ticket), 1 claimed by the worker, 2 closed (done, or taken over by the caller).
  struct alignas(64) Slot {
    std::atomic<uint32_t> state{2};
    std::atomic<uint32_t> sleepers{0};  // threads blocked waiting for state to change
  };

  void run(int64_t n, int64_t chunk, Task t);
  void participate(int part);
  void worker(int part);

  const int threads_;
  std::unique_ptr<Slot[]> slots_;  // one per worker (participant 1 .. threads - 1)
  std::vector<std::thread> workers_;
  std::atomic<bool> busy_{false};  // a caller owns the task fields below
  std::atomic<bool> stop_{false};
  // The current task (written by its caller before handing out tickets, read by participants).
  uint32_t seq_ = 0;  // task number
  Task task_{};
  int64_t n_ = 0, chunk_ = 0;  // chunk_ 0: static
  int parts_ = 0;
  alignas(64) std::atomic<int64_t> next_{0};  // dynamic: the next unclaimed index
  std::mutex error_mu_;
  std::exception_ptr error_;
};

// The current pool's parallel_for / parallel_for_dynamic (what the kernels call).
template <class F>
void parallel_for(int64_t n, F&& fn) {
  ThreadPool::current().parallel_for(n, std::forward<F>(fn));
}
template <class F>
void parallel_for_dynamic(int64_t n, int64_t chunk, F&& fn) {
  ThreadPool::current().parallel_for_dynamic(n, chunk, std::forward<F>(fn));
}

}  // namespace upg
