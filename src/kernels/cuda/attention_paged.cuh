// Shared by the two attention kernels (attention_decode.cu, attention_prompt.cu): the address of one
// row of the paged bf16 cache (layout: cuda_ops.h, PagedKv) and the merge of per-split partial
// results (FlashDecoding).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/cuda_ops.h"

namespace upg::cuda {

// Row (part: 0 keys, 1 values; kv head; position p) of table row `entry`.
__device__ __forceinline__ const __nv_bfloat162* kv_row(const PagedKv& kv, int entry, int part, int head, int64_t p) {
  const uint8_t* blk = kv.blocks[static_cast<int64_t>(entry) * kv.max_blocks + p / kv.block_size];
  const uint8_t* r = blk + kv.layer_offset + static_cast<size_t>(part) * kv.kv_offset +
                     static_cast<size_t>(head) * kv.head_stride + static_cast<size_t>(p % kv.block_size) * kv.row_bytes;
  return reinterpret_cast<const __nv_bfloat162*>(r);
}

// ws: [rows][splits][2 + head_dim] = (max score, sum of exp, unnormalised V sum) per split, a split
// with no position in range holding max -inf; out[row][c] = the merged softmax-weighted V. One CTA
// per row (row = entry * n_heads + head).
void attention_combine(const float* ws, int64_t rows, int splits, int head_dim, float* out, void* stream);

}  // namespace upg::cuda
