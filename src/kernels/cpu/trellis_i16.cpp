// Trellis products with int16 activations: quantization, the scalar reference, the dispatch.
// Arithmetic and kernel: trellis_i16.h.
#include "kernels/cpu/trellis_i16.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/cpu_features.h"
#include "base/error.h"
#include "base/half.h"
#include "base/thread_pool.h"
#include "kernels/cpu/trellis_i16_avx2.h"
#include "kernels/cpu/trellis_i16_avx512vnni.h"
#include "kernels/trellis_code.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace upg::kernels {

namespace {

// One chunk of Q activations: its scale, q as int16 pairs in the lane order of trellis_i16.h
// (Q / 2 int32), the sum of q.
void quantize_chunk(const float* x, int64_t Q, int32_t* pair, float& d, int32_t& qsum, bool& finite) {
  float m = 0.0f;
  for (int64_t i = 0; i < Q; ++i) {
    if (!std::isfinite(x[i])) finite = false;
    m = std::max(m, std::fabs(x[i]));
  }
  if (!finite || m == 0.0f) {
    d = 0.0f, qsum = 0;
    std::memset(pair, 0, static_cast<size_t>(Q / 2) * sizeof(int32_t));
    return;
  }
  d = m / 32767.0f;
  const float inv = 32767.0f / m;
  int32_t q[512];  // Q <= 512
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256 vinv = _mm256_set1_ps(inv), lim = _mm256_set1_ps(32767.0f);
  for (; i < Q; i += 8) {  // round to nearest even, as std::lrint below
    const __m256 p = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv), _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_cvtps_epi32(p));
  }
#endif
  for (; i < Q; ++i) q[i] = static_cast<int32_t>(std::lrint(std::clamp(x[i] * inv, -32767.0f, 32767.0f)));
  int32_t s = 0;
  for (int64_t j = 0; j < Q; ++j) s += q[j];
  for (int64_t j = 0; j < Q; j += 32)
    for (int l = 0; l < 16; ++l) {
      const int64_t o = j + trellis_i16_lane_column(l);
      pair[j / 2 + l] = static_cast<int32_t>((static_cast<uint32_t>(q[o]) & 0xffffu) | (static_cast<uint32_t>(q[o + 1]) << 16));
    }
  qsum = s;
}

}  // namespace

int64_t trellis_i16_chunk(int64_t cols, int64_t group) {
  for (int64_t q : {512, 256, 128, 64})
    if (cols % q == 0 && group % q == 0) return q;
  return 0;
}

void quantize_act_i16(const float* x, int64_t n, int64_t cols, int64_t chunk, ActI16& out) {
  UPG_CHECK((chunk == 64 || chunk == 128 || chunk == 256 || chunk == 512) && cols % chunk == 0,
            "quantize_act_i16: chunk ", chunk, " does not divide cols ", cols);
  out.n = n, out.cols = cols, out.chunk = chunk, out.nch = cols / chunk;
  out.pair.resize(static_cast<size_t>(n * cols / 2));
  out.d.resize(static_cast<size_t>(n * out.nch));
  out.qsum.resize(static_cast<size_t>(n * out.nch));
  std::vector<char> fin(static_cast<size_t>(n), 1);
  auto body = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      bool finite = true;
      for (int64_t c = 0; c < out.nch; ++c)
        quantize_chunk(x + t * cols + chunk * c, chunk, out.pair.data() + (t * cols + chunk * c) / 2, out.d[t * out.nch + c],
                       out.qsum[t * out.nch + c], finite);
      fin[t] = finite;
    }
  };
  if (n * cols >= (int64_t{1} << 16)) parallel_for(n, body);
  else body(0, n);
  out.finite = std::all_of(fin.begin(), fin.end(), [](char f) { return f != 0; });
}

bool trellis_i16_supported(const TrellisView& v) { return v.cols > 0 && trellis_i16_chunk(v.cols, v.group) > 0; }

bool trellis_i16_active(const TrellisView& v) { return trellis_i16_supported(v) && int8_activations(); }

void trellis_matmul_i16_reference(const TrellisView& v, const ActI16& x, float* y) {
  UPG_CHECK(trellis_i16_supported(v) && x.cols == v.cols && x.chunk == trellis_i16_chunk(v.cols, v.group),
            "trellis_matmul_i16_reference: unsupported layout");
  std::vector<int32_t> P(static_cast<size_t>(v.cols));
  for (int64_t r = 0; r < v.rows; ++r) {
    const uint8_t* row = v.q + r * v.row_bytes;
    for (int64_t j = 0; j < v.cols; ++j)  // the byte sum of the state's hash: the code's integer + 510
      P[j] = trellis::code_int(trellis_state_at(row, v.row_bytes, j * v.k, v.l)) + 510;
    for (int64_t t = 0; t < x.n; ++t) {
      float F[16] = {}, K = 0.0f;
      for (int64_t c = 0; c < x.nch; ++c) {
        int32_t C[16] = {};
        for (int64_t i = 0; i < x.chunk / 32; ++i)
          for (int l = 0; l < 16; ++l) {
            const int64_t j = x.chunk * c + 32 * i, o = j + trellis_i16_lane_column(l);
            const int32_t p = x.pair[(t * x.cols + j) / 2 + l];
            C[l] += P[o] * static_cast<int16_t>(p & 0xffff) + P[o + 1] * static_cast<int16_t>(p >> 16);
          }
        uint16_t h;
        std::memcpy(&h, v.scales + 2 * (r * v.ngroups + x.chunk * c / v.group), 2);
        const float m = f16_to_f32(h) * x.d[t * x.nch + c];
        for (int l = 0; l < 16; ++l) F[l] = std::fma(static_cast<float>(C[l]), m, F[l]);
        K = std::fma(static_cast<float>(x.qsum[t * x.nch + c]), m, K);
      }
      for (int l = 0; l < 8; ++l) F[l] += F[l + 8];
      for (int l = 0; l < 4; ++l) F[l] += F[l + 4];
      F[0] += F[2], F[1] += F[3];
      y[t * v.rows + r] = std::fma(-510.0f, K, F[0] + F[1]) * trellis::kCodeUnit;
    }
  }
}

void trellis_matmul_i16(const TrellisView& v, const ActI16& x, float* y) {
  UPG_CHECK(trellis_i16_supported(v) && x.cols == v.cols && x.chunk == trellis_i16_chunk(v.cols, v.group),
            "trellis_matmul_i16: unsupported layout");
  const bool vnni = simd_level() >= SimdLevel::Avx512Vnni;  // else the AVX2 kernel (the same bits)
  constexpr int64_t R = kTrellisI16Rows;
  const TrellisI16Act a{x.pair.data(), x.d.data(), x.qsum.data(), x.n, x.nch, x.chunk};
  parallel_for_dynamic((v.rows + R - 1) / R, 2, [&](int64_t g0, int64_t g1) {
    thread_local std::vector<int32_t> buf;
    thread_local std::vector<float> sc;
    buf.resize(static_cast<size_t>(trellis_i16_scratch(x.n)));
    sc.resize(static_cast<size_t>(R * v.ngroups));
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t r = g * R;
      const int nr = static_cast<int>(std::min(R, v.rows - r));
      for (int64_t i = 0; i < nr * v.ngroups; ++i) {
        uint16_t h;
        std::memcpy(&h, v.scales + 2 * (r * v.ngroups + i), 2);
        sc[static_cast<size_t>(i)] = f16_to_f32(h);
      }
      if (vnni) trellis_i16_vnni_rows(v, a, sc.data(), y, r, nr, buf.data());
      else trellis_i16_avx2_rows(v, a, sc.data(), y, r, nr, buf.data());
    }
  });
}

}  // namespace upg::kernels
