// Test helper: a fixed schedule of Engine steps over several sequences, and the comparison of two
// engines' logits on it (test_tensor_parallel, test_cuda_engine's tensor-parallel cases).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "logit_compare.h"
#include "runtime/engine.h"

namespace upg::test {

// Two prefills, a prefill continuing beside decode tokens and a sequence starting mid-way, decode
// steps, one sequence released mid-way. Tokens are random (the same for every engine), so the
// schedule does not depend on the logits. Returns each step's logits. E: Engine or
// TensorParallelEngine.
template <class E>
std::vector<std::vector<float>> run_schedule(E& e, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
  std::vector<std::vector<float>> out;
  std::map<SeqId, int64_t> len;
  auto add = [&](std::vector<BatchEntry>& b, SeqId s, int count, bool all_logits) {
    for (int i = 0; i < count; ++i) b.push_back({s, tok(rng), len[s]++, all_logits || i == count - 1});
  };
  const SeqId a = e.new_sequence(), b = e.new_sequence();
  std::vector<BatchEntry> step;
  add(step, a, 9, false);
  add(step, b, 4, true);
  e.step(step, out.emplace_back());
  const SeqId c = e.new_sequence();
  step.clear();
  add(step, a, 1, false);
  add(step, b, 3, false);
  add(step, c, 6, false);
  e.step(step, out.emplace_back());
  for (int s = 0; s < 4; ++s) {
    step.clear();
    add(step, a, 1, false);
    if (s < 2) add(step, b, 1, false);
    add(step, c, 1, false);
    e.step(step, out.emplace_back());
    if (s == 1) e.release(b);
  }
  e.release(a);
  e.release(c);
  return out;
}

// Every step's logits within `tol` of the step's largest reference logit, and the same greedy token
// wherever the reference's top two are not a near tie (closer than 1e-3 of the top, or than twice
// the row's largest difference).
inline void expect_same_schedule_logits(const std::vector<std::vector<float>>& got,
                                        const std::vector<std::vector<float>>& ref, int64_t V, double tol) {
  ASSERT_EQ(ref.size(), got.size());
  for (size_t s = 0; s < ref.size(); ++s) {
    ASSERT_EQ(ref[s].size(), got[s].size()) << "step " << s;
    EXPECT_LE(rel_max_error(got[s].data(), ref[s].data(), static_cast<int64_t>(ref[s].size())), tol) << "step " << s;
    for (size_t r = 0; r * V < ref[s].size(); ++r) {
      const float* x = ref[s].data() + r * V;
      const float* y = got[s].data() + r * V;
      std::vector<float> sorted(x, x + V);
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      double diff = 0;
      for (int64_t j = 0; j < V; ++j) diff = std::max(diff, static_cast<double>(std::fabs(x[j] - y[j])));
      if (sorted[0] - sorted[1] > std::max(1e-3 * std::fabs(sorted[0]), 2 * diff)) {
        EXPECT_EQ(argmax(y, V), argmax(x, V)) << "step " << s << " row " << r;
      }
    }
  }
}

}  // namespace upg::test
