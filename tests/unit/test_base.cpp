#include <cmath>
#include <random>

#include "base/cpu_features.h"
#include "base/error.h"
#include "base/half.h"
#include "base/mapped_file.h"
#include "test_util.h"

using namespace upg;

TEST(Half, Bf16RoundTripIsExactForRepresentableValues) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_bf16(f), h);
  }
}

TEST(Half, F16RoundTripIsExactForRepresentableValues) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), h) << "h=" << h;
  }
}

TEST(Half, NarrowingRoundsToNearest) {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> d(-100.f, 100.f);
  for (int i = 0; i < 100000; ++i) {
    float f = d(rng);
    float b = bf16_to_f32(f32_to_bf16(f));
    EXPECT_LE(std::fabs(b - f), std::fabs(f) * (1.0f / 256.0f));
    float h = f16_to_f32(f32_to_f16(f));
    EXPECT_LE(std::fabs(h - f), std::fabs(f) * (1.0f / 2048.0f) + 1e-7f);
  }
}

TEST(MappedFile, MissingFileNamesThePath) {
  try {
    MappedFile f("/nonexistent/dir/model.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/model.safetensors"), std::string::npos);
  }
}

TEST(MappedFile, DirectoryIsRejected) {
  EXPECT_THROW(MappedFile f("/tmp"), Error);
}

// SIMD levels: names round-trip, an unknown name is refused with the list, a cap never raises the
// level above the CPU's, and each level implies the features of the ones below it.
TEST(CpuFeatures, SimdLevelsNamesCapsAndOrder) {
  using upg::SimdLevel;
  for (SimdLevel l : {SimdLevel::Avx2, SimdLevel::Avx512, SimdLevel::Avx512Vnni, SimdLevel::Amx})
    EXPECT_EQ(upg::parse_simd_level(upg::simd_level_name(l)), l);
  try {
    upg::parse_simd_level("sse2");
    FAIL() << "no error for an unknown level";
  } catch (const upg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("avx2, avx512, avx512vnni, amx"), std::string::npos) << e.what();
  }
  const SimdLevel hw = upg::cpu_simd_level();
  const upg::CpuFeatures& f = upg::cpu_features();
  if (hw >= SimdLevel::Avx512) EXPECT_TRUE(f.avx512f && f.avx512bw && f.avx512vl);
  if (hw >= SimdLevel::Avx512Vnni) EXPECT_TRUE(f.avx512vnni);
  EXPECT_EQ(hw >= SimdLevel::Amx, f.amx_int8 && f.avx512vnni && f.avx512f && f.avx512bw && f.avx512vl);
  for (SimdLevel cap : {SimdLevel::Avx2, SimdLevel::Avx512, SimdLevel::Avx512Vnni, SimdLevel::Amx}) {
    upg::set_simd_cap(cap);
    EXPECT_EQ(upg::simd_level(), cap < hw ? cap : hw);
  }
  upg::set_simd_cap(std::nullopt);
  std::printf("this CPU: %s\n", upg::simd_level_name(hw));
}
