// Raw device memory, stream-ordered copies and the bandwidth probe of the CUDA backend (backend/cuda),
// beside the ops of cuda_ops.h; plain C++ like it. `stream` is a cudaStream_t as void*.
#pragma once
#include <cstddef>
#include <cstdint>

namespace upg::cuda {

// cudaMalloc; throws Error (naming the size and cudaMemGetInfo's free bytes) when it fails, leaving
// no CUDA error pending.
void* device_malloc(size_t bytes);
void device_free(void* p) noexcept;
// Copies on `stream`: device to device, host to device (host memory may be reused on return), device
// to host (returns when the bytes are on the host).
void copy_device(void* dst, const void* src, size_t bytes, void* stream);
void copy_to_device(void* dst, const void* host, size_t bytes, void* stream);
void copy_to_host(void* host, const void* src, size_t bytes, void* stream);
void stream_synchronize(void* stream);
// Device-to-device copy bandwidth in bytes/s (read + written), best of 5 copies of 1 GiB (less when
// the device has less free memory) on `stream`.
double measure_copy_bandwidth(void* stream);

}  // namespace upg::cuda
