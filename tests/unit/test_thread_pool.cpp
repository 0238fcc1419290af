// The engine's thread pool (base/thread_pool.h): every index exactly once for static and dynamic
// schedules and any n / thread count, stable worker identity, nested calls serial, exceptions
// reaching the caller with the pool still usable, pools used from several threads at once, the
// current-pool scope; and the Engine running its step on its own pool of EngineOptions::threads.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "base/thread_pool.h"
#include "runtime/engine.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace upg;

namespace {

// Runs one parallel_for (dynamic when chunk > 0) and checks every index of [0, n) was seen once;
// returns the ranges fn was called with.
std::vector<std::pair<int64_t, int64_t>> cover(ThreadPool& p, int64_t n, int64_t chunk = 0) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  auto fn = [&](int64_t b, int64_t e) {
    EXPECT_LE(0, b);
    EXPECT_LT(b, e);
    EXPECT_LE(e, n);
    for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
    std::lock_guard lk(mu);
    ranges.emplace_back(b, e);
  };
  if (chunk > 0) p.parallel_for_dynamic(n, chunk, fn);
  else p.parallel_for(n, fn);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)].load(), 1) << "index " << i << " of " << n;
  return ranges;
}

}  // namespace

TEST(ThreadPool, StaticVisitsEveryIndexOnceInContiguousChunks) {
  for (int threads : {1, 2, 3, 4, 7, 8})
    for (int64_t n : {0, 1, 2, 3, 5, 7, 8, 9, 100, 1001, 10000}) {
      SCOPED_TRACE(testing::Message() << threads << " threads, n = " << n);
      ThreadPool p(threads);
      EXPECT_EQ(p.threads(), threads);
      const auto ranges = cover(p, n);
      // One range per participant (min(threads, n) of them), sizes differing by at most one.
      EXPECT_EQ(static_cast<int64_t>(ranges.size()), std::min<int64_t>(threads, n));
      int64_t lo = n, hi = 0;
      for (auto [b, e] : ranges) lo = std::min(lo, e - b), hi = std::max(hi, e - b);
      if (!ranges.empty()) {
        EXPECT_LE(hi - lo, 1);
      }
    }
}

TEST(ThreadPool, DynamicVisitsEveryIndexOnceInChunksOfTheGivenSize) {
  for (int threads : {1, 2, 3, 5})
    for (int64_t n : {0, 1, 2, 4, 5, 63, 64, 65, 1000, 4097})
      for (int64_t chunk : {1, 3, 4, 64, 5000}) {
        SCOPED_TRACE(testing::Message() << threads << " threads, n = " << n << ", chunk " << chunk);
        ThreadPool p(threads);
        const auto ranges = cover(p, n, chunk);
        if (threads == 1 || n <= chunk) continue;  // serial: one call with the whole range
        for (auto [b, e] : ranges) {
          EXPECT_EQ(b % chunk, 0);
          EXPECT_EQ(e, std::min(n, b + chunk));
        }
      }
}

// Workers are persistent and each keeps its chunk: parts that take a while (so no worker is still
// waking when the caller is done with part 0; the caller takes over parts no worker has started)
// run on the same four threads, chunk i on the same thread every time, and a worker's thread_local
// state survives between calls.
TEST(ThreadPool, WorkersKeepTheirIdentityTheirChunksAndThreadLocals) {
  ThreadPool p(4);
  thread_local int calls = 0;
  std::set<std::thread::id> all;
  std::map<int64_t, std::thread::id> first;
  int stable = 0, max_calls = 0;
  for (int it = 0; it < 20; ++it) {
    std::mutex mu;
    std::map<int64_t, std::thread::id> owner;
    p.parallel_for(400, [&](int64_t b, int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      std::lock_guard lk(mu);
      owner[b] = std::this_thread::get_id();
      max_calls = std::max(max_calls, ++calls);
    });
    ASSERT_EQ(owner.size(), 4u);
    EXPECT_EQ(owner.at(0), std::this_thread::get_id());  // the caller's part
    std::set<std::thread::id> ids;
    for (const auto& [b, id] : owner) ids.insert(id), all.insert(id);
    if (ids.size() == 4) {
      if (first.empty()) first = owner;
      else stable += owner == first;
    }
  }
  EXPECT_LE(all.size(), 4u);  // no thread beyond the pool's four, ever
  EXPECT_GE(stable, 1);       // (usually 19: chunk i on worker i every time)
  EXPECT_GE(max_calls, 2);
}

TEST(ThreadPool, NestedCallsRunSeriallyOnTheCallingThread) {
  for (bool dynamic : {false, true}) {
    ThreadPool p(3);
    ThreadPool::Scope scope(&p);
    std::atomic<int64_t> total{0};
    std::atomic<int> bad{0};
    auto outer = [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const auto me = std::this_thread::get_id();
        int inner_calls = 0;
        auto inner = [&](int64_t ib, int64_t ie) {
          ++inner_calls;
          if (std::this_thread::get_id() != me || ib != 0 || ie != 50) ++bad;
          total += ie - ib;
        };
        p.parallel_for(50, inner);  // the same pool
        parallel_for_dynamic(50, 4, inner);  // the current pool (the same)
        ThreadPool other(2);
        other.parallel_for(50, inner);  // another pool: serial too
        if (inner_calls != 3) ++bad;
      }
    };
    if (dynamic) p.parallel_for_dynamic(30, 2, outer);
    else p.parallel_for(30, outer);
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(total.load(), 30 * 150);
  }
}

TEST(ThreadPool, ExceptionReachesTheCallerAndThePoolStaysUsable) {
  for (int64_t chunk : {0, 1, 7}) {
    SCOPED_TRACE(testing::Message() << "chunk " << chunk);
    ThreadPool p(4);
    for (int64_t bad_index : {0, 500, 999}) {
      std::atomic<int64_t> done{0};
      auto fn = [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          if (i == bad_index) throw std::runtime_error("index " + std::to_string(i));
          ++done;
        }
      };
      try {
        if (chunk) p.parallel_for_dynamic(1000, chunk, fn);
        else p.parallel_for(1000, fn);
        ADD_FAILURE() << "no exception";
      } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "index " + std::to_string(bad_index));
      }
      // Static: the other three chunks (750 indices) all ran to the end before the rethrow.
      if (chunk == 0) {
        EXPECT_GE(done.load(), 750);
      }
      cover(p, 1000, chunk);
    }
    // Several chunks throwing: one exception comes out.
    EXPECT_THROW(p.parallel_for(1000, [](int64_t, int64_t) { throw std::runtime_error("all"); }), std::runtime_error);
    cover(p, 1000, chunk);
  }
}

TEST(ThreadPool, DestroyedRightAfterConstructionOrAUse) {
  // Workers that have not started yet, or are still waking from the last task, still see the stop.
  for (int it = 0; it < 300; ++it) {
    ThreadPool p(1 + it % 4);
    if (it % 2) cover(p, it % 7, it % 3);
  }
}

TEST(ThreadPool, TwoPoolsFromTwoThreadsAtOnce) {
  ThreadPool a(3), b(2);
  auto hammer = [](ThreadPool& p, int64_t salt) {
    for (int it = 0; it < 300; ++it) {
      const int64_t n = 1 + (it * 37 + salt) % 500;
      cover(p, n, it % 3 == 0 ? 0 : it % 7 + 1);
    }
  };
  std::thread t1(hammer, std::ref(a), 1), t2(hammer, std::ref(b), 2);
  hammer(a, 3);  // and a third thread sharing pool a with t1 (runs serially when a is taken)
  t1.join();
  t2.join();
}

TEST(ThreadPool, ScopeSetsTheCurrentPoolAndRestoresThePreviousOne) {
  ThreadPool& dflt = ThreadPool::current();
  ThreadPool a(2), b(3);
  {
    ThreadPool::Scope sa(&a);
    EXPECT_EQ(&ThreadPool::current(), &a);
    EXPECT_EQ(ThreadPool::current_threads(), 2);
    {
      ThreadPool::Scope sb(&b);
      EXPECT_EQ(&ThreadPool::current(), &b);
      {
        ThreadPool::Scope none(nullptr);  // leaves it unchanged
        EXPECT_EQ(&ThreadPool::current(), &b);
      }
      EXPECT_EQ(&ThreadPool::current(), &b);
      // Per thread: another thread sees the default pool.
      ThreadPool* there = nullptr;
      std::thread([&] { there = &ThreadPool::current(); }).join();
      EXPECT_EQ(there, &dflt);
      // The free functions use the current pool (b, three threads; its workers' current pool is b too).
      std::atomic<int> wrong{0};
      std::vector<std::atomic<int>> ran(3);
      parallel_for(3, [&](int64_t i, int64_t) {
        ++ran[static_cast<size_t>(i)];
        if (&ThreadPool::current() != &b) ++wrong;
      });
      EXPECT_EQ(wrong.load(), 0);
      for (auto& r : ran) EXPECT_EQ(r.load(), 1);
    }
    EXPECT_EQ(&ThreadPool::current(), &a);
  }
  EXPECT_EQ(&ThreadPool::current(), &dflt);
}

TEST(ThreadPool, DefaultThreads) {
  EXPECT_GE(ThreadPool::available_cores(), 1);
  ThreadPool::set_default_threads(3);
  EXPECT_EQ(ThreadPool::default_threads(), 3);
  EXPECT_EQ(ThreadPool::current().threads(), 3);
  EXPECT_EQ(ThreadPool::current_threads(), 3);
  EXPECT_EQ(ThreadPool().threads(), 3);
  cover(ThreadPool::current(), 100);
  ThreadPool::set_default_threads(0);  // automatic: OMP_NUM_THREADS, else the affinity count
  const char* env = std::getenv("OMP_NUM_THREADS");
  const int expected = env && std::atoi(env) > 0 ? std::atoi(env) : ThreadPool::available_cores();
  EXPECT_EQ(ThreadPool::default_threads(), expected);
  EXPECT_EQ(ThreadPool::current().threads(), expected);
}

TEST(ThreadPool, InsideAnOpenMpRegionRunsSerially) {
  ThreadPool p(3);
  std::atomic<int> bad{0}, calls{0};
#pragma omp parallel num_threads(2)
  {
    const auto me = std::this_thread::get_id();
    const bool in_team = omp_in_parallel();
    p.parallel_for(100, [&](int64_t b, int64_t e) {
      ++calls;
      if (in_team && (std::this_thread::get_id() != me || b != 0 || e != 100)) ++bad;
    });
  }
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GE(calls.load(), 2);
}

TEST(ThreadPool, EngineRunsItsStepOnItsOwnPool) {
  namespace fs = std::filesystem;
  const fs::path d = fs::temp_directory_path() / ("upg_thread_pool_" + std::to_string(::getpid()));
  fs::remove_all(d);
  nlohmann::json c = test::tiny_config("LlamaForCausalLM", "llama");
  test::write_tiny_model(d.string(), c, TensorDType::BF16, 3);
  auto m = Model::load(d.string());
  fs::remove_all(d);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 3, 0}) {
    EngineOptions o;
    o.threads = threads;
    Engine e(*m, o);
    int seen_threads = -1;
    e.set_observer([&](const std::string&, const float*, int64_t, int64_t) {
      seen_threads = ThreadPool::current_threads();
    });
    const SeqId s = e.new_sequence();
    std::vector<BatchEntry> batch;
    for (int t = 0; t < 9; ++t) batch.push_back({s, (t * 7 + 1) % 96, t, true});
    std::vector<float> logits;
    e.step(batch, logits);
    EXPECT_EQ(seen_threads, threads > 0 ? threads : ThreadPool::default_threads());
    EXPECT_EQ(ThreadPool::current_threads(), ThreadPool::default_threads());  // the step's scope is gone
    results.push_back(logits);
  }
  // Rows are split differently, the arithmetic per output is not: identical logits.
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[0], results[2]);
}
