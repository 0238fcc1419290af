// GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
// Transformers", 2022) onto the codebook codec's grid, and the output-error measures used to judge
// and allocate quantization.
//
// For a weight W (rows x cols) whose input has second moment H = X^T X (convert/hessian.h), the
// output error of a quantized Q is  E(Q) = tr((W - Q) H (W - Q)^T)  = sum over calibration tokens of
// ||x (W - Q)^T||^2. GPTQ quantizes one column at a time and moves each column's rounding error
// onto the not-yet-quantized columns, using the upper Cholesky factor U of H^-1:
//   for i in 0..cols: q_i = grid(w_i); e = (w_i - q_i) / U_ii; w_j -= e U_ij for j > i.
// Rows are independent, so each row runs the whole pass on its own (OpenMP over rows; the row is
// contiguous and U's row i is contiguous, which is what GPTQ's lazy 128-column block updates buy on
// a GPU). Cost: rows * cols^2 / 2 multiply-adds, plus O(cols^3) for the factorisation.
//
// The grid is fixed before the pass ("static groups"): the codebook codec's own encoder runs first
// with importance = diag(H) and fixes the level table and every group's f16 scale; GPTQ then only
// chooses codes, so the result is exactly the codec's arrays (codebook_from_codes).
// H is dampened by 1% of its mean diagonal; columns never activated (H_ii = 0) get H_ii = 1.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "codecs/codec.h"
#include "codecs/compose.h"
#include "convert/hessian.h"

namespace upg {

// tr(D H D^T) with D = A - B (rows x cols), accumulated in double. Diagonal statistics use only
// the diagonal.
double output_error(const float* A, const float* B, int64_t rows, int64_t cols, const InputStats& h);
// tr(W H W^T).
double output_energy(const float* W, int64_t rows, int64_t cols, const InputStats& h);

struct GptqOptions {
  double damp = 0.01;     // fraction of mean(diag H) added to the diagonal
  bool act_order = true;  // quantize columns in decreasing order of H_jj (GPTQ's "act-order")
  // After the pass, re-solve each row's group scales for the chosen codes by least squares in the
  // output error (the scales the pass assumed were fitted to the weights before any error moved).
  bool refit_scales = true;
  int64_t trellis_block = 64;  // columns per LDLQ block of the trellis codec
};

// What a GPTQ pass needs besides the weight, shared by every tensor with the same input and every
// candidate with the same rotation: the column order and U for (R^T H R) in that order.
struct GptqFactor {
  RotateOpt rotate;
  std::vector<int64_t> perm;  // position p of the pass handles column perm[p]
  std::vector<float> U;       // upper Cholesky factor of the permuted, dampened inverse (cols x cols)
  std::vector<float> H_rot;   // R^T H R in column order (empty without rotation: H itself is used)
  // The statistics in the basis the pass runs in (cols x cols, row-major).
  const float* stats(const InputStats& h) const { return rotate.on ? H_rot.data() : h.matrix().data(); }
};
GptqFactor make_gptq_factor(const InputStats& h, const RotateOpt& rot, const GptqOptions& o);
// Throws Error "<who>: the factor was made for another rotation or size" unless f fits rot and cols.
void check_factor(const GptqFactor& f, const RotateOpt& rot, int64_t cols, const char* who);

// What a pass reads: W R and the diagonal of R^T H R (the importance in the rotated basis) when the
// factor has a rotation, else W and diag H themselves (W, d point into the caller's data then).
struct PassInput {
  std::vector<float> Wr, dr;
  const float* W = nullptr;
  const float* d = nullptr;
};
PassInput pass_input(const float* W, int64_t rows, int64_t cols, const InputStats& h, const GptqFactor& f);

// U: the upper Cholesky factor of (H + damp)^-1, cols x cols row-major (lower part zero).
// Throws Error when the dampened H is not positive definite.
std::vector<float> gptq_inverse_factor(const InputStats& h, double damp);
// The same for a cols x cols row-major H.
std::vector<float> gptq_inverse_factor(const float* H, int64_t cols, double damp);
// R^T H R for the randomized Hadamard rotation R of the codecs' "rotate" option (h full).
std::vector<float> rotated_statistics(const InputStats& h, const RotateOpt& rot);

// GPTQ with the codebook codec's grid (params as for the codebook codec: bits, group, levels, ...;
// "rotate" runs the pass in the rotated basis, W R with R^T H R, and stores the rotation; "outliers"
// is not supported). h must be full (h.full()); otherwise this is the
// codec's importance-weighted rounding. `U`: gptq_inverse_factor(h, o.damp) when already computed
// (it depends only on h: share it between tensors with one input and between candidates), else
// null. (With act-order the static grid keeps each column's own group scale.) Returns the encoded tensor; `decoded` (optional) receives the dequantized matrix.
EncodedTensor gptq_codebook(const float* W, int64_t rows, int64_t cols, const InputStats& h,
                            const CodecParams& params, const GptqOptions& o = {},
                            std::vector<float>* decoded = nullptr, const GptqFactor* factor = nullptr);

// With the codes fixed, the group scales of each row that minimise that row's output error
// (w - q) H (w - q)^T, q = sum_g s_g B_g (B_g: the row's unit values in group g, zero elsewhere):
// the normal equations G s = b with G_gh = B_g H B_h^T and b_g = B_g H w^T, solved by Cholesky
// (with a tiny ridge); then rounded to f16. A row whose system is singular keeps its scales.
// unit_row(r, out) writes row r's unit values (the decoded weight divided by its group scale).
void refit_group_scales(const float* W, int64_t rows, int64_t cols, const float* H, int64_t group,
                        const std::function<void(int64_t, float*)>& unit_row, std::vector<float>& scales);

// LDLQ (QuIP/QTIP's block form of GPTQ) with the trellis codec: each row's columns in blocks of
// o.trellis_block, in natural order (the trellis stream follows the columns, so no act-order;
// rotation is what makes the order harmless). A block's states come from one Viterbi search
// (continuing the row's chain, looking 8 columns past the block) under the weights 1 / U_jj^2, its
// error e (e U_blk = W_blk - Q_blk) moves onto the later columns as GPTQ's does; the scales start
// from the codec's rule and are refit in the output error at the end. factor: made with act_order
// off (identity perm) or null. h not full: the codec's importance-weighted encoder.
EncodedTensor ldlq_trellis(const float* W, int64_t rows, int64_t cols, const InputStats& h, const CodecParams& params,
                           const GptqOptions& o = {}, std::vector<float>* decoded = nullptr,
                           const GptqFactor* factor = nullptr);

// Dequantizes an encoded tensor with its codec (rows x cols fp32).
std::vector<float> decode_encoded(const EncodedTensor& enc, int64_t rows, int64_t cols);

}  // namespace upg
