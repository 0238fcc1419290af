// NCCL collectives for tensor parallelism (backend/cuda/nccl_communicator.cpp), in plain C++.
// NCCL is opened at run time (dlopen of libnccl.so.2, as cuBLAS is: gemm_dequant.cu), so binaries
// link no NCCL and run without it; the functions here throw Error naming what is missing when it
// cannot be opened. Buffers are device memory of the communicator's device; the calls are queued on
// `stream` (a cudaStream_t) and return before they complete.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace upg::cuda {

// Whether NCCL can be opened, and why not (*why) when it cannot.
bool nccl_available(std::string* why);
// One communicator per device of `devices` (rank i on devices[i]), for threads of this process
// (ncclCommInitAll). Throws Error when NCCL cannot be opened or fails (naming its error).
std::vector<void*> nccl_init_all(const std::vector<int>& devices);
void nccl_destroy(void* comm) noexcept;
// Stops the operations queued on `comm` that wait for other ranks; the communicator is then unusable.
void nccl_abort(void* comm) noexcept;
// buf (count floats) <- the sum over the ranks (ncclAllReduce, fp32).
void nccl_all_reduce_sum(void* comm, float* buf, int64_t count, void* stream);
// out <- rank 0's counts[0] floats (counts: `ranks` values), rank 1's counts[1], ...; `mine` holds counts[rank] floats (a
// group of broadcasts, one per rank, so the counts may differ).
void nccl_all_gather(void* comm, int rank, const float* mine, const int64_t* counts, int ranks, float* out, void* stream);

}  // namespace upg::cuda
