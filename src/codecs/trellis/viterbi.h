// Viterbi search over the bitshift trellis of the trellis codec (trellis_codec.h): the chain of
// L-bit states s_0, s_1, ... (s_{j+1} = ((s_j << K) | any K bits) mod 2^L) that minimises
//   sum_j u[j] * (t[j] - code(s_j))^2
// exactly (dynamic programming over all 2^L states, 2^(L+K) operations per position). The encoder
// calls it with t = w / scale and u = importance * scale^2, i.e. the importance-weighted squared
// error in weight units; LDLQ (convert/ldlq_trellis.cpp) calls it block by block, each block
// continuing from the last state of the one before.
#pragma once
#include <cstdint>
#include <vector>

namespace upg::trellis {

// code(s) for every L-bit state (trellis_code.h), built once per L and kept.
const std::vector<float>& code_table(int L);

// Per-thread working memory of viterbi_search (kept between calls to avoid reallocation).
struct ViterbiScratch {
  std::vector<float> cost, next, m;
  std::vector<int32_t> arg;
  std::vector<uint8_t> back;
};

// Positions [0, n): writes the best states to states[0 .. n). prev >= 0: the state before
// position 0 is fixed (s_0 = ((prev << K) | x) mod 2^L for some K-bit x); prev < 0: s_0 is free.
// Returns the minimal cost. K in 1..5, K < L <= 16; n >= 1; t and u finite, u >= 0.
double viterbi_search(int K, int L, const float* t, const float* u, int64_t n, int64_t prev, uint32_t* states,
                      ViterbiScratch& scratch);

}  // namespace upg::trellis
