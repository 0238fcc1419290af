// Options every dense codec takes (implemented once here, used by Codec::encode / Codec::open):
//
// "rotate": {"seed": S, "block": B}  (or true: seed 0, B = default_rotation_block(cols))
//   Randomized Hadamard rotation R of the input dimension: x R = FWHT_B(s * x), i.e. multiply
//   element j by the sign s_j, then apply the orthonormal Walsh-Hadamard transform (scaled by
//   1/sqrt(B)) to each block of B consecutive columns (B a power of two dividing cols). The
//   stored matrix is W R (rows rotated the same way); since R is orthogonal, y = x W^T =
//   (x R)(W R)^T, so matmul rotates the activations and runs the inner codec. Nothing extra is
//   stored: s_j = +1 or -1 from the top bit of splitmix64 output number j+1 for state S:
//     z = S + (j+1) * 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
//     z = (z ^ (z >> 27)) * 0x94D049BB133111EB; z ^= z >> 31; s_j = (z >> 63) ? -1 : +1.
//   "first_column": F (optional, default 0) takes the signs s_{F+j} instead: a column slice of a
//   wider rotated matrix (Codec::slice, for tensor parallelism); files written by the converter
//   never have it.
//   Importance (a diagonal of X^T X) becomes, in the rotated basis, the mean over each block
//   (exact for the diagonal: (R^T D R)_jj = sum_i R_ij^2 d_i = block mean).
//
// "outliers": {"fraction": f, "values": "int8"|"levels"}  (dense-and-sparse)
//   The f * rows * cols entries with the largest |w| * sqrt(importance) (after rotation) are set
//   to 0 before the dense codec runs; their residual w - dense(w) is stored with mdcsr in arrays
//   prefixed "sparse." (sparse.values, sparse.col_delta, sparse.row_ptr, sparse.scales,
//   [sparse.levels]). The matrix is dense + sparse; matmul computes both without densifying.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/rotation_signs.h"

namespace upg {

// Largest power of two dividing cols, capped at 4096 (1 when cols is odd).
int64_t default_rotation_block(int64_t cols);
// In place: v (cols values) <- v R = FWHT_B(s * v). And the inverse: v <- v R^T = s * FWHT_B(v).
void rotate_row(float* v, int64_t cols, const float* signs, int64_t block);
void unrotate_row(float* v, int64_t cols, const float* signs, int64_t block);

// The "rotate" option as read from params (encoding: `true` means seed 0 and the default block;
// stored params must give {"seed", "block"}). Throws Error naming `codec` on a bad value.
struct RotateOpt {
  bool on = false;
  uint64_t seed = 0;
  int64_t block = 1;
  int64_t first = 0;  // "first_column"
};
RotateOpt read_rotate(const nlohmann::json& params, const std::string& codec, int64_t cols, bool encoding);

}  // namespace upg
