// make_host_communicators: the ranks of a group as threads of one process. Each collective is two
// barriers: every rank publishes its pointer, all read what they need into their own buffer, and
// the second barrier keeps any rank from reusing its buffer before the others have read it. Sums go
// in rank order, so every rank gets the same bits.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "backend/communicator.h"
#include "base/error.h"

namespace upg {

namespace {

struct HostGroup {
  explicit HostGroup(int n) : ranks(n), ptrs(static_cast<size_t>(n), nullptr) {}
  const int ranks;
  std::vector<const float*> ptrs;  // what each rank published for the current collective
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  std::string aborted;  // non-empty: why the group failed

  // Waits until every rank has arrived (or throws when the group was aborted).
  void barrier() {
    std::unique_lock<std::mutex> lock(mu);
    if (!aborted.empty()) throw Error(aborted);
    const uint64_t gen = generation;
    if (++arrived == ranks) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    cv.wait(lock, [&] { return generation != gen || !aborted.empty(); });
    if (generation == gen) throw Error(aborted);
  }
  void abort(const std::string& why) {
    std::lock_guard<std::mutex> lock(mu);
    if (aborted.empty()) aborted = "tensor-parallel group stopped: " + why;
    cv.notify_all();
  }
};

class HostCommunicator final : public Communicator {
 public:
  HostCommunicator(std::shared_ptr<HostGroup> g, int rank) : g_(std::move(g)), rank_(rank) {}
  int rank() const override { return rank_; }
  int ranks() const override { return g_->ranks; }

  void all_reduce_sum(float* buf, int64_t count) override {
    if (g_->ranks == 1) return;
    g_->ptrs[static_cast<size_t>(rank_)] = buf;
    g_->barrier();
    sum_.assign(g_->ptrs[0], g_->ptrs[0] + count);
    for (int r = 1; r < g_->ranks; ++r) {
      const float* p = g_->ptrs[static_cast<size_t>(r)];
      for (int64_t i = 0; i < count; ++i) sum_[static_cast<size_t>(i)] += p[i];
    }
    g_->barrier();  // everyone has read every buffer
    std::memcpy(buf, sum_.data(), sizeof(float) * static_cast<size_t>(count));
  }

  void all_gather(const float* mine, std::span<const int64_t> counts, float* out) override {
    UPG_CHECK(static_cast<int>(counts.size()) == g_->ranks, "all_gather: ", counts.size(), " counts for ",
              g_->ranks, " ranks");
    g_->ptrs[static_cast<size_t>(rank_)] = mine;
    g_->barrier();
    int64_t off = 0;
    for (int r = 0; r < g_->ranks; ++r) {
      const int64_t c = counts[static_cast<size_t>(r)];
      if (c > 0 && out + off != g_->ptrs[static_cast<size_t>(r)])
        std::memcpy(out + off, g_->ptrs[static_cast<size_t>(r)], sizeof(float) * static_cast<size_t>(c));
      off += c;
    }
    g_->barrier();
  }

  void abort(const std::string& why) override { g_->abort(why); }

 private:
  std::shared_ptr<HostGroup> g_;
  int rank_;
  std::vector<float> sum_;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> make_host_communicators(int ranks) {
  UPG_CHECK(ranks >= 1, "a tensor-parallel group needs at least 1 rank, not ", ranks);
  auto g = std::make_shared<HostGroup>(ranks);
  std::vector<std::shared_ptr<Communicator>> v;
  for (int r = 0; r < ranks; ++r) v.push_back(std::make_shared<HostCommunicator>(g, r));
  return v;
}

}  // namespace upg
