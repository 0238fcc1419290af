// Small helpers shared by the codecs: little-endian element access on unaligned bytes, building
// and validating arrays, reading params with errors that name the field.
#pragma once
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/half.h"
#include "codecs/codec.h"

namespace upg {

static_assert(std::endian::native == std::endian::little,
              "stored codec arrays are little-endian and read in place");

template <class T>
inline T load_le(const uint8_t* base, size_t i) {
  T v;
  std::memcpy(&v, base + i * sizeof(T), sizeof(T));
  return v;
}
template <class T>
inline void store_le(uint8_t* base, size_t i, T v) {
  std::memcpy(base + i * sizeof(T), &v, sizeof(T));
}
inline float load_f16(const uint8_t* base, size_t i) { return f16_to_f32(load_le<uint16_t>(base, i)); }

// Zero-filled array of the given dtype and shape.
Array make_array(DType t, std::vector<int64_t> shape);
int64_t shape_numel(const std::vector<int64_t>& shape);
std::string shape_str(const std::vector<int64_t>& shape);

// The array a view shows, copied (Codec::scale_rows, apply_tuning).
Array copy_array(const ArrayView& v);
// Rows [r0, r1) of a 2-D array (shape [rows, width]), elements [e0, e1) of each, copied (Codec::slice).
Array slice_array_2d(const ArrayView& a, int64_t r0, int64_t r1, int64_t e0, int64_t e1);

// Returns arrays[name] after checking dtype, shape and byte size; throws Error
// "<codec>: array '<name>' ..." naming what was expected and found.
const ArrayView& require_array(const EncodedArrays& arrays, const std::string& codec,
                               const std::string& name, DType dtype,
                               const std::vector<int64_t>& shape);
// Like require_array, but the shape is checked only for rank 1 with any length; returns length.
const ArrayView& require_vector(const EncodedArrays& arrays, const std::string& codec,
                                const std::string& name, DType dtype);

// Param readers: the default applies when the key is absent; wrong type or out of [lo, hi]
// throws Error "<codec>: param '<key>' ...".
int64_t param_int(const CodecParams& p, const std::string& codec, const std::string& key,
                  int64_t def, int64_t lo, int64_t hi);
double param_num(const CodecParams& p, const std::string& codec, const std::string& key,
                 double def, double lo, double hi);
std::string param_str(const CodecParams& p, const std::string& codec, const std::string& key,
                      const std::string& def, const std::vector<std::string>& allowed);
// Checks that open() got rows/cols >= 1.
void check_dims(const std::string& codec, int64_t rows, int64_t cols);

}  // namespace upg
