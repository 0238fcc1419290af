#include "base/thread_pool.h"

#include <omp.h>
#include <sched.h>
#include <strings.h>

#include <chrono>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace upg {

namespace {
thread_local ThreadPool* tls_current = nullptr;  // the innermost Scope's pool
thread_local bool tls_in_task = false;           // running a part of a pool task

struct InTask {
  bool prev = tls_in_task;
  InTask() { tls_in_task = true; }
  ~InTask() { tls_in_task = prev; }
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// How long a thread spins before blocking: 0.5 ms, none with OMP_WAIT_POLICY=passive. Long enough to
// span the serial work between two kernels of a prefill step (with 0.1 ms the workers went to sleep
// several times per layer, and waking a sleeping thread costs tens of microseconds in a VM), short
// enough that an idle pool stops using CPU at once.
std::chrono::nanoseconds spin_time() {
  static const std::chrono::nanoseconds t = [] {
    const char* p = std::getenv("OMP_WAIT_POLICY");
    return std::chrono::nanoseconds(p && strcasecmp(p, "passive") == 0 ? 0 : 500'000);
  }();
  return t;
}

// Waits until slot.state differs from `old` (spinning for up to spin_time(), then blocking) and
// returns it. Blocked waiters count themselves in slot.sleepers, so that publish() makes the futex
// call only when someone sleeps (std::atomic::notify alone would, whenever any thread of the process
// waits on an address of the same hash bucket).
template <class Slot>
uint32_t await_change(Slot& slot, uint32_t old) {
  uint32_t v = slot.state.load(std::memory_order_acquire);
  if (v != old) return v;
  if (const auto spin = spin_time(); spin.count() > 0) {
    const auto deadline = std::chrono::steady_clock::now() + spin;
    for (int i = 1;; ++i) {
      cpu_relax();
      if ((v = slot.state.load(std::memory_order_acquire)) != old) return v;
      if (i % 64 == 0 && std::chrono::steady_clock::now() > deadline) break;
    }
  }
  for (;;) {
    slot.sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (slot.state.load(std::memory_order_seq_cst) == old) slot.state.wait(old, std::memory_order_seq_cst);
    slot.sleepers.fetch_sub(1, std::memory_order_relaxed);
    if ((v = slot.state.load(std::memory_order_acquire)) != old) return v;
  }
}

// slot.state = v, waking whoever waits on it.
template <class Slot>
void publish(Slot& slot, uint32_t v) {
  slot.state.store(v, std::memory_order_seq_cst);
  if (slot.sleepers.load(std::memory_order_seq_cst) != 0) slot.state.notify_all();
}

std::mutex g_default_mu;
std::atomic<ThreadPool*> g_default{nullptr};
std::atomic<int> g_default_threads{0};  // set_default_threads (0: automatic)
}  // namespace

ThreadPool::ThreadPool(int threads)
    : threads_(threads > 0 ? threads : default_threads()), slots_(new Slot[static_cast<size_t>(threads_ - 1)]) {
  workers_.reserve(static_cast<size_t>(threads_ - 1));
  for (int w = 1; w < threads_; ++w) workers_.emplace_back([this, w] { worker(w); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  for (int w = 1; w < threads_; ++w) publish(slots_[w - 1], slots_[w - 1].state.load() + 4);
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run(int64_t n, int64_t chunk, Task t) {
  if (n <= 0) return;
  const int64_t units = chunk > 0 ? (n + chunk - 1) / chunk : n;
  const int parts = static_cast<int>(std::min<int64_t>(threads_, units));
  // Serial: nothing to share, nested in a task or an OpenMP region, or the pool is taken.
  if (parts <= 1 || tls_in_task || omp_in_parallel() || busy_.exchange(true, std::memory_order_acquire)) {
    t.fn(t.obj, 0, n);
    return;
  }
  task_ = t, n_ = n, chunk_ = chunk, parts_ = parts;
  next_.store(0, std::memory_order_relaxed);
  const uint32_t ticket = ++seq_ << 2;
  for (int w = 1; w < parts; ++w) publish(slots_[w - 1], ticket);  // wakes only the workers needed
  participate(0);
  // Parts no worker has claimed yet: run them here (static) or close them (dynamic: nothing is left).
  for (int w = 1; w < parts; ++w) {
    uint32_t open = ticket;
    if (slots_[w - 1].state.compare_exchange_strong(open, ticket | 2, std::memory_order_acq_rel) && chunk == 0)
      participate(w);
  }
  for (int w = 1; w < parts; ++w)  // the parts workers claimed: wait until they are done
    for (uint32_t v = ticket | 1; (v = await_change(slots_[w - 1], v)) != (ticket | 2);) {}
  std::exception_ptr e = std::move(error_);
  error_ = nullptr;
  busy_.store(false, std::memory_order_release);
  if (e) std::rethrow_exception(e);
}

void ThreadPool::participate(int part) {
  InTask in_task;
  try {
    if (chunk_ == 0) {  // static: n_ split into parts_ near-equal contiguous ranges, in order
      const int64_t q = n_ / parts_, r = n_ % parts_;
      const int64_t b = part * q + std::min<int64_t>(part, r);
      task_.fn(task_.obj, b, b + q + (part < r ? 1 : 0));
    } else {
      for (int64_t b; (b = next_.fetch_add(chunk_, std::memory_order_relaxed)) < n_;)
        task_.fn(task_.obj, b, std::min(n_, b + chunk_));
    }
  } catch (...) {
    if (chunk_ > 0) next_.store(n_, std::memory_order_relaxed);  // hand out no more chunks
    std::lock_guard lk(error_mu_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::worker(int part) {
  tls_current = this;  // a kernel nested in a task finds this pool (and runs serially), not the default one
  Slot& slot = slots_[part - 1];
  for (uint32_t seen = 2;;) {  // the slot's initial state (any later one wakes us, the destructor's too)
    seen = await_change(slot, seen);
    if (stop_.load(std::memory_order_seq_cst)) return;
    // A ticket (phase 0) is ours unless the caller closes it first; then the task's fields are valid
    // until we close it.
    if ((seen & 3) != 0 || !slot.state.compare_exchange_strong(seen, seen | 1, std::memory_order_acq_rel)) continue;
    participate(part);
    publish(slot, seen |= 2);
  }
}

ThreadPool& ThreadPool::current() {
  if (tls_current) return *tls_current;
  if (ThreadPool* p = g_default.load(std::memory_order_acquire)) return *p;
  std::lock_guard lk(g_default_mu);
  if (!g_default.load(std::memory_order_relaxed)) g_default.store(new ThreadPool(0), std::memory_order_release);
  return *g_default.load(std::memory_order_relaxed);  // lives until the process ends (never joined at exit)
}

int ThreadPool::current_threads() {
  if (tls_current) return tls_current->threads();
  if (ThreadPool* p = g_default.load(std::memory_order_acquire)) return p->threads();
  return default_threads();
}

ThreadPool::Scope::Scope(ThreadPool* pool) : prev_(tls_current) {
  if (pool) tls_current = pool;
}

ThreadPool::Scope::~Scope() { tls_current = prev_; }

int ThreadPool::default_threads() {
  if (const int t = g_default_threads.load(std::memory_order_relaxed); t > 0) return t;
  if (const char* e = std::getenv("OMP_NUM_THREADS")) {
    const int t = std::atoi(e);  // "4" or "4,2" (nested levels): the first value
    if (t > 0) return t;
  }
  return available_cores();
}

void ThreadPool::set_default_threads(int threads) {
  std::lock_guard lk(g_default_mu);
  g_default_threads.store(std::max(threads, 0), std::memory_order_relaxed);
  ThreadPool* p = g_default.load(std::memory_order_relaxed);
  if (p && p->threads() != default_threads()) {
    g_default.store(nullptr, std::memory_order_release);
    delete p;
  }
}

int ThreadPool::available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(CPU_COUNT(&set), 1);
  return std::max<int>(static_cast<int>(std::thread::hardware_concurrency()), 1);
}

}  // namespace upg
