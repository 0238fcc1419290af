// Backend ops with a default made of the other ops (backend.h).
#include "backend/backend.h"

namespace upg {

void Backend::attention_input(StepContext& ctx, int64_t layer, const float* qkv, int64_t ld, int64_t n, int64_t n_heads,
                              int64_t n_kv_heads, int64_t head_dim, int64_t rotary_dim, const float* cos,
                              const float* sin, float* q_out, float* k_scratch) {
  const int64_t q_out_w = n_heads * head_dim, kv_w = n_kv_heads * head_dim;
  copy_columns(q_out, q_out_w, qkv, ld, n, q_out_w);
  copy_columns(k_scratch, kv_w, qkv + q_out_w, ld, n, kv_w);
  rope(q_out, n, n_heads, head_dim, rotary_dim, cos, sin);
  rope(k_scratch, n, n_kv_heads, head_dim, rotary_dim, cos, sin);
  store_kv(ctx, layer, 0, k_scratch, kv_w, n_kv_heads);
  store_kv(ctx, layer, 1, qkv + q_out_w + kv_w, ld, n_kv_heads);
}

}  // namespace upg
