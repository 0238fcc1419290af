// Sampling's work on the GPU (kernels/logit_select.h has the maths; kernels/cpu/logit_select.cpp the
// plain reference): penalties applied in place, then per logits row its k largest values with their
// ids and the softmax normaliser, so a decode step sends the host k candidates instead of the
// vocabulary's worth of logits.
//
// top_logits: one block of 1024 threads per row. The row's largest value and sum of exp(v - largest)
// (block reductions, fixed order); then a radix select of the k-th largest value over the values'
// order-preserving 32-bit keys, 8 bits a pass (a 256-bin shared histogram, one atomic per distinct
// digit per warp); then one pass collects the values above that key (any order) and, in id order
// (a block-wide count per tile), the lowest ids of those equal to it; a bitonic sort of the k
// (value, id) pairs in shared memory gives the order. The row stays in L2 between the passes.
#include <algorithm>
#include <climits>
#include <cstdint>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/logit_select.h"

namespace upg::cuda {

namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// A float's key: larger floats have larger keys (negative values' bits inverted, positive values'
// sign bit set).
__device__ __forceinline__ uint32_t order_key(float v) {
  const uint32_t b = __float_as_uint(v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key);
}

__global__ void penalize_kernel(float* logits, int64_t ld, const LogitPenalty* __restrict__ p, int64_t n) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float* l = logits + static_cast<int64_t>(p[i].row) * ld + p[i].token;
    *l = penalized(*l, p[i]);
  }
}

__global__ void __launch_bounds__(kThreads)
    top_logits_kernel(const float* __restrict__ logits, int64_t ld, const int32_t* __restrict__ rows, int64_t vocab,
                      int k, int32_t* __restrict__ ids, float* __restrict__ values, double* __restrict__ sum_exp) {
  __shared__ unsigned hist[256];
  __shared__ float red_f[kWarps];
  __shared__ double red_d[kWarps];
  __shared__ unsigned long long red_u[kWarps];
  __shared__ unsigned warp_count[kWarps];
  __shared__ unsigned long long cand[kMaxTopLogits];  // (~key << 32) | id: ascending = largest first
  __shared__ unsigned s_digit, s_remaining, s_greater;
  pdl_wait();
  pdl_launch_dependents();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const float* x = logits + static_cast<int64_t>(rows[blockIdx.x]) * ld;

  if (k == 1 && !sum_exp) {  // greedy: the largest key and its lowest id, one pass
    unsigned long long best = 0;  // (key << 32) | ~id: the largest is the largest value, then the lowest id
    for (int64_t i = tid; i < vocab; i += kThreads)
      best = max(best, (static_cast<unsigned long long>(order_key(x[i])) << 32) | static_cast<uint32_t>(~i));
    best = block_reduce(best, MaxU64Op{}, 0ull, red_u);
    if (tid == 0) {
      ids[blockIdx.x] = static_cast<int32_t>(~static_cast<uint32_t>(best & 0xFFFFFFFFull));
      values[blockIdx.x] = key_value(static_cast<uint32_t>(best >> 32));
    }
    return;
  }
  double sum = 0;
  if (sum_exp) {  // the largest value, then the softmax normaliser
    float mx = -INFINITY;
    for (int64_t i = tid; i < vocab; i += kThreads) mx = fmaxf(mx, x[i]);
    mx = block_reduce(mx, MaxOp{}, -INFINITY, red_f);
    for (int64_t i = tid; i < vocab; i += kThreads) sum += static_cast<double>(expf(x[i] - mx));
    sum = block_reduce(sum, SumOp{}, 0.0, red_d);
  }

  // The k-th largest key, 8 bits at a time from the top; `remaining`: how many of the values whose
  // key starts with `prefix` (under `mask`) are still to be taken.
  uint32_t prefix = 0, mask = 0;
  unsigned remaining = static_cast<unsigned>(k);
  const int64_t span = (vocab + kThreads - 1) / kThreads * kThreads;  // whole warps in every pass
  for (int shift = 24; shift >= 0; shift -= 8) {
    if (tid < 256) hist[tid] = 0;
    __syncthreads();
    for (int64_t i = tid; i < span; i += kThreads) {
      unsigned digit = 256;  // not under the prefix
      if (i < vocab) {
        const uint32_t key = order_key(x[i]);
        if ((key & mask) == prefix) digit = (key >> shift) & 255u;
      }
      const unsigned same = __match_any_sync(0xffffffffu, digit);
      if (digit < 256 && lane == __ffs(same) - 1) atomicAdd(&hist[digit], static_cast<unsigned>(__popc(same)));
    }
    __syncthreads();
    if (tid == 0) {
      unsigned above = 0;
      int d = 255;
      for (; d > 0; --d) {
        if (above + hist[d] >= remaining) break;
        above += hist[d];
      }
      s_digit = static_cast<unsigned>(d);
      s_remaining = remaining - above;
      s_greater = 0;
    }
    __syncthreads();
    prefix |= s_digit << shift;
    mask |= 0xFFu << shift;
    remaining = s_remaining;
  }
  const uint32_t kth = prefix;
  const unsigned greater = static_cast<unsigned>(k) - remaining;  // values with a key above kth

  // Collect: those above kth anywhere in [0, greater), those equal to it in id order after them.
  unsigned eq_base = 0;
  for (int64_t base = 0; base < vocab; base += kThreads) {
    const int64_t i = base + tid;
    uint32_t key = 0;
    if (i < vocab) key = order_key(x[i]);
    const bool eq = i < vocab && key == kth;
    if (i < vocab && key > kth) {
      const unsigned slot = atomicAdd(&s_greater, 1u);
      cand[slot] = (static_cast<unsigned long long>(~key) << 32) | static_cast<uint32_t>(i);
    }
    const unsigned ball = __ballot_sync(0xffffffffu, eq);
    if (lane == 0) warp_count[warp] = static_cast<unsigned>(__popc(ball));
    __syncthreads();
    unsigned before = 0, total = 0;
    for (int w = 0; w < kWarps; ++w) {
      const unsigned c = warp_count[w];
      before += w < warp ? c : 0;
      total += c;
    }
    if (eq) {
      const unsigned r = eq_base + before + static_cast<unsigned>(__popc(ball & ((1u << lane) - 1u)));
      if (r < remaining) cand[greater + r] = (static_cast<unsigned long long>(~key) << 32) | static_cast<uint32_t>(i);
    }
    eq_base += total;
    __syncthreads();  // warp_count is written again
  }

  // Bitonic sort of the k pairs, padded to a power of two with pairs that sort last.
  int p2 = 1;
  while (p2 < k) p2 <<= 1;
  for (int i = k + tid; i < p2; i += kThreads) cand[i] = ~0ull;
  __syncthreads();
  for (int size = 2; size <= p2; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = tid; i < p2; i += kThreads) {
        const int j = i ^ stride;
        if (j > i) {
          const unsigned long long a = cand[i], b = cand[j];
          if ((a > b) == ((i & size) == 0)) cand[i] = b, cand[j] = a;
        }
      }
      __syncthreads();
    }
  }
  const int64_t out = static_cast<int64_t>(blockIdx.x) * k;
  for (int j = tid; j < k; j += kThreads) {
    const unsigned long long c = cand[j];
    ids[out + j] = static_cast<int32_t>(c & 0xFFFFFFFFull);
    values[out + j] = key_value(~static_cast<uint32_t>(c >> 32));
  }
  if (tid == 0 && sum_exp) sum_exp[blockIdx.x] = sum;
}

}  // namespace

void penalize_logits(float* logits, int64_t ld, const LogitPenalty* penalties, int64_t n, void* stream) {
  if (n <= 0) return;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 65535));
  launch_pdl("penalize_kernel", penalize_kernel, grid, 256, 0, stream, logits, ld, penalties, n);
}

void top_logits(const float* logits, int64_t ld, const int32_t* rows, int64_t nrows, int64_t vocab, int k,
                int32_t* ids, float* values, double* sum_exp, void* stream) {
  if (nrows <= 0) return;
  UPG_CHECK(k >= 1 && k <= kMaxTopLogits && k <= vocab && vocab <= INT32_MAX, "top_logits: k = ", k,
            " for a vocabulary of ", vocab, " (at most ", kMaxTopLogits, ")");
  UPG_CHECK(nrows <= 65535, "top_logits: ", nrows, " rows (at most 65535)");
  launch_pdl("top_logits_kernel", top_logits_kernel, static_cast<unsigned>(nrows), kThreads, 0, stream, logits, ld,
             rows, vocab, k, ids, values, sum_exp);
}

}  // namespace upg::cuda
