// make_nccl_communicators (backend/communicator.h): one NCCL communicator per CUDA backend of this
// process (ncclCommInitAll), each rank's collectives queued on its backend's stream.
#include "backend/cuda/nccl_communicator.h"

#include <mutex>
#include <set>

#include "backend/cuda/cuda_backend.h"
#include "base/error.h"
#include "kernels/cuda/nccl_ops.h"

namespace upg {

namespace {

struct NcclGroup {
  std::vector<void*> comms;
  std::mutex mu;
  std::string aborted;
  ~NcclGroup() {
    for (void* c : comms)
      if (aborted.empty()) cuda::nccl_destroy(c);
  }
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<NcclGroup> g, int rank, std::shared_ptr<CudaBackend> be)
      : g_(std::move(g)), rank_(rank), be_(std::move(be)) {}
  int rank() const override { return rank_; }
  int ranks() const override { return static_cast<int>(g_->comms.size()); }

  void all_reduce_sum(float* buf, int64_t count) override {
    ready();
    cuda::nccl_all_reduce_sum(g_->comms[static_cast<size_t>(rank_)], buf, count, be_->cuda_stream());
  }
  void all_gather(const float* mine, std::span<const int64_t> counts, float* out) override {
    UPG_CHECK(static_cast<int>(counts.size()) == ranks(), "all_gather: ", counts.size(), " counts for ", ranks(),
              " ranks");
    ready();
    cuda::nccl_all_gather(g_->comms[static_cast<size_t>(rank_)], rank_, mine, counts.data(), ranks(), out,
                          be_->cuda_stream());
  }
  bool recordable() const override { return true; }
  // Aborts every rank's communicator: the collectives the others wait in on their devices end.
  void abort(const std::string& why) override {
    std::lock_guard<std::mutex> lock(g_->mu);
    if (!g_->aborted.empty()) return;
    g_->aborted = "tensor-parallel group stopped: " + why;
    for (void* c : g_->comms) cuda::nccl_abort(c);
  }

 private:
  void ready() {
    {
      std::lock_guard<std::mutex> lock(g_->mu);
      if (!g_->aborted.empty()) throw Error(g_->aborted);
    }
    be_->use_device();
  }
  std::shared_ptr<NcclGroup> g_;
  int rank_;
  std::shared_ptr<CudaBackend> be_;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> make_cuda_nccl_communicators(const std::vector<std::shared_ptr<Backend>>& backends) {
  UPG_CHECK(!backends.empty(), "NCCL communicators: no backends given");
  std::vector<std::shared_ptr<CudaBackend>> cuda;
  std::vector<int> devices;
  std::set<int> seen;
  for (const auto& b : backends) {
    auto c = std::dynamic_pointer_cast<CudaBackend>(b);
    UPG_CHECK(c != nullptr, "NCCL communicators need CUDA backends, not ", b ? b->name() : std::string("none"));
    UPG_CHECK(seen.insert(c->device()).second, "NCCL needs one device per rank: ", c->name(),
              " is given twice (ranks sharing a GPU take the host communicators)");
    devices.push_back(c->device());
    cuda.push_back(std::move(c));
  }
  auto g = std::make_shared<NcclGroup>();
  g->comms = cuda::nccl_init_all(devices);
  std::vector<std::shared_ptr<Communicator>> v;
  for (size_t r = 0; r < cuda.size(); ++r) v.push_back(std::make_shared<NcclCommunicator>(g, static_cast<int>(r), cuda[r]));
  return v;
}

}  // namespace upg
