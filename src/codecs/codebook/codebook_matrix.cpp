// codebook matrix: validation, reference decode (bit by bit) and the fast matmul, which unpacks
// 8 codes at a time from k bytes into a one-group tile of floats and takes its dot products with
// every input row. Layout: see codebook_codec.h.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "codecs/codebook/codebook_codec.h"
#include "codecs/codec_util.h"

namespace upg {

namespace {

const char* kName = "codebook";

class CodebookMatrix : public WeightMatrix {
 public:
  CodebookMatrix(const EncodedArrays& a, int64_t rows, int64_t cols, const CodecParams& p)
      : WeightMatrix(rows, cols), l_(read_codebook_layout(p, rows, cols)) {
    nl_ = 1 << l_.k;
    cb_ = l_.cb_rows == 0 ? rows : l_.cb_rows;
    q_ = require_array(a, kName, "qweight", DType::U8, {rows, l_.row_bytes}).data;
    s_ = require_array(a, kName, "scales", DType::F16, {rows, l_.ngroups}).data;
    const ArrayView& cbv = require_array(a, kName, "codebook", DType::F32, {l_.nblocks, nl_});
    // Copied (a few floats) so the hot loop reads aligned memory.
    levels_.resize(l_.nblocks * nl_);
    for (size_t i = 0; i < levels_.size(); ++i) {
      levels_[i] = load_le<float>(cbv.data, i);
      UPG_CHECK(std::isfinite(levels_[i]), kName, ": array 'codebook' entry ", i, " is not finite");
    }
  }

  // Reference: extracts each code bit by bit.
  void decode_rows(int64_t r0, int64_t r1, float* out) const override {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* row = q_ + r * l_.row_bytes;
      const float* L = levels_.data() + (r / cb_) * nl_;
      for (int64_t j = 0; j < cols_; ++j) {
        uint32_t c = 0;
        for (int t = 0; t < l_.k; ++t) {
          const int64_t bit = j * l_.k + t;
          c |= static_cast<uint32_t>((row[bit >> 3] >> (bit & 7)) & 1u) << t;
        }
        out[(r - r0) * cols_ + j] = load_f16(s_, r * l_.ngroups + j / l_.group) * L[c];
      }
    }
  }

  void matmul(const float* x, int64_t n, float* y) const override {
    const int k = l_.k;
    const uint64_t mask = (1ull << k) - 1;
#pragma omp parallel
    {
      std::vector<float> tile(l_.group), acc(n);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows_; ++r) {
        const uint8_t* row = q_ + r * l_.row_bytes;
        const float* L = levels_.data() + (r / cb_) * nl_;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t g = 0; g < l_.ngroups; ++g) {
          const int64_t c0 = g * l_.group, m = std::min(cols_, c0 + l_.group) - c0;
          // Codes c0 .. c0+m-1: c0 is a multiple of 8, so chunk j of 8 codes starts at byte
          // (c0 + 8j) * k / 8; the last chunk of a row may have fewer than k bytes.
          for (int64_t j = 0; j < m; j += 8) {
            const int64_t byte = (c0 + j) / 8 * k;
            uint64_t bits = 0;
            std::memcpy(&bits, row + byte, static_cast<size_t>(std::min<int64_t>(k, l_.row_bytes - byte)));
            const int64_t e = std::min<int64_t>(8, m - j);
            for (int64_t i = 0; i < e; ++i) tile[j + i] = L[(bits >> (i * k)) & mask];
          }
          const float s = load_f16(s_, r * l_.ngroups + g);
          for (int64_t t = 0; t < n; ++t) {
            const float* xt = x + t * cols_ + c0;
            float d = 0.0f;
            for (int64_t i = 0; i < m; ++i) d += tile[i] * xt[i];
            acc[t] += d * s;
          }
        }
        for (int64_t t = 0; t < n; ++t) y[t * rows_ + r] = acc[t];
      }
    }
  }

  std::string codec() const override { return kName; }
  size_t stored_bytes() const override {
    return static_cast<size_t>(rows_ * l_.row_bytes + rows_ * l_.ngroups * 2 + levels_.size() * 4);
  }

 private:
  CodebookLayout l_;
  int nl_;
  int64_t cb_;
  const uint8_t *q_, *s_;
  std::vector<float> levels_;
};

}  // namespace

std::unique_ptr<WeightMatrix> CodebookCodec::open_core(const EncodedArrays& arrays, int64_t rows,
                                                       int64_t cols, const CodecParams& params) const {
  return std::make_unique<CodebookMatrix>(arrays, rows, cols, params);
}

}  // namespace upg
