// Shared by the .cu files of upg_cuda: CUDA errors become upg::Error naming the call.
#pragma once
#include <cuda_runtime.h>

#include "base/error.h"

namespace upg::cuda {

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  throw Error(str_cat("CUDA: ", call, " failed at ", file, ":", line, ": ", cudaGetErrorString(e)));
}

#define UPG_CUDA_CHECK(call)                                                         \
  do {                                                                               \
    const cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess) ::upg::cuda::throw_cuda(e_, #call, __FILE__, __LINE__);   \
  } while (0)
// After a kernel launch: launch-configuration errors surface here.
#define UPG_CUDA_LAUNCHED(name) UPG_CUDA_CHECK(cudaGetLastError())

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace upg::cuda
