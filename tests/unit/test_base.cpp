#include <cmath>
#include <random>

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
