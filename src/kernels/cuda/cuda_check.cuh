// Shared by the .cu files of upg_cuda: CUDA errors become upg::Error naming the call.
#pragma once
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <initializer_list>
#include <string>

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

// The first of `names` dlopen can open (libraries opened at run time: cuBLAS, NCCL), or null with
// dlopen's errors for each in *tried.
inline void* open_first_library(std::initializer_list<const char*> names, std::string* tried) {
  for (const char* n : names) {
    if (void* h = dlopen(n, RTLD_NOW | RTLD_LOCAL)) return h;
    const char* e = dlerror();
    *tried += str_cat(tried->empty() ? "" : "; ", e ? e : n);
  }
  return nullptr;
}

}  // namespace upg::cuda
