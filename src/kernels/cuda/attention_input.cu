// The attention inputs of one layer in one launch, from the fused projection's output row
// [q heads | k heads | v heads] of each entry: q gets RoPE (rotate-half, as rope.cu) into q_out, k
// gets RoPE and is stored in bf16 (as kv_store_bf16) at the entry's position, v is stored as it is.
// This replaces two column copies, two RoPE launches and two KV stores per layer.
// Grid (entry, head of q / k / v); one thread per channel pair or channel.
#include "kernels/cuda/bf16_bits.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

namespace {

__global__ void attention_input_kernel(PagedKv kv, const float* __restrict__ qkv, int64_t ld,
                                       const int32_t* __restrict__ pos, int nh, int nkv, int hd, int half,
                                       const float* __restrict__ cs, const float* __restrict__ sn, float* q_out) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t t = blockIdx.x;
  const int hh = blockIdx.y;  // q heads, then k heads, then v heads
  const float* src = qkv + t * ld + static_cast<int64_t>(hh) * hd;
  const bool rotate = hh < nh + nkv;
  float* qdst = nullptr;
  uint16_t* row = nullptr;
  if (hh < nh) {
    qdst = q_out + (t * nh + hh) * hd;
  } else {
    const int part = hh < nh + nkv ? 0 : 1, g = hh - nh - part * nkv;
    const int64_t p = pos[t];
    uint8_t* blk = const_cast<uint8_t*>(kv.blocks[t * kv.max_blocks + p / kv.block_size]);
    row = reinterpret_cast<uint16_t*>(blk + kv.layer_offset + static_cast<size_t>(part) * kv.kv_offset +
                                      static_cast<size_t>(g) * kv.head_stride +
                                      static_cast<size_t>(p % kv.block_size) * kv.row_bytes);
  }
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float v;
    if (rotate && i < 2 * half) {
      const int j = i < half ? i : i - half;
      const float c = cs[t * half + j], s = sn[t * half + j];
      const float x1 = src[j], x2 = src[j + half];
      v = i < half ? x1 * c - x2 * s : x2 * c + x1 * s;
    } else {
      v = src[i];
    }
    if (qdst) qdst[i] = v;
    else row[i] = to_bf16_bits(v);
  }
}

}  // namespace

void attention_input(const PagedKv& kv, const float* qkv, int64_t ld, const int32_t* pos, int64_t n, int64_t n_heads,
                     int64_t n_kv_heads, int64_t head_dim, int64_t rotary_dim, const float* cos, const float* sin,
                     float* q_out, void* stream) {
  if (n <= 0) return;
  UPG_CHECK(rotary_dim % 2 == 0 && rotary_dim <= head_dim, "attention_input: rotary_dim ", rotary_dim, " vs head_dim ",
            head_dim);
  UPG_CHECK(kv.head_dim == head_dim && kv.row_bytes == 2 * static_cast<size_t>(head_dim),
            "attention_input: bf16 cache rows of head_dim ", head_dim, " needed (the cache has ", kv.head_dim, ")");
  UPG_CHECK(ld >= (n_heads + 2 * n_kv_heads) * head_dim, "attention_input: ld ", ld, " < (n_heads + 2 n_kv_heads) * head_dim");
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(n_heads + 2 * n_kv_heads));
  const int threads = head_dim > 64 ? 128 : 64;
  launch_pdl("attention_input_kernel", attention_input_kernel, grid, threads, 0, stream,
      kv, qkv, ld, pos, static_cast<int>(n_heads), static_cast<int>(n_kv_heads), static_cast<int>(head_dim),
      static_cast<int>(rotary_dim / 2), cos, sin, q_out);
}

}  // namespace upg::cuda
