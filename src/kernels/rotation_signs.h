// The random signs of the rotation option (codecs/compose.h: R = FWHT_B(s * .)): column j's sign is
// the top bit of a SplitMix64 hash of (seed, j). One definition for the CPU codecs, the converter
// and the CUDA upload (kernels/cuda/gemv_upload.cu), which must agree bit for bit.
#pragma once
#include <cstdint>
#include <vector>

namespace upg {

// The sign vector s (cols values, +1/-1) for seed `seed`: the signs of columns first .. first +
// cols - 1 (first > 0: a slice of a wider matrix, as tensor parallelism makes them).
inline std::vector<float> rotation_signs(uint64_t seed, int64_t cols, int64_t first = 0) {
  std::vector<float> s(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) {
    uint64_t z = seed + static_cast<uint64_t>(first + j + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    s[static_cast<size_t>(j)] = (z >> 63) ? -1.0f : 1.0f;
  }
  return s;
}

}  // namespace upg
