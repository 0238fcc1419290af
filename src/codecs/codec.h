// The codec interface: how one weight tensor (rows = out_features x cols = in_features, fp32 in)
// becomes a set of named little-endian arrays plus JSON params, and how those arrays, read in
// place (memory-mapped), become a WeightMatrix again.
//
// A codec is a type implementing Codec plus one row in the table of codec_registry.cpp.
// Array names are short suffixes ("qweight", "scales", "sparse.values"); the container stores
// them as "<tensor name>.<array name>". Every layout is defined in a comment beside the code that
// writes it and in docs/CODECS.md; none depends on SIMD width. Multi-byte values are little-endian
// (the engine only builds on little-endian hosts; see the static_assert in codec_util.h).
//
// Options shared by every codec that stores a dense matrix (handled here, in compose.cpp, not in
// each codec): "rotate" (randomized Hadamard rotation of the input dimension) and "outliers"
// (a fraction of entries kept exactly-ish in an mdcsr sparse part added to the dense part).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "codecs/weight_matrix.h"

namespace upg {

// Element types of stored arrays; names as in safetensors ("I8", "U8", "U16", "U32", "F16", "F32").
enum class DType { I8, U8, U16, U32, F16, F32 };
const char* dtype_name(DType t);
size_t dtype_size(DType t);
// Parses a safetensors dtype string; throws Error for types codecs do not use.
DType dtype_from_name(const std::string& s);

// One array produced by an encoder; bytes are little-endian, row-major, no padding.
struct Array {
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// One array as the decoder sees it: a pointer into (usually) a memory-mapped file. The pointer
// need not be aligned; codecs read multi-byte values with memcpy.
struct ArrayView {
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
};
using EncodedArrays = std::map<std::string, ArrayView>;

// Codec parameters: a JSON object. encode() receives the user's choices (missing keys take
// defaults); the EncodedTensor carries the full resolved set, which open() needs.
using CodecParams = nlohmann::json;

struct EncodedTensor {
  std::string codec;
  CodecParams params;
  std::map<std::string, Array> arrays;

  size_t total_bytes() const;
  // Stored bits per weight, counting every array (indices, scales, codebooks, outliers).
  double bits_per_weight(int64_t rows, int64_t cols) const;
  // Views onto this tensor's own arrays (valid while *this lives and is unchanged).
  EncodedArrays views() const;
};

// A block of a matrix: rows [r0, r1) x columns [c0, c1) (tensor parallelism splits matrices into them).
struct MatrixBlock {
  int64_t r0 = 0, r1 = 0, c0 = 0, c1 = 0;
};

// A WeightMatrix's stored form (WeightMatrix::stored()): what Codec::open was given.
struct StoredTensor {
  std::string codec;
  nlohmann::json params;  // as stored, the shared options ("rotate", "outliers") included
  EncodedArrays arrays;   // views into the source's memory (which outlives the matrix)
};

class Codec {
 public:
  virtual ~Codec() = default;
  virtual std::string name() const = 0;

  // W: rows x cols, row-major fp32. importance: per-column weights (cols values, the diagonal of
  // X^T X from calibration, >= 0) or nullptr for uniform. Encoders minimise
  // sum_ij importance_j * (W_ij - Q_ij)^2. Handles the shared "rotate"/"outliers" options and
  // calls encode_core for the dense part. Throws Error on bad params (naming the field).
  EncodedTensor encode(const float* W, int64_t rows, int64_t cols, const CodecParams& params,
                       const float* importance = nullptr) const;

  // Opens stored arrays in place. Validates every array (presence, dtype, byte size against
  // rows/cols/params, indices in range) and throws Error naming the array; the returned matrix
  // never reads out of bounds. The arrays must outlive the returned matrix.
  std::unique_ptr<WeightMatrix> open(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                     const CodecParams& params) const;

  // The block `b` of a stored tensor (rows x cols; arrays and params as open() takes them) as a
  // tensor of this codec in its own right, its arrays copied: opening it gives that block of the
  // weights, decode_rows equal bit for bit to the same block of the whole matrix's. Any row range
  // is allowed; the column range must start on a multiple of column_alignment() and end on one or
  // at cols (throws Error naming the codec, the range and the alignment otherwise). Does not
  // validate the arrays beyond what it reads: open the whole tensor first.
  EncodedTensor slice(const EncodedArrays& arrays, int64_t rows, int64_t cols, const CodecParams& params,
                      const MatrixBlock& b) const;
  // The multiple column ranges of slice() start on: the group (scales), the rotation block.
  int64_t column_alignment(int64_t cols, const CodecParams& params) const;

  // The stored tensor with row r of the matrix multiplied by mult[r] (rows finite values; the
  // fine-tuning of docs/CONVERT.md folds its row multipliers in this way): every array copied, the
  // codec's per-row scale arrays (row_scale_arrays) and, with outliers, the sparse part's row scales
  // multiplied. Opening it gives mult[r] times each original row, up to the rounding of the scaled
  // values to their stored type (f16: relative 2^-11). A rotation is over columns, so it stays.
  // Throws Error naming the codec when a multiplier is not finite, a scaled value overflows its type
  // or the codec has no per-row scales (dense tensors are scaled by whoever stores them).
  EncodedTensor scale_rows(const EncodedArrays& arrays, int64_t rows, int64_t cols, const CodecParams& params,
                           const float* mult) const;

 protected:
  // Encodes/opens the plain matrix (no rotation, no outliers). `params` for encode_core are the
  // user's params; the codec returns its resolved params.
  virtual EncodedTensor encode_core(const float* W, int64_t rows, int64_t cols,
                                    const CodecParams& params, const float* importance) const = 0;
  virtual std::unique_ptr<WeightMatrix> open_core(const EncodedArrays& arrays, int64_t rows,
                                                  int64_t cols, const CodecParams& params) const = 0;
  // slice() and column_alignment() of the plain matrix (params without "rotate"/"outliers").
  virtual EncodedTensor slice_core(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                   const CodecParams& params, const MatrixBlock& b) const = 0;
  virtual int64_t column_alignment_core(int64_t cols, const CodecParams& params) const = 0;
  // Codecs that are themselves sparse (mdcsr) do not take the shared options.
  virtual bool supports_shared_options() const { return true; }
  // Arrays (F16 or F32) whose leading dimension is the matrix row and whose values each multiply
  // weights of that row only (the row's group scales): scaling them scales the row. Empty: scale_rows
  // is refused.
  virtual std::vector<std::string> row_scale_arrays() const { return {}; }

 private:
  // open() less the stored form: the inner matrix with the shared options applied.
  std::unique_ptr<WeightMatrix> open_shared(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                            const CodecParams& p) const;
};

}  // namespace upg
