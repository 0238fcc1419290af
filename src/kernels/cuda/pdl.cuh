// Programmatic dependent launch (Hopper, sm_90+): a kernel launched with launch_pdl may start while
// the kernel before it in the stream is still running, so its start-up (block scheduling, the first
// weight loads, level tables into shared memory) overlaps the tail of its predecessor instead of
// following it. The rules every kernel launched this way keeps:
//   - before pdl_wait() it reads only data no earlier kernel of the step writes (weights, scales,
//     level tables, constants) and writes no global memory;
//   - every block calls pdl_wait() (it returns once the previous kernel has completed and its writes
//     are visible; the previous kernel waited for its own predecessor, so all earlier kernels are
//     complete too), then pdl_launch_dependents(), which lets the next kernel's blocks start.
// On older GPUs, or with UPG_CUDA_PDL=0, launch_pdl is a plain launch and both calls do nothing.
// Launches recorded into a CUDA graph keep the programmatic edges.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/cuda_check.cuh"

namespace upg::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether launches on the current device may overlap (compute capability 9.0 or later, and
// UPG_CUDA_PDL is not 0). device.cu.
bool pdl_enabled();

// kernel<<<grid, block, smem, stream>>>(args...), with programmatic stream serialization when
// pdl_enabled(); returns the launch's error.
template <typename... Params, typename... Args>
cudaError_t try_launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, void* stream,
                           Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = as_stream(stream);
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// The same, throwing an Error that names the kernel (`name`) and the launch shape when it fails.
template <typename... Params, typename... Args>
void launch_pdl(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, void* stream,
                Args&&... args) {
  const cudaError_t e = try_launch_pdl(kernel, grid, block, smem, stream, std::forward<Args>(args)...);
  if (e != cudaSuccess)
    throw Error(str_cat("CUDA: launch of ", name, " failed (grid ", grid.x, " x ", grid.y, " x ", grid.z, ", ", block.x,
                        " threads, ", smem, " bytes of shared memory): ", cudaGetErrorString(e)));
}

}  // namespace upg::cuda
