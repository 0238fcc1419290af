// cuda_memory.h: device memory, stream-ordered copies, the copy-bandwidth probe.
#include <algorithm>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_memory.h"

namespace upg::cuda {

void* device_malloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
  if (e != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it, so later launch checks do not report it
    size_t free_b = 0, total = 0;
    cudaMemGetInfo(&free_b, &total);
    cudaGetLastError();
    throw Error(str_cat("CUDA: cannot allocate ", bytes >> 20, " MiB of device memory (", free_b >> 20, " MiB of ",
                        total >> 20, " MiB free): ", cudaGetErrorString(e)));
  }
  return p;
}

void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}

void copy_device(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes) UPG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream)));
}

void copy_to_device(void* dst, const void* host, size_t bytes, void* stream) {
  // From pageable memory the copy is staged before cudaMemcpyAsync returns: host may be reused.
  if (bytes) UPG_CUDA_CHECK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, as_stream(stream)));
}

void copy_to_host(void* host, const void* src, size_t bytes, void* stream) {
  if (bytes) UPG_CUDA_CHECK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)));
  UPG_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void stream_synchronize(void* stream) { UPG_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream))); }

double measure_copy_bandwidth(void* stream) {
  size_t free_b = 0, total = 0;
  UPG_CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
  const size_t bytes = std::min<size_t>(size_t{1} << 30, free_b / 4) & ~size_t{255};
  UPG_CHECK(bytes >= (size_t{1} << 20), "CUDA: too little free device memory to measure bandwidth");
  void* a = device_malloc(bytes);
  void* b = nullptr;
  try {
    b = device_malloc(bytes);
  } catch (...) {
    device_free(a);
    throw;
  }
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  float best = 0;
  for (int r = 0; r < 6; ++r) {
    cudaEventRecord(e0, as_stream(stream));
    cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, as_stream(stream));
    cudaEventRecord(e1, as_stream(stream));
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    if (r > 0 && (best == 0 || ms < best)) best = ms;  // run 0 warms up
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  device_free(a);
  device_free(b);
  UPG_CUDA_CHECK(cudaGetLastError());
  return 2.0 * static_cast<double>(bytes) / (best * 1e-3);
}

}  // namespace upg::cuda
