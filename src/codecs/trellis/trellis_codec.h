// trellis: a bitshift-trellis code in the QTIP family (Tseng et al., "QTIP: Quantization with
// Trellises and Incoherence Processing", 2024). Each row of the weight matrix is one bit stream;
// the value of weight j is a computed function of the L-bit window of the stream that starts at
// bit j*K, so consecutive weights share L - K bits and the encoder chooses all of a row's windows
// together (Viterbi search), which gets far closer to the rate-distortion limit than rounding each
// weight to the nearest of 2^K levels: on Gaussian data the squared error is about 0.55x that of
// the Lloyd-Max scalar table at the same K (docs/CODECS.md).
//
// Arrays (K = bits, L = state_bits, G = group, ng = ceil(cols / G),
// RB = ceil((L + (cols - 1) * K) / 8)):
//   qweight U8  [rows, RB]  row r's stream, most significant bit first: stream bit b is bit
//                           7 - (b % 8) of byte b / 8. Pad bits at the end of a row are 0.
//   scales  F16 [rows, ng]  per-group scale
//   state(r, j) = the L stream bits [j*K, j*K + L) read as an unsigned integer, first bit most
//                 significant (so state(r, j + 1) = ((state(r, j) << K) | next K bits) mod 2^L)
//   W[r][j] = scales[r][j / G] * code(state(r, j)), with the computed code of trellis_code.h:
//             x = (34038481 * s + 76625530) mod 2^32; code(s) = (sum of x's four bytes - 510) / 128
// Params: "bits" K (1..5, default 3), "state_bits" L (K + 1 .. 16, default 12), "group" G
// (8..cols rounded up, a multiple of 8, default 64), "passes" (Viterbi passes of the encoder,
// each followed by a least-squares refit of the scales; 1..4, default 2; not needed to decode).
// Bits per weight: K + (L - K) / cols + 16 / G (+ pad to a byte per row).
#pragma once
#include <cstdint>
#include <vector>

#include "codecs/codec.h"

namespace upg {

class TrellisCodec : public Codec {
 public:
  std::string name() const override { return "trellis"; }

 protected:
  EncodedTensor encode_core(const float* W, int64_t rows, int64_t cols, const CodecParams& params,
                            const float* importance) const override;
  std::unique_ptr<WeightMatrix> open_core(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                          const CodecParams& params) const override;
  EncodedTensor slice_core(const EncodedArrays& arrays, int64_t rows, int64_t cols, const CodecParams& params,
                           const MatrixBlock& b) const override;
  int64_t column_alignment_core(int64_t cols, const CodecParams& params) const override;
  std::vector<std::string> row_scale_arrays() const override { return {"scales"}; }
};

// Resolved layout of a trellis tensor (shared by the encoder, the matrix and the kernels' views).
struct TrellisLayout {
  int k = 3, l = 12;
  int64_t group = 64, ngroups = 0, row_bytes = 0, passes = 2;
};
TrellisLayout read_trellis_layout(const CodecParams& p, int64_t cols);
// The params a tensor of this layout stores.
CodecParams trellis_params(const TrellisLayout& l);

// Packs per-position states (rows x cols, each < 2^L, consecutive states overlapping as the layout
// requires: state(j + 1) >> K == state(j) mod 2^(L - K)) and scales (rows x ngroups, rounded to f16
// here) into a trellis tensor. Throws Error naming the position when the states do not chain.
EncodedTensor trellis_from_states(const TrellisLayout& l, int64_t rows, int64_t cols, const uint32_t* states,
                                  const float* scales);

// The encoder's initial group scale: this many times the group's importance-weighted RMS over the
// code's RMS (1.1547).
float trellis_initial_scale_factor(int k);
// Those scales for every row and group (rows x ngroups, f16-representable); importance may be null.
std::vector<float> trellis_initial_scales(const TrellisLayout& l, const float* W, int64_t rows, int64_t cols,
                                          const float* importance);

}  // namespace upg
