// codebook matrix: validation, reference decode (bit by bit); matmul and decode-to-bf16 call the
// CPU kernels of kernels/cpu/codebook_kernels.h. Layout: see codebook_codec.h.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "codecs/codebook/codebook_codec.h"
#include "codecs/codec_util.h"
#include "base/cpu_features.h"
#include "kernels/cpu/codebook_i8.h"
#include "kernels/cpu/codebook_kernels.h"
#include "kernels/cpu/codebook_q8.h"

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
    if (kernels::codebook_q8_supported(view())) q8_ = Q8{kernels::codebook_q8_tables(view())};
    if (kernels::codebook_i8_supported(view())) i8_ = kernels::codebook_i8_tables(view());
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

  // Fast paths: for k = 2..4 (and groups / rows in multiples of 32), int8 activations and integer
  // dot products (kernels/cpu/codebook_q8.h; tested against its integer reference in
  // test_codebook_q8 and against the fp32 product within its error bound in test_kernels_codecs),
  // kQ8Tokens tokens per pass over the weights: decode, batched decode and prefill alike (on a
  // 2-core Zen 3, TinyLlama shape, prefill of 128 tokens ran 57 tokens/s this way against 46 with
  // the fp32 tiles; passes of 8 tokens beat one of 16). Otherwise, or with int8 activations off,
  // fp32: fused decode + FMA for n = 1, decoded tiles + one GEMM kernel for n > 1, each token summed
  // in the same order either way (kernels/cpu/codebook_kernels.h, tested against decode_rows, and
  // bit for bit across token counts by CodecCodebook.Fp32ProductOfATokenDoesNotDependOnTheOthers).
  // On a CPU with AMX or AVX-512 VNNI, every product (kI8Tokens = 1: decode too) for k = 2..4, and
  // for k = 5, 6 where the CPU also has AVX-512 VBMI (kernels::codebook_i8_has_kernel): the path of
  // kernels/cpu/codebook_i8.h, AMX tiles or the VNNI kernels of codebook_i8_avx512vnni.h (each tested
  // bit for bit against its reference in test_codebook_i8; k = 5, 6 went the fp32 path before, 2-8x
  // slower, docs/PERFORMANCE.md "k = 5 and 6 on the int8 path"). One
  // path for every token count keeps a token's product independent of the batch it came in (test
  // CodecCodebook.ProductOfATokenDoesNotDependOnTheOthers): with the int8 path below for fewer than
  // 16 tokens, the two paths' different activation scales (blocks of 32 with 12-bit multipliers,
  // chunks of 64) made a server's greedy streams depend on its load. Decode cost: about equal for
  // 3-bit matrices streamed from memory, up to ~10-20% slower for some shapes or cache-resident
  // models (measurements in docs/PERFORMANCE.md, "One path for every token count").
  void matmul(const float* x, int64_t n, float* y) const override {
    if (i8_ && n >= i8_min_tokens() && int8_activations() && kernels::codebook_i8_has_kernel(l_.k)) {
      thread_local kernels::ActI8 act;
      kernels::quantize_act_i8(x, n, cols_, l_.k, act);
      if (act.finite) kernels::codebook_matmul_i8(view(), *i8_, act, y);
      else kernels::codebook_matmul(view(), x, n, y);  // NaN / Inf propagate
      return;
    }
    if (q8_ && int8_activations()) {
      thread_local kernels::ActQ8 act;  // reused: no allocation per call
      for (int64_t t0 = 0; t0 < n; t0 += kQ8Tokens) {
        const int64_t m = std::min(kQ8Tokens, n - t0);
        kernels::quantize_act_q8(x + t0 * cols_, m, cols_, act);
        if (act.finite) kernels::codebook_matmul_q8(view(), q8_->tables, act, y + t0 * rows_);  // rows t0 .. t0 + m
        else kernels::codebook_matmul(view(), x + t0 * cols_, m, y + t0 * rows_);  // NaN / Inf propagate
      }
      return;
    }
    kernels::codebook_matmul(view(), x, n, y);
  }
  void decode_rows_bf16(int64_t r0, int64_t r1, uint16_t* out) const override {
    UPG_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows_, kName, ": rows [", r0, ", ", r1, ") out of range [0, ", rows_, ")");
    kernels::codebook_decode_bf16(view(), r0, r1, out);
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
  // Integer level tables for the int8-activation path (absent when the shape does not allow it).
  struct Q8 {
    kernels::CodebookQ8Tables tables;
  };
  std::optional<Q8> q8_;
  static constexpr int64_t kQ8Tokens = 8;
  std::optional<kernels::CodebookI8Tables> i8_;  // signed tables of the AMX / VNNI path
  static constexpr int64_t kI8Tokens = 1;
  // UPG_CPU_I8_MIN_TOKENS overrides kI8Tokens (measurements; 16 was the threshold before).
  static int64_t i8_min_tokens() {
    static const int64_t v = [] {
      const char* e = std::getenv("UPG_CPU_I8_MIN_TOKENS");
      return e ? std::max<int64_t>(1, std::atol(e)) : kI8Tokens;
    }();
    return v;
  }

  kernels::CodebookView view() const {
    kernels::CodebookView v;
    v.k = l_.k;
    v.rows = rows_;
    v.cols = cols_;
    v.group = l_.group;
    v.ngroups = l_.ngroups;
    v.row_bytes = l_.row_bytes;
    v.cb_rows = cb_;
    v.q = q_;
    v.scales = s_;
    v.levels = levels_.data();
    return v;
  }
};

}  // namespace

std::unique_ptr<WeightMatrix> CodebookCodec::open_core(const EncodedArrays& arrays, int64_t rows,
                                                       int64_t cols, const CodecParams& params) const {
  return std::make_unique<CodebookMatrix>(arrays, rows, cols, params);
}

// A block: each row's code bytes of its columns (they start on a group, a multiple of 8 codes, so on
// a byte), its groups' scales, and the level tables of its rows (the same blocks of rows when the
// first row starts one, else one table per row).
EncodedTensor CodebookCodec::slice_core(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                        const CodecParams& params, const MatrixBlock& b) const {
  const CodebookLayout l = read_codebook_layout(params, rows, cols);
  const int64_t nl = int64_t{1} << l.k, cb = l.cb_rows == 0 ? rows : l.cb_rows;
  EncodedTensor t;
  t.params = params;
  t.arrays["qweight"] = slice_array_2d(require_array(arrays, kName, "qweight", DType::U8, {rows, l.row_bytes}), b.r0,
                                       b.r1, b.c0 * l.k / 8, b.c1 == cols ? l.row_bytes : b.c1 * l.k / 8);
  t.arrays["scales"] = slice_array_2d(require_array(arrays, kName, "scales", DType::F16, {rows, l.ngroups}), b.r0,
                                      b.r1, b.c0 / l.group, (b.c1 + l.group - 1) / l.group);
  const ArrayView& tables = require_array(arrays, kName, "codebook", DType::F32, {l.nblocks, nl});
  if (l.cb_rows == 0) {
    t.arrays["codebook"] = slice_array_2d(tables, 0, 1, 0, nl);
  } else if (b.r0 % cb == 0) {
    t.arrays["codebook"] = slice_array_2d(tables, b.r0 / cb, (b.r1 + cb - 1) / cb, 0, nl);
  } else {
    Array per_row = make_array(DType::F32, {b.r1 - b.r0, nl});
    for (int64_t r = b.r0; r < b.r1; ++r)
      std::memcpy(per_row.bytes.data() + (r - b.r0) * nl * 4, tables.data + (r / cb) * nl * 4,
                  static_cast<size_t>(nl) * 4);
    t.arrays["codebook"] = std::move(per_row);
    t.params["codebook_rows"] = 1;
  }
  return t;
}

int64_t CodebookCodec::column_alignment_core(int64_t cols, const CodecParams& params) const {
  return read_codebook_layout(params, 1, cols).group;
}

}  // namespace upg
