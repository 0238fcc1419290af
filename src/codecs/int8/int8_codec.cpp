// int8 encoder and reference decode; matmul and decode-to-bf16 call kernels/cpu/int8_kernels.h.
// Layout: see int8_codec.h.
#include "codecs/int8/int8_codec.h"

#include <algorithm>
#include <cmath>

#include "codecs/codec_util.h"
#include "kernels/cpu/int8_kernels.h"

namespace upg {

namespace {

const char* kName = "int8";

struct Int8Layout {
  int64_t group, ngroups;
  bool f16;
};

Int8Layout read_layout(const CodecParams& p, int64_t cols) {
  Int8Layout l;
  l.group = param_int(p, kName, "group", 128, 0, INT32_MAX);
  if (l.group == 0 || l.group > cols) l.group = cols;
  l.ngroups = (cols + l.group - 1) / l.group;
  l.f16 = param_str(p, kName, "scale_dtype", "f16", {"f16", "f32"}) == "f16";
  return l;
}

class Int8Matrix : public WeightMatrix {
 public:
  Int8Matrix(const EncodedArrays& a, int64_t rows, int64_t cols, const CodecParams& p)
      : WeightMatrix(rows, cols), l_(read_layout(p, cols)) {
    q_ = require_array(a, kName, "qweight", DType::I8, {rows, cols}).data;
    s_ = require_array(a, kName, "scales", l_.f16 ? DType::F16 : DType::F32, {rows, l_.ngroups}).data;
  }
  float scale(int64_t r, int64_t g) const {
    size_t i = static_cast<size_t>(r * l_.ngroups + g);
    return l_.f16 ? load_f16(s_, i) : load_le<float>(s_, i);
  }
  // Reference: one weight at a time.
  void decode_rows(int64_t r0, int64_t r1, float* out) const override {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols_; ++c)
        out[(r - r0) * cols_ + c] = static_cast<int8_t>(q_[r * cols_ + c]) * scale(r, c / l_.group);
  }
  // Fast paths: kernels/cpu/int8_kernels.h, tested against decode_rows in test_kernels_codecs.
  void matmul(const float* x, int64_t n, float* y) const override { kernels::int8_matmul(view(), x, n, y); }
  void decode_rows_bf16(int64_t r0, int64_t r1, uint16_t* out) const override {
    UPG_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows_, kName, ": rows [", r0, ", ", r1, ") out of range [0, ", rows_, ")");
    kernels::int8_decode_bf16(view(), r0, r1, out);
  }
  std::string codec() const override { return kName; }
  size_t stored_bytes() const override {
    return static_cast<size_t>(rows_ * cols_ + rows_ * l_.ngroups * (l_.f16 ? 2 : 4));
  }

 private:
  Int8Layout l_;
  const uint8_t *q_, *s_;

  kernels::Int8View view() const {
    kernels::Int8View v;
    v.rows = rows_;
    v.cols = cols_;
    v.group = l_.group;
    v.ngroups = l_.ngroups;
    v.q = reinterpret_cast<const int8_t*>(q_);
    v.scales = s_;
    v.f16_scales = l_.f16;
    return v;
  }
};

}  // namespace

EncodedTensor Int8Codec::encode_core(const float* W, int64_t rows, int64_t cols,
                                     const CodecParams& params, const float* importance) const {
  const Int8Layout l = read_layout(params, cols);
  EncodedTensor t;
  t.codec = kName;
  t.params = {{"group", l.group == cols ? 0 : l.group}, {"scale_dtype", l.f16 ? "f16" : "f32"}};
  Array q = make_array(DType::I8, {rows, cols});
  Array s = make_array(l.f16 ? DType::F16 : DType::F32, {rows, l.ngroups});
#pragma omp parallel for schedule(static)  // encoding (offline): OpenMP, like the converter
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < l.ngroups; ++g) {
      const int64_t c0 = g * l.group, c1 = std::min(cols, c0 + l.group);
      const float* w = W + r * cols;
      float amax = 0.0f;
      for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(w[c]));
      // Start from absmax / 127, then refine with the weighted least-squares scale for the
      // rounded codes (never above absmax / 127 * 1.0 to stay clip-free); round to storage.
      float sc = amax / 127.0f;
      if (sc > 0) {
        double num = 0, den = 0;
        for (int64_t c = c0; c < c1; ++c) {
          double h = importance ? importance[c] : 1.0;
          double qq = std::nearbyint(w[c] / sc);
          num += h * w[c] * qq;
          den += h * qq * qq;
        }
        if (den > 0 && num > 0) sc = std::min(sc, static_cast<float>(num / den));
      }
      if (l.f16) {
        uint16_t h = f32_to_f16(sc);
        store_le<uint16_t>(s.bytes.data(), r * l.ngroups + g, h);
        sc = f16_to_f32(h);
      } else {
        store_le<float>(s.bytes.data(), r * l.ngroups + g, sc);
      }
      for (int64_t c = c0; c < c1; ++c) {
        float v = sc > 0 ? std::clamp(std::nearbyint(w[c] / sc), -127.0f, 127.0f) : 0.0f;
        q.bytes[r * cols + c] = static_cast<uint8_t>(static_cast<int8_t>(v));
      }
    }
  }
  t.arrays["qweight"] = std::move(q);
  t.arrays["scales"] = std::move(s);
  return t;
}

std::unique_ptr<WeightMatrix> Int8Codec::open_core(const EncodedArrays& arrays, int64_t rows,
                                                   int64_t cols, const CodecParams& params) const {
  return std::make_unique<Int8Matrix>(arrays, rows, cols, params);
}

// A block: its rows and columns of `qweight`, the groups it covers of `scales` (columns start on
// a group, so its groups are whole but perhaps the last).
EncodedTensor Int8Codec::slice_core(const EncodedArrays& arrays, int64_t rows, int64_t cols, const CodecParams& params,
                                    const MatrixBlock& b) const {
  const Int8Layout l = read_layout(params, cols);
  EncodedTensor t;
  t.params = params;
  t.arrays["qweight"] = slice_array_2d(require_array(arrays, kName, "qweight", DType::I8, {rows, cols}), b.r0, b.r1,
                                       b.c0, b.c1);
  t.arrays["scales"] = slice_array_2d(
      require_array(arrays, kName, "scales", l.f16 ? DType::F16 : DType::F32, {rows, l.ngroups}), b.r0, b.r1,
      b.c0 / l.group, (b.c1 + l.group - 1) / l.group);
  return t;
}

int64_t Int8Codec::column_alignment_core(int64_t cols, const CodecParams& params) const {
  return read_layout(params, cols).group;
}

}  // namespace upg
