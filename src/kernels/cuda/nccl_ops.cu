// NCCL opened at run time (see nccl_ops.h). Only the types and signatures come from nccl.h.
#include "kernels/cuda/nccl_ops.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include "base/error.h"
#include "kernels/cuda/cuda_check.cuh"

namespace upg::cuda {

namespace {

struct NcclLib {
  ncclResult_t (*comm_init_all)(ncclComm_t*, int, const int*) = nullptr;
  ncclResult_t (*comm_destroy)(ncclComm_t) = nullptr;
  ncclResult_t (*comm_abort)(ncclComm_t) = nullptr;
  ncclResult_t (*all_reduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*group_start)() = nullptr;
  ncclResult_t (*group_end)() = nullptr;
  const char* (*error_string)(ncclResult_t) = nullptr;
  std::string error;  // empty when loaded
};

const NcclLib& nccl_lib() {
  static const NcclLib lib = [] {
    NcclLib l;
    std::string tried;
    void* h = open_first_library({"libnccl.so.2", "libnccl.so"}, &tried);
    if (!h) {
      l.error = str_cat("NCCL could not be opened (", tried, "): install it (libnccl2) or put its folder on LD_LIBRARY_PATH");
      return l;
    }
    auto sym = [&](auto& f, const char* name) { f = reinterpret_cast<std::remove_reference_t<decltype(f)>>(dlsym(h, name)); };
    sym(l.comm_init_all, "ncclCommInitAll");
    sym(l.comm_destroy, "ncclCommDestroy");
    sym(l.comm_abort, "ncclCommAbort");
    sym(l.all_reduce, "ncclAllReduce");
    sym(l.broadcast, "ncclBroadcast");
    sym(l.group_start, "ncclGroupStart");
    sym(l.group_end, "ncclGroupEnd");
    sym(l.error_string, "ncclGetErrorString");
    if (!l.comm_init_all || !l.comm_destroy || !l.comm_abort || !l.all_reduce || !l.broadcast || !l.group_start ||
        !l.group_end || !l.error_string)
      l.error = "the NCCL library found lacks ncclCommInitAll/ncclAllReduce/ncclBroadcast/ncclGroupStart";
    return l;
  }();
  return lib;
}

const NcclLib& loaded() {
  const NcclLib& l = nccl_lib();
  UPG_CHECK(l.error.empty(), l.error);
  return l;
}

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw Error(str_cat("NCCL: ", what, " failed: ", nccl_lib().error_string(r)));
}

}  // namespace

bool nccl_available(std::string* why) {
  const NcclLib& l = nccl_lib();
  if (why) *why = l.error;
  return l.error.empty();
}

std::vector<void*> nccl_init_all(const std::vector<int>& devices) {
  const NcclLib& l = loaded();
  std::vector<ncclComm_t> comms(devices.size());
  check(l.comm_init_all(comms.data(), static_cast<int>(devices.size()), devices.data()), "ncclCommInitAll");
  return std::vector<void*>(comms.begin(), comms.end());
}

void nccl_destroy(void* comm) noexcept {
  if (comm && nccl_lib().error.empty()) nccl_lib().comm_destroy(static_cast<ncclComm_t>(comm));
}

void nccl_abort(void* comm) noexcept {
  if (comm && nccl_lib().error.empty()) nccl_lib().comm_abort(static_cast<ncclComm_t>(comm));
}

void nccl_all_reduce_sum(void* comm, float* buf, int64_t count, void* stream) {
  check(loaded().all_reduce(buf, buf, static_cast<size_t>(count), ncclFloat32, ncclSum, static_cast<ncclComm_t>(comm),
                            static_cast<cudaStream_t>(stream)),
        "ncclAllReduce");
}

void nccl_all_gather(void* comm, int rank, const float* mine, const int64_t* counts, int ranks, float* out, void* stream) {
  const NcclLib& l = loaded();
  check(l.group_start(), "ncclGroupStart");
  int64_t off = 0;
  ncclResult_t r = ncclSuccess;
  for (int k = 0; k < ranks && r == ncclSuccess; ++k) {
    if (counts[k] > 0)
      r = l.broadcast(k == rank ? mine : nullptr, out + off, static_cast<size_t>(counts[k]), ncclFloat32,
                      k, static_cast<ncclComm_t>(comm), static_cast<cudaStream_t>(stream));
    off += counts[k];
  }
  const ncclResult_t end = l.group_end();
  check(r, "ncclBroadcast");
  check(end, "ncclGroupEnd");
}

}  // namespace upg::cuda
