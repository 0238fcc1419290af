// A block of any WeightMatrix as a matrix of the same codec holding its own arrays: how tensor
// parallelism (runtime/tensor_parallel.h) gives each rank its rows (column-parallel projections)
// or columns (row-parallel ones) of a matrix, each shard a valid codec matrix that runs on every
// backend as the whole one does. Dense matrices (bf16/f16/f32) are cut anywhere; codec matrices
// through Codec::slice (whole groups and rotation blocks: slice_column_alignment).
#pragma once
#include <cstdint>
#include <memory>

#include "codecs/codec.h"
#include "codecs/weight_matrix.h"

namespace upg {

// The block b of m (rows [b.r0, b.r1) x columns [b.c0, b.c1)), its arrays copied. Its decode_rows
// equals the block of m's, bit for bit. Throws Error naming the codec when the block is outside m,
// its columns break a group or rotation block, or m is of a kind that cannot be cut (no stored form).
std::unique_ptr<WeightMatrix> slice_matrix(const WeightMatrix& m, const MatrixBlock& b);
// The multiple a slice's columns must start on (and end on, unless at m.cols()); 1 for dense matrices.
int64_t slice_column_alignment(const WeightMatrix& m);

}  // namespace upg
