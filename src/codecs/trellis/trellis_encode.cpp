// trellis encoder: per-group scales, Viterbi search of each row's states (viterbi.h), least-squares
// refit of the scales for the chosen states, repeated `passes` times; packing of the states.
#include <algorithm>
#include <cmath>
#include <iterator>

#include "codecs/codec_util.h"
#include "kernels/trellis_code.h"
#include "codecs/trellis/trellis_codec.h"
#include "codecs/trellis/viterbi.h"

namespace upg {

namespace {

const char* kName = "trellis";

// MSB-first bit writer over one row's bytes.
struct BitWriter {
  uint8_t* out;
  int64_t bit = 0;
  void put(uint32_t v, int n) {
    for (int i = n - 1; i >= 0; --i, ++bit)
      if ((v >> i) & 1u) out[bit >> 3] |= static_cast<uint8_t>(0x80u >> (bit & 7));
  }
};

}  // namespace

TrellisLayout read_trellis_layout(const CodecParams& p, int64_t cols) {
  TrellisLayout l;
  l.k = static_cast<int>(param_int(p, kName, "bits", 3, 1, trellis::kMaxBits));
  l.l = static_cast<int>(param_int(p, kName, "state_bits", 12, l.k + 1, 16));
  l.group = param_int(p, kName, "group", 64, 8, INT32_MAX);
  UPG_CHECK(l.group % 8 == 0, kName, ": param 'group' = ", l.group, " must be a multiple of 8");
  l.ngroups = (cols + l.group - 1) / l.group;
  l.row_bytes = (l.l + (cols - 1) * l.k + 7) / 8;
  l.passes = param_int(p, kName, "passes", 2, 1, 4);
  return l;
}

CodecParams trellis_params(const TrellisLayout& l) {
  return {{"bits", l.k}, {"state_bits", l.l}, {"group", l.group}, {"passes", l.passes}};
}

float trellis_initial_scale_factor(int k) {
  // Times RMS of the group / RMS of the code (1.155). Measured on Gaussian weights (L = 12, group
  // 128): the error is flat within 2% for factors 1.0 .. 1.2 at K = 2 .. 4 and rises below 0.9 (the
  // least-squares refit after a pass does not move the scale far from where the search started).
  static const float f[] = {0.f, 0.9f, 1.0f, 1.1f, 1.1f, 1.1f};
  static_assert(std::size(f) == trellis::kMaxBits + 1, "one factor per K");
  return f[std::clamp(k, 1, trellis::kMaxBits)];
}

std::vector<float> trellis_initial_scales(const TrellisLayout& l, const float* W, int64_t rows, int64_t cols,
                                          const float* importance) {
  std::vector<float> scales(static_cast<size_t>(rows * l.ngroups));
  const float alpha = trellis_initial_scale_factor(l.k);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < l.ngroups; ++g) {
      const float* w = W + r * cols;
      const int64_t c0 = g * l.group, c1 = std::min(cols, c0 + l.group);
      double hw = 0, hs = 0, ww = 0;
      for (int64_t j = c0; j < c1; ++j) {
        const double h = importance ? std::max(0.0f, importance[j]) : 1.0;
        hw += h * w[j] * w[j];
        hs += h;
        ww += double(w[j]) * w[j];
      }
      const double ms = hs > 0 && hw > 0 ? hw / hs : ww / double(c1 - c0);
      scales[r * l.ngroups + g] = f16_to_f32(f32_to_f16(static_cast<float>(alpha * std::sqrt(ms) / 1.1547)));
    }
  return scales;
}

EncodedTensor trellis_from_states(const TrellisLayout& l, int64_t rows, int64_t cols, const uint32_t* states,
                                  const float* scales) {
  const uint32_t smask = (1u << l.l) - 1, cmask = (1u << (l.l - l.k)) - 1;
  Array q = make_array(DType::U8, {rows, l.row_bytes});
  for (int64_t r = 0; r < rows; ++r) {
    BitWriter bw{q.bytes.data() + r * l.row_bytes};
    const uint32_t* st = states + r * cols;
    UPG_CHECK(st[0] <= smask, kName, ": state ", st[0], " at (", r, ", 0) has more than ", l.l, " bits");
    bw.put(st[0], l.l);
    for (int64_t j = 1; j < cols; ++j) {
      UPG_CHECK(st[j] <= smask && (st[j] >> l.k) == (st[j - 1] & cmask), kName, ": state ", st[j], " at (", r, ", ",
                j, ") does not follow state ", st[j - 1]);
      bw.put(st[j] & ((1u << l.k) - 1), l.k);
    }
  }
  Array s = make_array(DType::F16, {rows, l.ngroups});
  for (int64_t i = 0; i < rows * l.ngroups; ++i) store_le<uint16_t>(s.bytes.data(), i, f32_to_f16(scales[i]));
  EncodedTensor t;
  t.codec = kName;
  t.params = trellis_params(l);
  t.arrays["qweight"] = std::move(q);
  t.arrays["scales"] = std::move(s);
  return t;
}

EncodedTensor TrellisCodec::encode_core(const float* W, int64_t rows, int64_t cols, const CodecParams& params,
                                        const float* importance) const {
  const TrellisLayout l = read_trellis_layout(params, cols);
  for (int64_t i = 0; i < rows * cols; ++i)
    UPG_CHECK(std::isfinite(W[i]), kName, ": weight (", i / cols, ", ", i % cols, ") is not finite");
  std::vector<uint32_t> states(static_cast<size_t>(rows * cols));
  std::vector<float> scales = trellis_initial_scales(l, W, rows, cols, importance);
#pragma omp parallel
  {
    trellis::ViterbiScratch scratch;
    std::vector<float> h(static_cast<size_t>(cols)), t(static_cast<size_t>(cols)), u(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) h[j] = importance ? std::max(0.0f, importance[j]) : 1.0f;
#pragma omp for schedule(dynamic, 1)
    for (int64_t r = 0; r < rows; ++r) {
      const float* w = W + r * cols;
      float* sc = scales.data() + r * l.ngroups;
      uint32_t* st = states.data() + r * cols;
      for (int64_t pass = 0; pass < l.passes; ++pass) {
        for (int64_t j = 0; j < cols; ++j) {
          const float s = sc[j / l.group];
          t[j] = s != 0.f ? w[j] / s : 0.f;
          u[j] = h[j] * s * s;
        }
        trellis::viterbi_search(l.k, l.l, t.data(), u.data(), cols, -1, st, scratch);
        // Least-squares scale per group for these states: s = sum h w c / sum h c^2.
        for (int64_t g = 0; g < l.ngroups; ++g) {
          const int64_t c0 = g * l.group, c1 = std::min(cols, c0 + l.group);
          double a = 0, b = 0;
          for (int64_t j = c0; j < c1; ++j) {
            const double c = trellis::code(st[j]);
            a += h[j] * double(w[j]) * c;
            b += h[j] * c * c;
          }
          const float s = b > 0 ? f16_to_f32(f32_to_f16(static_cast<float>(a / b))) : 0.f;
          sc[g] = std::isfinite(s) ? s : 0.f;
        }
      }
    }
  }
  return trellis_from_states(l, rows, cols, states.data(), scales.data());
}

}  // namespace upg
