// LDLQ with the trellis codec (convert/gptq.h): block-wise GPTQ whose blocks are chosen by the
// codec's Viterbi search.
#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "codecs/codec_registry.h"
#include "codecs/codec_util.h"
#include "codecs/compose.h"
#include "codecs/trellis/trellis_codec.h"
#include "codecs/trellis/viterbi.h"
#include "convert/gptq.h"

namespace upg {

EncodedTensor ldlq_trellis(const float* W, int64_t rows, int64_t cols, const InputStats& h, const CodecParams& params,
                           const GptqOptions& o, std::vector<float>* decoded, const GptqFactor* factor) {
  UPG_CHECK(!params.contains("outliers"), "ldlq: the 'outliers' option is not supported with LDLQ");
  UPG_CHECK(h.cols() == cols, "ldlq: statistics have ", h.cols(), " columns, the weight has ", cols);
  if (!h.full()) {  // importance-weighted search by the codec itself (it handles "rotate")
    EncodedTensor t = make_codec("trellis")->encode(W, rows, cols, params, h.diag().data());
    if (decoded) *decoded = decode_encoded(t, rows, cols);
    return t;
  }
  const RotateOpt rot = read_rotate(params, "trellis", cols, /*encoding=*/true);
  GptqFactor own;
  if (!factor) {
    GptqOptions natural = o;
    natural.act_order = false;
    own = make_gptq_factor(h, rot, natural);
    factor = &own;
  }
  check_factor(*factor, rot, cols, "ldlq");
  for (int64_t j = 0; j < cols; ++j)
    UPG_CHECK(factor->perm[j] == j, "ldlq: the trellis codec needs a factor in natural column order (act-order off)");
  CodecParams core = params.is_object() ? params : CodecParams::object();
  core.erase("rotate");
  const TrellisLayout l = read_trellis_layout(core, cols);
  for (int64_t i = 0; i < rows * cols; ++i)
    UPG_CHECK(std::isfinite(W[i]), "trellis: weight (", i / cols, ", ", i % cols, ") is not finite");
  const PassInput in = pass_input(W, rows, cols, h, *factor);
  std::vector<float> scales = trellis_initial_scales(l, in.W, rows, cols, in.d);
  const float* U = factor->U.data();
  const float* code = trellis::code_table(l.l).data();  // code(s) of every state
  const int64_t T = std::max<int64_t>(1, o.trellis_block), look = 8;
  std::vector<uint32_t> states(static_cast<size_t>(rows * cols));
#pragma omp parallel
  {
    trellis::ViterbiScratch scratch;
    std::vector<float> w(static_cast<size_t>(cols)), t(T + look), u(T + look), e(T);
    std::vector<uint32_t> st(T + look);
#pragma omp for schedule(dynamic, 1)
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(in.W + r * cols, in.W + (r + 1) * cols, w.begin());
      const float* sc = scales.data() + r * l.ngroups;
      uint32_t* out = states.data() + r * cols;
      for (int64_t b0 = 0; b0 < cols; b0 += T) {
        const int64_t b1 = std::min(cols, b0 + T), e1 = std::min(cols, b1 + look), n = b1 - b0;
        for (int64_t j = b0; j < e1; ++j) {
          const float s = sc[j / l.group], ujj = U[j * cols + j];
          t[j - b0] = s != 0.f ? w[j] / s : 0.f;
          u[j - b0] = s * s / (ujj * ujj);
        }
        trellis::viterbi_search(l.k, l.l, t.data(), u.data(), e1 - b0, b0 == 0 ? -1 : int64_t{out[b0 - 1]}, st.data(),
                                scratch);
        std::copy(st.begin(), st.begin() + n, out + b0);
        // e U_blk = W_blk - Q_blk (U_blk upper triangular): forward substitution.
        for (int64_t i = 0; i < n; ++i) {
          const int64_t j = b0 + i;
          double acc = w[j] - sc[j / l.group] * code[out[j]];
          for (int64_t k = 0; k < i; ++k) acc -= e[k] * U[(b0 + k) * cols + j];
          e[i] = static_cast<float>(acc / U[j * cols + j]);
        }
        for (int64_t i = 0; i < n; ++i) {
          const float ei = e[i];
          const float* ui = U + (b0 + i) * cols;
#pragma omp simd
          for (int64_t j = b1; j < cols; ++j) w[j] -= ei * ui[j];
        }
      }
    }
  }
  if (o.refit_scales)
    refit_group_scales(in.W, rows, cols, factor->stats(h), l.group, [&](int64_t r, float* lv) {
      for (int64_t j = 0; j < cols; ++j) lv[j] = code[states[r * cols + j]];
    }, scales);
  EncodedTensor out = trellis_from_states(l, rows, cols, states.data(), scales.data());
  if (rot.on) out.params["rotate"] = {{"seed", rot.seed}, {"block", rot.block}};
  if (decoded) *decoded = decode_encoded(out, rows, cols);  // in the original basis
  return out;
}

}  // namespace upg
