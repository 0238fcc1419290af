// How the paged KV cache stores rows (one row = head_dim values of one position and kv head), shared
// by the runtime's KvCache (runtime/kv_cache.h), which owns the blocks, and the attention kernels,
// which read them. Row types:
//   f32, bf16, f16: head_dim values of that type;
//   q8:             head_dim int8 values, then one f32 scale (little-endian, unaligned):
//                   value = int8 * scale, scale = max|x| / 127 (0 for an all-zero row).
// Row (kv, head, pos) of one layer of one sequence starts at
//   blocks[pos / block_size] + layer_offset + kv * kv_offset + head * head_stride + (pos % block_size) * row_bytes
// (a block holds block_size consecutive positions: [layer][k | v][kv_head][slot][row]).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace upg {

enum class KvType { F32, BF16, F16, Q8 };
const char* kv_type_name(KvType t);
// "f32", "bf16", "f16", "q8"; throws Error listing them otherwise.
KvType parse_kv_type(const std::string& s);
// Bytes of one row of head_dim values.
size_t kv_row_bytes(KvType t, int64_t head_dim);

// One layer's rows of one sequence.
struct KvLayerView {
  KvType type;
  int64_t block_size, head_dim;
  size_t row_bytes, head_stride, kv_offset, layer_offset;
  uint8_t* const* blocks;  // the sequence's blocks, in position order
  uint8_t* row(int kv, int64_t head, int64_t pos) const {
    return blocks[pos / block_size] + layer_offset + static_cast<size_t>(kv) * kv_offset +
           static_cast<size_t>(head) * head_stride + static_cast<size_t>(pos % block_size) * row_bytes;
  }
};

}  // namespace upg
