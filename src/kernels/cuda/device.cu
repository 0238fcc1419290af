// Device queries, DeviceBuffer and Stream of cuda_ops.h.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    if (why) *why = str_cat("cudaGetDeviceCount: ", cudaGetErrorString(e));
    return 0;
  }
  if (n == 0 && why) *why = "cudaGetDeviceCount returned 0 devices";
  return n;
}

std::string device_name(int dev) {
  cudaDeviceProp p;
  UPG_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s, %d SMs, %.0f GB, L2 %d MB, cc %d.%d", p.name, p.multiProcessorCount,
                p.totalGlobalMem / 1e9, p.l2CacheSize >> 20, p.major, p.minor);
  return buf;
}

bool pdl_enabled() {
  static const bool off = [] {
    const char* e = std::getenv("UPG_CUDA_PDL");
    return e && std::strcmp(e, "0") == 0;
  }();
  if (off) return false;
  // Per device: 0 not asked yet, 1 yes, 2 no (compute capability below 9.0).
  static std::atomic<int> known[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
  int k = known[dev].load(std::memory_order_relaxed);
  if (k == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    k = major >= 9 ? 1 : 2;
    known[dev].store(k, std::memory_order_relaxed);
  }
  return k == 1;
}

void set_device(int dev) { UPG_CUDA_CHECK(cudaSetDevice(dev)); }
void synchronize() { UPG_CUDA_CHECK(cudaDeviceSynchronize()); }

size_t memory_in_use() {
  size_t free_b = 0, total = 0;
  UPG_CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
  return total - free_b;
}

DeviceBuffer::DeviceBuffer(size_t bytes) : n_(bytes) {
  if (bytes) UPG_CUDA_CHECK(cudaMalloc(&p_, bytes));
}
DeviceBuffer::~DeviceBuffer() {
  if (p_) cudaFree(p_);
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (p_) cudaFree(p_);
    p_ = o.p_, n_ = o.n_;
    o.p_ = nullptr, o.n_ = 0;
  }
  return *this;
}
void DeviceBuffer::upload(const void* host, size_t bytes, size_t offset) {
  UPG_CHECK(offset + bytes <= n_, "DeviceBuffer::upload: ", bytes, " bytes at ", offset, " exceed ", n_);
  if (bytes) UPG_CUDA_CHECK(cudaMemcpy(static_cast<char*>(p_) + offset, host, bytes, cudaMemcpyHostToDevice));
}
void DeviceBuffer::download(void* host, size_t bytes, size_t offset) const {
  UPG_CHECK(offset + bytes <= n_, "DeviceBuffer::download: ", bytes, " bytes at ", offset, " exceed ", n_);
  if (bytes) UPG_CUDA_CHECK(cudaMemcpy(host, static_cast<const char*>(p_) + offset, bytes, cudaMemcpyDeviceToHost));
}
void DeviceBuffer::fill_bytes(int value) {
  if (n_) UPG_CUDA_CHECK(cudaMemset(p_, value, n_));
}

Stream::Stream() {
  cudaStream_t s;
  UPG_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  s_ = s;
}
Stream::~Stream() {
  if (s_) cudaStreamDestroy(static_cast<cudaStream_t>(s_));
}
void Stream::synchronize() { UPG_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(s_))); }

}  // namespace upg::cuda
