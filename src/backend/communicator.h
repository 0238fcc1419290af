// How the ranks of a tensor-parallel group (runtime/tensor_parallel.h) exchange activations: the
// collectives of the Megatron-style split, on backend memory. Every rank calls the same collectives
// in the same order with the same sizes (the engines of a group run the same steps); a call returns
// once this rank's result is complete.
//
// Implementations: make_host_communicators (ranks as threads of one process, through host memory:
// any backend; how the sharding is tested without several GPUs) and make_nccl_communicators (NCCL,
// one GPU per rank, on each CUDA backend's stream).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace upg {

class Backend;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int ranks() const = 0;
  // buf (count floats) <- the sum over the ranks of their buf, on every rank. Every rank gets the same
  // bits (the ranks' terms added in rank order).
  virtual void all_reduce_sum(float* buf, int64_t count) = 0;
  // out <- rank 0's counts[0] floats, then rank 1's counts[1], ... (the sum of counts), on every rank;
  // `mine` holds this rank's counts[rank()] floats. counts (host) is the same on every rank.
  virtual void all_gather(const float* mine, std::span<const int64_t> counts, float* out) = 0;
  // Called by a rank that failed: the collectives every other rank is waiting in, or calls later,
  // throw Error naming `why` instead of waiting for it forever. Sticky: the group is unusable after.
  virtual void abort(const std::string& why) = 0;
  // Whether its collectives can be recorded with the ops of a step and replayed (a CUDA graph:
  // Backend::begin_recording): NCCL's can; the host collectives wait on the host, so they cannot.
  virtual bool recordable() const { return false; }
};

// `ranks` communicators of one group for threads of this process, rank i's at index i. Buffers are
// host memory, or memory of backends[i] when given: a backend without host memory (a GPU) has its
// buffers copied to the host and back around each collective (slow, but any backend, several ranks
// on one GPU included). Throws Error when ranks < 1 or backends has another count.
std::vector<std::shared_ptr<Communicator>> make_host_communicators(int ranks, const std::vector<Backend*>& backends = {});

// NCCL communicators over the CUDA backends given (rank i on backends[i], each its own device),
// queued on each backend's stream. Throws Error when a backend is not CUDA, two share a device, NCCL
// cannot be opened, or this build has no CUDA backend. (backend_factory.cpp)
std::vector<std::shared_ptr<Communicator>> make_nccl_communicators(const std::vector<std::shared_ptr<Backend>>& backends);

}  // namespace upg
