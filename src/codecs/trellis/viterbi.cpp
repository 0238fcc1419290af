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
#include "kernels/trellis_code.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define UPG_VITERBI_AVX2 1
#endif

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

// m[q] = min over h of cost[h * P + q] and back[q] = the first h reaching it; returns min_q m[q].
template <int64_t B>
float min_over_predecessors(const float* cost, int64_t P, float* m, int32_t* arg, uint8_t* back) {
  int64_t q = 0;
  float mn = std::numeric_limits<float>::infinity();
#ifdef UPG_VITERBI_AVX2
  __m256 vmn = _mm256_set1_ps(mn);
  for (; q + 8 <= P; q += 8) {
    __m256 vm = _mm256_loadu_ps(cost + q), va = _mm256_setzero_ps();
    for (int64_t h = 1; h < B; ++h) {
      const __m256 v = _mm256_loadu_ps(cost + h * P + q);
      const __m256 lt = _mm256_cmp_ps(v, vm, _CMP_LT_OQ);
      vm = _mm256_blendv_ps(vm, v, lt);
      va = _mm256_blendv_ps(va, _mm256_set1_ps(static_cast<float>(h)), lt);
    }
    _mm256_storeu_ps(m + q, vm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(arg + q), _mm256_cvttps_epi32(va));
    vmn = _mm256_min_ps(vmn, vm);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmn);
  for (float v : lanes) mn = std::min(mn, v);
#endif
  for (; q < P; ++q) {
    float best = cost[q];
    int32_t a = 0;
    for (int64_t h = 1; h < B; ++h)
      if (cost[h * P + q] < best) {
        best = cost[h * P + q];
        a = static_cast<int32_t>(h);
      }
    m[q] = best;
    arg[q] = a;
    mn = std::min(mn, best);
  }
  for (int64_t i = 0; i < P; ++i) back[i] = static_cast<uint8_t>(arg[i]);
  return mn;
}

// next[s] = (m[s >> K] - mn) + u * (t - c[s])^2 for every state s.
template <int K>
void add_errors(const float* m, float mn, const float* c, float t, float u, int64_t S, float* next) {
  int64_t s = 0;
#ifdef UPG_VITERBI_AVX2
  if (S >= 16) {
    const __m256 vt = _mm256_set1_ps(t), vu = _mm256_set1_ps(u), vmn = _mm256_set1_ps(mn);
    // Lane i of the 8 states from s takes m[(s >> K) + (i >> K)].
    const __m256i lane_q = _mm256_srli_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), K);
    for (; s + 8 <= S; s += 8) {
      // Only the 8 >> K entries from m[s >> K] are read (the last ones end exactly at m[P - 1]).
      __m256 vm;
      if constexpr (K >= 3) {
        vm = _mm256_set1_ps(m[s >> K]);
      } else if constexpr (K == 2) {
        const __m128 two = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(m + (s >> K))));
        vm = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two), lane_q);
      } else {
        vm = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(m + (s >> K))), lane_q);
      }
      const __m256 d = _mm256_sub_ps(vt, _mm256_loadu_ps(c + s));
      _mm256_storeu_ps(next + s, _mm256_fmadd_ps(_mm256_mul_ps(vu, d), d, _mm256_sub_ps(vm, vmn)));
    }
  }
#endif
  for (; s < S; ++s) next[s] = (m[s >> K] - mn) + u * (t - c[s]) * (t - c[s]);
}

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
    uint8_t* back = w.back.data() + j * P;
    const float mn = min_over_predecessors<B>(cost, P, m, arg, back);
    offset += mn;
    add_errors<K>(m, mn, c, t[j], u[j], S, next);
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
  static_assert(kMaxBits == 5, "one search<K> per K below");
  UPG_CHECK(K >= 1 && K <= kMaxBits && L > K && L <= 16 && n >= 1, "trellis: viterbi_search(K = ", K, ", L = ", L,
            ", n = ", n, ") out of range");
  switch (K) {
    case 1: return search<1>(L, t, u, n, prev, states, scratch);
    case 2: return search<2>(L, t, u, n, prev, states, scratch);
    case 3: return search<3>(L, t, u, n, prev, states, scratch);
    case 4: return search<4>(L, t, u, n, prev, states, scratch);
    default: return search<5>(L, t, u, n, prev, states, scratch);
  }
}

}  // namespace upg::trellis
