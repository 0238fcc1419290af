// The trellis codec's int16-activation path (kernels/cpu/trellis_i16.h): the activation rounding,
// the scalar reference against the exact product of the decoded weights (its error bound), the
// AVX-512 VNNI kernel against the reference bit for bit on fresh random streams of every K, L, group
// and shape, and trellis_matmul's choice of path (VNNI level, UPG_INT8_ACTIVATIONS, non-finite x).
// Batch independence of the whole product: TrellisCodec.ProductOfATokenDoesNotDependOnTheOthers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "base/cpu_features.h"
#include "base/half.h"
#include "codec_test_util.h"
#include "kernels/cpu/trellis_i16.h"
#include "kernels/cpu/trellis_kernels.h"

using namespace upg;
using namespace upg::kernels;
using namespace upg::test;

namespace {

// A random trellis matrix: any bit stream is a valid one; f16 scales of mixed signs and sizes.
struct RandomTrellis {
  std::vector<uint8_t> q, scales;
  TrellisView v;
  RandomTrellis(int k, int l, int64_t group, int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    v.k = k, v.l = l, v.rows = rows, v.cols = cols, v.group = group, v.ngroups = (cols + group - 1) / group;
    v.row_bytes = (l + (cols - 1) * k + 7) / 8;
    q.resize(static_cast<size_t>(rows * v.row_bytes));
    for (auto& b : q) b = static_cast<uint8_t>(rng());
    scales.resize(static_cast<size_t>(2 * rows * v.ngroups));
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    for (int64_t i = 0; i < rows * v.ngroups; ++i) {
      const uint16_t h = f32_to_f16(u(rng));
      std::memcpy(scales.data() + 2 * i, &h, 2);
    }
    v.q = q.data(), v.scales = scales.data();
  }
  std::vector<float> decoded() const {
    std::vector<float> w(static_cast<size_t>(v.rows * v.cols));
    for (int64_t r = 0; r < v.rows; ++r) trellis_decode_segment_scalar(v, r, 0, v.cols, w.data() + r * v.cols);
    return w;
  }
};

// Activations of mixed magnitudes: chunks scaled differently, an outlier, an all-zero chunk.
std::vector<float> activations(int64_t n, int64_t cols, uint32_t seed) {
  std::vector<float> x = gaussian_matrix(n, cols, seed, 1.0f);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < cols; ++j) {
      x[t * cols + j] *= std::pow(10.0f, static_cast<float>((j / 64 + t) % 5) - 2.0f);
      if (j / 64 == 1 && t % 3 == 2) x[t * cols + j] = 0.0f;
    }
  x[cols / 2] = 40.0f;
  return x;
}

bool have_vnni() { return cpu_simd_level() >= SimdLevel::Avx512Vnni; }

}  // namespace

TEST(TrellisI16, QuantizesEachChunkToInt16PairsInLaneOrder) {
  const int64_t n = 3, cols = 192;
  std::vector<float> x = activations(n, cols, 1);
  ActI16 a;
  EXPECT_EQ(trellis_i16_chunk(cols, 64), 64);
  EXPECT_EQ(trellis_i16_chunk(1024, 512), 512);
  EXPECT_EQ(trellis_i16_chunk(1536, 512), 512);
  EXPECT_EQ(trellis_i16_chunk(1280, 512), 256);
  EXPECT_EQ(trellis_i16_chunk(576, 192), 64);
  EXPECT_EQ(trellis_i16_chunk(1024, 48), 0);
  quantize_act_i16(x.data(), n, cols, 64, a);
  ASSERT_TRUE(a.finite);
  ASSERT_EQ(a.nch, 3);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < 3; ++c) {
      float m = 0;
      for (int j = 0; j < 64; ++j) m = std::max(m, std::fabs(x[t * cols + 64 * c + j]));
      const float d = a.d[t * 3 + c];
      EXPECT_EQ(d, m / 32767.0f);
      int32_t sum = 0;
      std::vector<int> seen(64, 0);
      for (int step = 0; step < 2; ++step)
        for (int l = 0; l < 16; ++l) {  // lane l of a step of 32: columns o, o + 1 (trellis_i16.h)
          const int32_t p = a.pair[(t * cols + 64 * c) / 2 + 16 * step + l];
          const int64_t o = 32 * step + trellis_i16_lane_column(l);
          for (int h = 0; h < 2; ++h) {
            const int16_t q = static_cast<int16_t>(h ? p >> 16 : p & 0xffff);
            const float xv = x[t * cols + 64 * c + o + h];
            ASSERT_EQ(q, m == 0 ? 0 : static_cast<int32_t>(std::lrint(xv * (32767.0f / m))));
            ASSERT_LE(std::fabs(q * d - xv), d * 0.5f + 1e-6f * m);
            sum += q;
            ++seen[static_cast<size_t>(o + h)];
          }
        }
      for (int j = 0; j < 64; ++j) ASSERT_EQ(seen[static_cast<size_t>(j)], 1) << "column " << j;
      EXPECT_EQ(a.qsum[t * 3 + c], sum);
    }
  x[100] = NAN;
  quantize_act_i16(x.data(), n, cols, 64, a);
  EXPECT_FALSE(a.finite);
}

TEST(TrellisI16, ReferenceIsTheProductUpToTheActivationRounding) {
  for (int k : {2, 3, 5}) {
    RandomTrellis m(k, 12, 128, 9, 384, 10 + k);
    const std::vector<float> W = m.decoded();
    const int64_t n = 4;
    const std::vector<float> x = activations(n, m.v.cols, 20 + k);
    ActI16 a;
    quantize_act_i16(x.data(), n, m.v.cols, trellis_i16_chunk(m.v.cols, m.v.group), a);
    std::vector<float> y(n * m.v.rows);
    trellis_matmul_i16_reference(m.v, a, y.data());
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < m.v.rows; ++r) {
        double exact = 0, bound = 0, mag = 0;
        for (int64_t j = 0; j < m.v.cols; ++j) {
          const double w = W[r * m.v.cols + j];
          exact += w * x[t * m.v.cols + j];
          mag += std::fabs(w * x[t * m.v.cols + j]);
          bound += std::fabs(w) * a.d[t * a.nch + j / a.chunk] * 0.5;
        }
        ASSERT_NEAR(y[t * m.v.rows + r], exact, bound + 1e-5 * mag) << "K=" << k << " t=" << t << " row " << r;
      }
  }
}

// Both kernels (AVX-512 VNNI where the CPU has it, and AVX2, forced by capping the SIMD level) against
// the reference, bit for bit.
static void kernels_equal_reference(SimdLevel cap) {
  struct Uncap {
    ~Uncap() { set_simd_cap(std::nullopt); }
  } uncap;
  set_simd_cap(cap);
  uint32_t seed = 100;
  for (int k = 1; k <= 5; ++k)
    for (int l : {k + 1, 8, 12, 16})
      for (auto [group, rows, cols] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
               {64, 5, 64}, {64, 9, 192}, {128, 4, 1088}, {512, 3, 1536}, {512, 7, 512}, {192, 2, 576}, {512, 5, 1280}, {256, 3, 2560}}) {
        RandomTrellis m(k, l, group, rows, cols, ++seed);
        for (int64_t n : {1, 2, 3, 5, 9}) {
          const std::vector<float> x = activations(n, cols, seed + 7 * static_cast<uint32_t>(n));
          ActI16 a;
          quantize_act_i16(x.data(), n, cols, trellis_i16_chunk(cols, group), a);
          std::vector<float> ref(n * rows), fast(n * rows, NAN);
          trellis_matmul_i16_reference(m.v, a, ref.data());
          trellis_matmul_i16(m.v, a, fast.data());
          for (int64_t i = 0; i < n * rows; ++i)
            ASSERT_EQ(std::memcmp(&fast[i], &ref[i], 4), 0)
                << "K=" << k << " L=" << l << " G=" << group << " " << rows << "x" << cols << " n=" << n << " entry " << i
                << ": " << fast[i] << " vs " << ref[i] << " (" << simd_level_name(simd_level()) << ")";
        }
      }
}

TEST(TrellisI16, VnniKernelEqualsReferenceBitForBit) {
  if (!have_vnni()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI: the VNNI kernel is not run here (the AVX2 one is)";
  kernels_equal_reference(SimdLevel::Avx512Vnni);
}

TEST(TrellisI16, Avx2KernelEqualsReferenceBitForBit) { kernels_equal_reference(SimdLevel::Avx2); }

TEST(TrellisI16, MatmulTakesThePathItSays) {
  RandomTrellis m(3, 12, 512, 6, 1024, 7);
  const int64_t n = 3;
  std::vector<float> x = activations(n, m.v.cols, 8);
  ActI16 a;
  quantize_act_i16(x.data(), n, m.v.cols, trellis_i16_chunk(m.v.cols, m.v.group), a);
  std::vector<float> ref(n * 6), y(n * 6), fp32(n * 6);
  trellis_matmul_i16_reference(m.v, a, ref.data());
  set_int8_activations(false);
  EXPECT_FALSE(trellis_i16_active(m.v));
  trellis_matmul(m.v, x.data(), n, fp32.data());
  set_int8_activations(true);
  trellis_matmul(m.v, x.data(), n, y.data());
  // On (the default): the int16 path on every CPU, whichever kernel its SIMD level picks.
  EXPECT_TRUE(trellis_i16_active(m.v));
  EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * 4), 0);
  set_simd_cap(SimdLevel::Avx2);
  EXPECT_TRUE(trellis_i16_active(m.v));
  std::fill(y.begin(), y.end(), NAN);
  trellis_matmul(m.v, x.data(), n, y.data());
  EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * 4), 0);
  set_simd_cap(std::nullopt);
  EXPECT_NE(std::memcmp(fp32.data(), ref.data(), fp32.size() * 4), 0);  // the fp32 path rounds differently
  // Layouts the path does not take: a group or width not a multiple of 64.
  RandomTrellis odd(3, 12, 48, 2, 960, 9);
  EXPECT_FALSE(trellis_i16_supported(odd.v));
  RandomTrellis narrow(3, 12, 64, 2, 200, 9);
  EXPECT_FALSE(trellis_i16_supported(narrow.v));
  // A non-finite activation: the fp32 path (NaN in that token's outputs, the others' as fp32 gives them).
  x[5] = NAN;
  trellis_matmul(m.v, x.data(), n, y.data());
  set_int8_activations(false);
  trellis_matmul(m.v, x.data(), n, fp32.data());
  set_int8_activations(true);
  for (size_t i = 0; i < y.size(); ++i) {
    if (std::isnan(fp32[i])) EXPECT_TRUE(std::isnan(y[i])) << i;
    else EXPECT_EQ(y[i], fp32[i]) << i;
  }
}
