// Viterbi search of the trellis codec (viterbi.h). States are indexed by their value s; the
// predecessors of s' = q * 2^K + x (q = s' >> K) are h * 2^(L-K) + q for every K-bit h, so the
// minimum over predecessors runs over 2^K contiguous slices of the cost vector (vectorises), and the
// new cost of the 2^K states that share q is that minimum plus each state's own squared error.
#include "codecs/trellis/viterbi.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

#include "base/error.h"
#include "codecs/trellis/trellis_code.h"

namespace upg::trellis {

const std::vector<float>& code_table(int L) {
  UPG_CHECK(L >= 1 && L <= 16, "trellis: state_bits ", L, " out of range [1, 16]");
  static std::array<std::vector<float>, 17> tables;
  static std::array<std::once_flag, 17> once;
  std::call_once(once[L], [L] {
    std::vector<float>& t = tables[L];
    t.resize(size_t{1} << L);
    for (uint32_t s = 0; s < t.size(); ++s) t[s] = code(s);
  });
  return tables[L];
}

namespace {

template <int K>
double search(int L, const float* t, const float* u, int64_t n, int64_t prev, uint32_t* states, ViterbiScratch& w) {
  constexpr int64_t B = int64_t{1} << K;
  const int64_t S = int64_t{1} << L, P = S >> K;
  const float* c = code_table(L).data();
  w.cost.resize(S);
  w.next.resize(S);
  w.m.resize(P);
  w.arg.resize(P);
  w.back.resize(static_cast<size_t>(n * P));
  float* cost = w.cost.data();
  float* next = w.next.data();
  float* m = w.m.data();
  int32_t* arg = w.arg.data();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  {
    const float t0 = t[0], u0 = u[0];
    if (prev < 0) {
      for (int64_t s = 0; s < S; ++s) cost[s] = u0 * (t0 - c[s]) * (t0 - c[s]);
    } else {
      std::fill(cost, cost + S, kInf);
      const int64_t q = prev & (P - 1);
      for (int64_t x = 0; x < B; ++x) cost[q * B + x] = u0 * (t0 - c[q * B + x]) * (t0 - c[q * B + x]);
    }
  }
  double offset = 0;  // what the renormalisation took out of every cost
  for (int64_t j = 1; j < n; ++j) {
    std::memcpy(m, cost, sizeof(float) * P);
    std::fill(arg, arg + P, 0);
    for (int64_t h = 1; h < B; ++h) {
      const float* ch = cost + h * P;
      for (int64_t q = 0; q < P; ++q) {
        const bool lt = ch[q] < m[q];
        m[q] = lt ? ch[q] : m[q];
        arg[q] = lt ? static_cast<int32_t>(h) : arg[q];
      }
    }
    uint8_t* back = w.back.data() + j * P;
    float mn = kInf;
    for (int64_t q = 0; q < P; ++q) {
      back[q] = static_cast<uint8_t>(arg[q]);
      mn = std::min(mn, m[q]);
    }
    offset += mn;
    const float tj = t[j], uj = u[j];
    for (int64_t q = 0; q < P; ++q) {
      const float mq = m[q] - mn;
      const float* cq = c + q * B;
      float* nq = next + q * B;
      for (int64_t x = 0; x < B; ++x) nq[x] = mq + uj * (tj - cq[x]) * (tj - cq[x]);
    }
    std::swap(cost, next);
  }
  int64_t s = std::min_element(cost, cost + S) - cost;
  const double best = offset + cost[s];
  states[n - 1] = static_cast<uint32_t>(s);
  for (int64_t j = n - 1; j >= 1; --j) {
    const int64_t q = s >> K;
    s = static_cast<int64_t>(w.back[j * P + q]) * P + q;
    states[j - 1] = static_cast<uint32_t>(s);
  }
  return best;
}

}  // namespace

double viterbi_search(int K, int L, const float* t, const float* u, int64_t n, int64_t prev, uint32_t* states,
                      ViterbiScratch& scratch) {
  UPG_CHECK(K >= 1 && K <= 4 && L > K && L <= 16 && n >= 1, "trellis: viterbi_search(K = ", K, ", L = ", L,
            ", n = ", n, ") out of range");
  switch (K) {
    case 1: return search<1>(L, t, u, n, prev, states, scratch);
    case 2: return search<2>(L, t, u, n, prev, states, scratch);
    case 3: return search<3>(L, t, u, n, prev, states, scratch);
    default: return search<4>(L, t, u, n, prev, states, scratch);
  }
}

}  // namespace upg::trellis
