// Tables, activation quantization, scalar reference and thread dispatch of the AMX codebook path.
// Integers and accuracy: codebook_i8.h; the tile kernel: codebook_i8_amx.h.
#include "kernels/cpu/codebook_i8.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "base/cpu_features.h"
#include "base/half.h"
#include "base/thread_pool.h"
#include "kernels/cpu/codebook_i8_amx.h"
#include "kernels/cpu/codebook_i8_avx512vnni.h"
#include "kernels/cpu/codebook_q8.h"

namespace upg::kernels {

namespace {

constexpr int64_t kChunk = 64;

}  // namespace

bool codebook_i8_supported(const CodebookView& v) {
  return v.k >= 2 && v.k <= 6 && codebook_packed_in_chunks(v, kChunk);
}

bool codebook_i8_has_kernel(int k) {
  return simd_level() >= SimdLevel::Avx512Vnni && (k <= 4 || cpu_features().avx512vbmi);
}

CodebookI8Tables codebook_i8_tables(const CodebookView& v) {
  CodebookI8Tables T;
  T.k = v.k;
  T.nblocks = (v.rows + v.cb_rows - 1) / v.cb_rows;
  const int nl = 1 << v.k, stride = T.stride();
  T.v.assign(static_cast<size_t>(stride * T.nblocks), 0);
  T.alpha.assign(static_cast<size_t>(T.nblocks), 0.0f);
  for (int64_t B = 0; B < T.nblocks; ++B) {
    const float* L = v.levels + B * nl;
    float mx = 0.0f;
    for (int c = 0; c < nl; ++c) mx = std::max(mx, std::fabs(L[c]));
    const float alpha = mx / 127.0f;
    T.alpha[static_cast<size_t>(B)] = alpha;
    for (int c = 0; c < stride; ++c) {
      const float f = alpha > 0.0f ? L[c % nl] / alpha : 0.0f;
      const int8_t q = static_cast<int8_t>(std::clamp(std::lround(f), -127L, 127L));
      T.v[static_cast<size_t>(stride * B + c)] = q;
      if (c < nl && mx > 0.0f) T.max_level_err = std::max(T.max_level_err, std::fabs(alpha * q - L[c]) / mx);
    }
  }
  return T;
}

namespace {

// Whether all of x[0 .. m) are finite (x - x is 0 for finite x, NaN for NaN and Inf).
bool all_finite(const float* x, int64_t m) {
#ifdef __AVX2__
  int64_t j = 0;
  __m256 bad = _mm256_setzero_ps();
  for (; j + 8 <= m; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_NEQ_UQ));
  }
  bool ok = _mm256_movemask_ps(bad) == 0;
  for (; j < m; ++j) ok &= std::isfinite(x[j]);
  return ok;
#else
  bool ok = true;
  for (int64_t j = 0; j < m; ++j) ok &= std::isfinite(x[j]);
  return ok;
#endif
}

// One chunk of 64 finite values: q (natural order, |q| <= 127) and the chunk scale d = max|x| / 127;
// zero = true (a token holding NaN or Inf) quantizes the chunk as zeros (d = 0). q = nearest-even of x * (127 / max|x|).
float quantize_chunk(const float* x, bool zero, int8_t* q) {
  if (zero) {  // (NaN * 0 would convert to -128)
    std::memset(q, 0, kChunk);
    return 0.0f;
  }
#ifdef __AVX2__
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 v[8], mx = _mm256_setzero_ps();
  for (int i = 0; i < 8; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    mx = _mm256_max_ps(mx, _mm256_and_ps(v[i], absmask));
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float amax = _mm_cvtss_f32(m4);
  const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  __m256i qi[8];  // |x * inv| <= 127 (+ rounding): the saturating packs below never clip
  for (int i = 0; i < 8; ++i) qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int h = 0; h < 2; ++h) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[4 * h], qi[4 * h + 1]),
                                         _mm256_packs_epi32(qi[4 * h + 2], qi[4 * h + 3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32 * h), _mm256_permutevar8x32_epi32(p, order));
  }
  return amax / 127.0f;
#else
  float amax = 0.0f;
  for (int j = 0; j < kChunk; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  for (int j = 0; j < kChunk; ++j) q[j] = static_cast<int8_t>(std::clamp(std::nearbyint(x[j] * inv), -127.0f, 127.0f));
  return amax / 127.0f;
#endif
}

}  // namespace

void quantize_act_i8(const float* x, int64_t n, int64_t cols, int k, ActI8& out) {
  const int64_t nch = cols / kChunk, ntt = (n + 15) / 16;
  out.n = n;
  out.cols = cols;
  out.nch = nch;
  out.ntt = ntt;
  out.k = k;
  out.q.resize(static_cast<size_t>(n * cols));
  out.d.assign(static_cast<size_t>(nch * ntt * 16), 0.0f);
  out.tiles.resize(static_cast<size_t>(nch * ntt * 1024));
  out.qp.resize(static_cast<size_t>(n * cols));
  out.qsum.assign(static_cast<size_t>(nch * ntt * 16), 0);
  // Source column of each of a chunk's 64 tile positions (blocks of 32 in the order pi_k; natural for k >= 5).
  uint8_t colmap[kChunk];
  const uint8_t* pi = k <= 4 ? codebook_q8_pi(k) : nullptr;
  for (int p = 0; p < kChunk; ++p) colmap[p] = static_cast<uint8_t>(32 * (p / 32) + (pi ? pi[p % 32] : p % 32));
  std::vector<char> bad(static_cast<size_t>(n), 0);
  parallel_for(ntt, [&](int64_t tt0, int64_t tt1) {
    alignas(64) int8_t perm[16][kChunk];  // the tile's tokens, one chunk, in tile order
    for (int64_t tt = tt0; tt < tt1; ++tt) {
      const int64_t t_begin = 16 * tt, t_end = std::min(n, t_begin + 16);
      for (int64_t t = t_begin; t < t_end; ++t) bad[static_cast<size_t>(t)] = !all_finite(x + t * cols, cols);
      for (int64_t c = 0; c < nch; ++c) {
        for (int64_t t = t_begin; t < 16 * tt + 16; ++t) {
          int8_t* pt = perm[t - t_begin];
          if (t >= t_end) {
            std::memset(pt, 0, kChunk);
            continue;
          }
          int8_t* qc = out.q.data() + t * cols + c * kChunk;
          out.d[static_cast<size_t>(c * ntt * 16 + t)] = quantize_chunk(x + t * cols + c * kChunk, bad[static_cast<size_t>(t)], qc);
          int32_t sum = 0;
          for (int p = 0; p < kChunk; ++p) pt[p] = qc[colmap[p]], sum += qc[p];
          out.qsum[static_cast<size_t>(c * ntt * 16 + t)] = sum;
          std::memcpy(out.qp.data() + t * cols + c * kChunk, pt, kChunk);
        }
        // B tile: the 4-byte group kk of token t at 64 kk + 4 t (a 16 x 16 transpose of 4-byte words).
        int8_t* tile = out.tiles.data() + (c * ntt + tt) * 1024;
        for (int kk = 0; kk < 16; ++kk)
          for (int t = 0; t < 16; ++t) std::memcpy(tile + 64 * kk + 4 * t, perm[t] + 4 * kk, 4);
      }
    }
  });
  out.finite = std::find(bad.begin(), bad.end(), 1) == bad.end();
}

void codebook_matmul_i8_reference(const CodebookView& v, const CodebookI8Tables& T, const ActI8& x, float* y) {
  const int64_t per = v.group / kChunk;
  for (int64_t r = 0; r < v.rows; ++r) {
    const int64_t tb = r / v.cb_rows;
    const int8_t* lv = T.v.data() + T.stride() * tb;
    for (int64_t t = 0; t < x.n; ++t) {
      float acc = 0.0f;
      for (int64_t c = 0; c < x.nch; ++c) {
        int32_t C = 0;
        const int8_t* q = x.q.data() + t * x.cols + c * kChunk;
        for (int j = 0; j < kChunk; ++j) C += lv[codebook_code_at(v, r, c * kChunk + j)] * q[j];
        const float sd = codebook_scale_at(v, r, c / per) * x.d[static_cast<size_t>(c * x.ntt * 16 + t)];
        acc = std::fmaf(static_cast<float>(C), sd, acc);
      }
      y[t * v.rows + r] = T.alpha[static_cast<size_t>(tb)] * acc;
    }
  }
}

namespace {

// UPG_CPU_I8_TILE_TOKENS overrides kI8VnniTileTokens (measurements).
int64_t default_vnni_tile_tokens() {
  static const int64_t v = [] {
    const char* e = std::getenv("UPG_CPU_I8_TILE_TOKENS");
    return e ? std::max<int64_t>(1, std::atol(e)) : kI8VnniTileTokens;
  }();
  return v;
}

// 64-byte aligned view of a per-thread buffer of at least `bytes`.
uint8_t* thread_scratch(size_t bytes) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < bytes + 64) buf.resize(bytes + 64);
  return buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
}

}  // namespace

void codebook_matmul_i8(const CodebookView& v, const CodebookI8Tables& T, const ActI8& x, float* y,
                        int64_t tile_tokens) {
  if (x.n <= 0 || v.rows <= 0) return;
  if (!codebook_i8_has_kernel(v.k)) return codebook_matmul_i8_reference(v, T, x, y);
  // The pool's templates and the per-thread buffers stay here, out of the AVX-512-compiled files.
  const Q8K3Unpack k3 = codebook_q8_k3_unpack();
  if (tile_tokens <= 0) tile_tokens = default_vnni_tile_tokens();
  // The AMX kernel unpacks k <= 4 only, and for a few tokens (decode) it ran slower than VNNI.
  if (simd_level() < SimdLevel::Amx || v.k >= 5 || x.n < tile_tokens) {
    const ActI8Pointers p{x.tiles.data(), x.qp.data(), x.d.data(), x.qsum.data(), x.n, x.ntt};
    const size_t scratch = codebook_i8_vnni_scratch_bytes(v.cols, v.ngroups);
    parallel_for((v.rows + 15) / 16, [&](int64_t u0, int64_t u1) {
      uint8_t* s = thread_scratch(scratch);
      if (v.k >= 5) codebook_i8_vbmi_units(v, T.v.data(), T.alpha.data(), p, tile_tokens, y, s, u0, u1);
      else codebook_i8_vnni_units(v, k3, T.v.data(), T.alpha.data(), p, tile_tokens, y, s, u0, u1);
    });
    return;
  }
  const size_t scratch = codebook_i8_amx_scratch_bytes(v.cols);
  parallel_for((v.rows + 31) / 32, [&](int64_t b0, int64_t b1) {
    codebook_i8_amx_tiles(v, k3, T.v.data(), T.alpha.data(), x.tiles.data(), x.d.data(), x.n, x.ntt, y,
                          thread_scratch(scratch), b0, b1);
  });
}

}  // namespace upg::kernels
