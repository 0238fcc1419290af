// What sampling asks of the backend that holds a step's logits, so that only a few candidates (not
// the vocabulary's worth of logits) come to the host each decode step: the penalties applied in
// place, then each row's largest logits with the row's softmax normaliser. The maths, shared by the
// plain reference (kernels/cpu/logit_select.cpp) and the CUDA kernels (kernels/cuda/logit_select.cu);
// runtime/sampler.h decides from these candidates.
#pragma once
#include <cstdint>
#include <vector>

#if defined(__CUDACC__)
#define UPG_HOST_DEVICE __host__ __device__
#else
#define UPG_HOST_DEVICE
#endif

namespace upg {

// One penalised logit: row `row`'s entry `token` becomes penalized(logit, *this). A list holds a
// (row, token) pair at most once.
struct LogitPenalty {
  int32_t row;
  int32_t token;
  float subtract;  // OpenAI's presence + frequency * count (0: none)
  float divide;    // the repetition penalty (1: none)
};

// logit - subtract, then divided by `divide` when positive and multiplied by it otherwise (the
// order and float operations of Sampler::sample).
UPG_HOST_DEVICE inline float penalized(float logit, const LogitPenalty& p) {
  float l = logit - p.subtract;
  if (p.divide != 1.0f) l = l > 0 ? l / p.divide : l * p.divide;
  return l;
}

// The most candidates one row may ask for.
constexpr int kMaxTopLogits = 1024;

namespace kernels {

// idx (resized to n) = the ids 0 .. n-1, its first k those of x's k largest values, largest first
// and the lowest id first among equal values (as torch.topk's order on ties); k <= n.
void largest_first(const float* x, int64_t n, int64_t k, std::vector<int32_t>& idx);

// logits[p.row * ld + p.token] = penalized(that, p) for each of the n penalties.
void penalize_logits(float* logits, int64_t ld, const LogitPenalty* penalties, int64_t n);

// For i < nrows and r = rows[i], from row r of logits (vocab values at logits + r * ld): ids and
// values (i * k ...) = its k largest values, largest first and the lowest id first among equal
// values; sum_exp[i] = the sum over the whole row of exp(v - its largest), accumulated in double
// (sum_exp may be null: not computed; greedy sampling and top-k need no sum). 1 <= k <= min(vocab, kMaxTopLogits).
void top_logits(const float* logits, int64_t ld, const int32_t* rows, int64_t nrows, int64_t vocab, int k,
                int32_t* ids, float* values, double* sum_exp);

}  // namespace kernels
}  // namespace upg
