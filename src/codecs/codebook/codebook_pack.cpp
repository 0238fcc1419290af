// codebook_from_codes: packs externally chosen codes, scales and levels into the layout of
// codebook_codec.h (the same arrays and params encode_core writes).
#include "base/error.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/codec_util.h"

namespace upg {

EncodedTensor codebook_from_codes(const CodecParams& params, int64_t rows, int64_t cols, const uint8_t* codes,
                                  const float* scales, const float* levels) {
  const CodebookLayout l = read_codebook_layout(params, rows, cols);
  const int nl = 1 << l.k;
  Array q = make_array(DType::U8, {rows, l.row_bytes});
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = q.bytes.data() + r * l.row_bytes;
    for (int64_t j = 0; j < cols; ++j) {
      const uint32_t c = codes[r * cols + j];
      UPG_CHECK(c < static_cast<uint32_t>(nl), "codebook: code ", c, " at (", r, ", ", j, ") is out of range for ",
                l.k, " bits");
      for (int t = 0; t < l.k; ++t) {
        const int64_t bit = j * l.k + t;
        row[bit >> 3] |= static_cast<uint8_t>(((c >> t) & 1u) << (bit & 7));
      }
    }
  }
  Array s = make_array(DType::F16, {rows, l.ngroups});
  for (int64_t i = 0; i < rows * l.ngroups; ++i) store_le<uint16_t>(s.bytes.data(), i, f32_to_f16(scales[i]));
  Array cb = make_array(DType::F32, {l.nblocks, nl});
  for (int64_t i = 0; i < l.nblocks * nl; ++i) store_le<float>(cb.bytes.data(), i, levels[i]);

  EncodedTensor t;
  t.codec = "codebook";
  t.params = {{"bits", l.k}, {"group", l.group}, {"levels", l.levels}, {"codebook_rows", l.cb_rows}};
  if (l.levels == "prime") t.params["prime_offset"] = l.prime_offset;
  if (l.levels == "fitted") t.params["lloyd_iters"] = l.lloyd_iters;
  t.arrays["qweight"] = std::move(q);
  t.arrays["scales"] = std::move(s);
  t.arrays["codebook"] = std::move(cb);
  return t;
}

}  // namespace upg
