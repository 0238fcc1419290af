// Elementwise fp32 ops of the forward pass (bias, residual add, scaling, logit soft-capping, column
// copies, row gathers, weighted row sums, fills) and the bf16 store of new K / V rows into the paged
// cache. One grid-stride loop of 256 threads per op; an empty op launches nothing.
#include <algorithm>

#include "kernels/cuda/bf16_bits.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

// for (i = this thread's first index; i < n; i += threads in the grid)
#define UPG_GRID_STRIDE(i, n)                                                               \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void add_bias_kernel(float* y, const float* __restrict__ bias, int64_t width, int64_t ld, int64_t total) {
  pdl_wait();
  pdl_launch_dependents();
  UPG_GRID_STRIDE(i, total) {
    const int64_t r = i / width, c = i - r * width;
    y[r * ld + c] += bias[c];
  }
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  pdl_wait();
  pdl_launch_dependents();
  UPG_GRID_STRIDE(i, n) x[i] += y[i];
}

__global__ void scale_kernel(float* x, int64_t n, float s) {
  pdl_wait();
  pdl_launch_dependents();
  UPG_GRID_STRIDE(i, n) x[i] *= s;
}

__global__ void softcap_kernel(float* x, int64_t n, float cap) {
  pdl_wait();
  pdl_launch_dependents();
  UPG_GRID_STRIDE(i, n) x[i] = cap * tanhf(x[i] / cap);
}

__global__ void copy_columns_kernel(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t width,
                                    int64_t total) {
  pdl_wait();
  pdl_launch_dependents();
  UPG_GRID_STRIDE(i, total) {
    const int64_t r = i / width, c = i - r * width;
    dst[r * dst_ld + c] = src[r * src_ld + c];
  }
}

__global__ void gather_rows_kernel(float* dst, const float* src, const int32_t* __restrict__ rows, int64_t width,
                                   int64_t total) {
  pdl_wait();
  pdl_launch_dependents();
  UPG_GRID_STRIDE(i, total) {
    const int64_t r = i / width, c = i - r * width;
    dst[i] = src[static_cast<int64_t>(rows[r]) * width + c];
  }
}

__global__ void add_weighted_rows_kernel(float* dst, const float* src, const int32_t* __restrict__ rows,
                                         const float* __restrict__ weights, int64_t width, int64_t total) {
  pdl_wait();
  pdl_launch_dependents();
  UPG_GRID_STRIDE(i, total) {
    const int64_t r = i / width, c = i - r * width;
    float& o = dst[static_cast<int64_t>(rows[r]) * width + c];
    o = fmaf(src[i], weights[r], o);
  }
}

__global__ void fill_kernel(float* x, int64_t n, float v) {
  pdl_wait();
  pdl_launch_dependents();
  UPG_GRID_STRIDE(i, n) x[i] = v;
}

__global__ void kv_store_bf16_kernel(PagedKv kv, size_t part_offset, const float* __restrict__ x, int64_t ld,
                                     const int32_t* __restrict__ pos, int64_t n_kv_heads, int64_t total) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t hd = kv.head_dim, per_entry = n_kv_heads * hd;
  UPG_GRID_STRIDE(e, total) {
    const int64_t t = e / per_entry, rem = e - t * per_entry;
    const int64_t g = rem / hd, i = rem - g * hd;
    const int64_t p = pos[t];
    uint8_t* blk = const_cast<uint8_t*>(kv.blocks[t * kv.max_blocks + p / kv.block_size]);
    uint8_t* row = blk + kv.layer_offset + part_offset + static_cast<size_t>(g) * kv.head_stride +
                   static_cast<size_t>(p % kv.block_size) * kv.row_bytes;
    reinterpret_cast<uint16_t*>(row)[i] = to_bf16_bits(x[t * ld + rem]);
  }
}

}  // namespace

void add_bias(float* y, const float* bias, int64_t rows, int64_t width, int64_t ld, void* stream) {
  if (rows <= 0 || width <= 0) return;
  UPG_CHECK(ld >= width, "add_bias: ld ", ld, " < width ", width);
  const int64_t total = rows * width;
  launch_pdl("add_bias_kernel", add_bias_kernel, grid_for(total), kThreads, 0, stream, y, bias, width, ld, total);
}

void add(float* x, const float* y, int64_t n, void* stream) {
  if (n <= 0) return;
  launch_pdl("add_kernel", add_kernel, grid_for(n), kThreads, 0, stream, x, y, n);
}

void scale(float* x, int64_t n, float s, void* stream) {
  if (n <= 0) return;
  launch_pdl("scale_kernel", scale_kernel, grid_for(n), kThreads, 0, stream, x, n, s);
}

void softcap(float* x, int64_t n, float cap, void* stream) {
  if (n <= 0) return;
  launch_pdl("softcap_kernel", softcap_kernel, grid_for(n), kThreads, 0, stream, x, n, cap);
}

void copy_columns(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t width,
                  void* stream) {
  if (rows <= 0 || width <= 0) return;
  UPG_CHECK(dst_ld >= width && src_ld >= width, "copy_columns: dst_ld ", dst_ld, " / src_ld ", src_ld, " < width ",
            width);
  const int64_t total = rows * width;
  launch_pdl("copy_columns_kernel", copy_columns_kernel, grid_for(total), kThreads, 0, stream, dst, dst_ld, src, src_ld, width, total);
}

void gather_rows(float* dst, const float* src, const int32_t* rows, int64_t n, int64_t width, void* stream) {
  if (n <= 0 || width <= 0) return;
  const int64_t total = n * width;
  launch_pdl("gather_rows_kernel", gather_rows_kernel, grid_for(total), kThreads, 0, stream, dst, src, rows, width, total);
}

void add_weighted_rows(float* dst, const float* src, const int32_t* rows, const float* weights, int64_t n,
                       int64_t width, void* stream) {
  if (n <= 0 || width <= 0) return;
  const int64_t total = n * width;
  launch_pdl("add_weighted_rows_kernel", add_weighted_rows_kernel, grid_for(total), kThreads, 0, stream, dst, src, rows,
             weights, width, total);
}

void fill(float* x, int64_t n, float v, void* stream) {
  if (n <= 0) return;
  launch_pdl("fill_kernel", fill_kernel, grid_for(n), kThreads, 0, stream, x, n, v);
}

void kv_store_bf16(const PagedKv& kv, int kv_index, const float* x, int64_t ld, const int32_t* pos, int64_t n,
                   int64_t n_kv_heads, void* stream) {
  if (n <= 0 || n_kv_heads <= 0) return;
  UPG_CHECK(kv_index == 0 || kv_index == 1, "kv_store_bf16: kv_index ", kv_index, " (0 = keys, 1 = values)");
  UPG_CHECK(kv.head_dim > 0 && kv.row_bytes == 2 * static_cast<size_t>(kv.head_dim),
            "kv_store_bf16: bf16 rows of 2 * head_dim bytes needed (head_dim ", kv.head_dim, ", row_bytes ",
            kv.row_bytes, ")");
  UPG_CHECK(ld >= n_kv_heads * kv.head_dim, "kv_store_bf16: ld ", ld, " < n_kv_heads * head_dim ",
            n_kv_heads * kv.head_dim);
  const int64_t total = n * n_kv_heads * kv.head_dim;
  launch_pdl("kv_store_bf16_kernel", kv_store_bf16_kernel, grid_for(total), kThreads, 0, stream,
      kv, static_cast<size_t>(kv_index) * kv.kv_offset, x, ld, pos, n_kv_heads, total);
}

#undef UPG_GRID_STRIDE

}  // namespace upg::cuda
