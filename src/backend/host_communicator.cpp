// make_host_communicators: the ranks of a group as threads of one process. Each collective is two
// barriers: every rank publishes its pointer, all read what they need into their own buffer, and
// the second barrier keeps any rank from reusing its buffer before the others have read it. Sums go
// in rank order, so every rank gets the same bits.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "backend/backend.h"
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
  HostCommunicator(std::shared_ptr<HostGroup> g, int rank, Backend* device)
      : g_(std::move(g)), rank_(rank), device_(device && !device->host_memory() ? device : nullptr) {}
  int rank() const override { return rank_; }
  int ranks() const override { return g_->ranks; }

  void all_reduce_sum(float* buf, int64_t count) override {
    if (g_->ranks == 1) return;
    if (device_) {  // through the host: down, reduce, up
      stage_in_.resize(static_cast<size_t>(count));
      device_->download(stage_in_.data(), buf, sizeof(float) * static_cast<size_t>(count));
      host_all_reduce(stage_in_.data(), count);
      device_->upload(buf, stage_in_.data(), sizeof(float) * static_cast<size_t>(count));
      return;
    }
    host_all_reduce(buf, count);
  }

  void all_gather(const float* mine, std::span<const int64_t> counts, float* out) override {
    UPG_CHECK(static_cast<int>(counts.size()) == g_->ranks, "all_gather: ", counts.size(), " counts for ",
              g_->ranks, " ranks");
    if (device_) {
      int64_t total = 0;
      for (int64_t c : counts) total += c;
      const int64_t my = counts[static_cast<size_t>(rank_)];
      stage_in_.resize(static_cast<size_t>(my));
      stage_out_.resize(static_cast<size_t>(total));
      device_->download(stage_in_.data(), mine, sizeof(float) * static_cast<size_t>(my));
      host_all_gather(stage_in_.data(), counts, stage_out_.data());
      device_->upload(out, stage_out_.data(), sizeof(float) * static_cast<size_t>(total));
      return;
    }
    host_all_gather(mine, counts, out);
  }

  void abort(const std::string& why) override { g_->abort(why); }

 private:
  void host_all_reduce(float* buf, int64_t count) {
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

  void host_all_gather(const float* mine, std::span<const int64_t> counts, float* out) {
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

  std::shared_ptr<HostGroup> g_;
  int rank_;
  Backend* device_;  // the rank's backend when its buffers are not host memory
  std::vector<float> sum_, stage_in_, stage_out_;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> make_host_communicators(int ranks, const std::vector<Backend*>& backends) {
  UPG_CHECK(ranks >= 1, "a tensor-parallel group needs at least 1 rank, not ", ranks);
  UPG_CHECK(backends.empty() || static_cast<int>(backends.size()) == ranks, "make_host_communicators: ",
            backends.size(), " backends for ", ranks, " ranks");
  auto g = std::make_shared<HostGroup>(ranks);
  std::vector<std::shared_ptr<Communicator>> v;
  for (int r = 0; r < ranks; ++r)
    v.push_back(std::make_shared<HostCommunicator>(g, r, backends.empty() ? nullptr : backends[static_cast<size_t>(r)]));
  return v;
}

}  // namespace upg
