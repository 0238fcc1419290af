#include "backend/cuda/cuda_codecs.h"

#include <cstring>
#include <vector>

#include "base/error.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/codec.h"
#include "codecs/compose.h"
#include "codecs/dense/dense_matrix.h"
#include "codecs/trellis/trellis_codec.h"

namespace upg {

namespace {

const StoredTensor& stored_of(const WeightMatrix& w) {
  UPG_CHECK(w.stored(), "cuda upload: a ", w.codec(), " matrix without its stored arrays");
  return *w.stored();
}

const ArrayView& array(const StoredTensor& s, const char* name) {
  auto it = s.arrays.find(name);
  UPG_CHECK(it != s.arrays.end(), "cuda upload: ", s.codec, " tensor has no array '", name, "'");
  return it->second;
}

cuda::RotateParams rotation(const StoredTensor& s, int64_t cols) {
  const RotateOpt r = read_rotate(s.params, s.codec, cols, false);
  return cuda::RotateParams{r.on, r.seed, r.block, r.first};
}

cuda::DeviceMatrix upload_codebook(const WeightMatrix& w) {
  const StoredTensor& s = stored_of(w);
  const CodebookLayout l = read_codebook_layout(s.params, w.rows(), w.cols());
  return cuda::DeviceMatrix::upload(cuda::CodebookHost{array(s, "qweight").data, array(s, "scales").data,
                                                       array(s, "codebook").data, w.rows(), w.cols(), l.k,
                                                       static_cast<int>(l.group), l.cb_rows,
                                                       rotation(s, w.cols())});
}

cuda::DeviceMatrix upload_int8(const WeightMatrix& w) {
  const StoredTensor& s = stored_of(w);
  int64_t group = s.params.value("group", int64_t{128});
  if (group <= 0 || group >= w.cols()) group = 0;  // one scale per row
  const ArrayView& scales = array(s, "scales");
  return cuda::DeviceMatrix::upload(cuda::Int8Host{array(s, "qweight").data, scales.data, scales.dtype == DType::F16,
                                                   w.rows(), w.cols(), group, rotation(s, w.cols())});
}

cuda::DeviceMatrix upload_trellis(const WeightMatrix& w) {
  const StoredTensor& s = stored_of(w);
  const TrellisLayout l = read_trellis_layout(s.params, w.cols());
  return cuda::DeviceMatrix::upload(cuda::TrellisHost{array(s, "qweight").data, array(s, "scales").data, w.rows(),
                                                      w.cols(), l.k, l.l, static_cast<int>(l.group),
                                                      rotation(s, w.cols())});
}

int dense_code(TensorDType t) {
  switch (t) {
    case TensorDType::BF16: return 0;
    case TensorDType::F16: return 1;
    default: return 2;
  }
}

}  // namespace

const std::vector<CudaCodecRow>& cuda_codec_table() {
  static const std::vector<CudaCodecRow> t = {
      {"codebook", upload_codebook},
      {"int8", upload_int8},
      {"trellis", upload_trellis},
  };
  return t;
}

cuda::DeviceMatrix cuda_upload(const WeightMatrix& w, std::string* how) {
  if (const auto* d = dynamic_cast<const DenseMatrix*>(&w)) {  // bf16/f16/f32, read in place
    cuda::DeviceMatrix m = cuda::DeviceMatrix::upload(cuda::DenseHost{d->data(), dense_code(d->dtype()), w.rows(), w.cols()});
    if (how) *how = m.layout();
    return m;
  }
  const StoredTensor* s = w.stored();
  if (s && !s->params.contains("outliers"))
    for (const CudaCodecRow& row : cuda_codec_table())
      if (s->codec == row.codec) {
        cuda::DeviceMatrix m = row.upload(w);
        if (how) *how = m.layout();
        return m;
      }
  // Decoded once to bf16 (the codec's own decoder, rotation undone).
  std::vector<uint16_t> bf(static_cast<size_t>(w.rows() * w.cols()));
  w.decode_rows_bf16(0, w.rows(), bf.data());
  cuda::DeviceMatrix m =
      cuda::DeviceMatrix::upload(cuda::DenseHost{reinterpret_cast<const uint8_t*>(bf.data()), 0, w.rows(), w.cols()});
  if (how)
    *how = str_cat(m.layout(), " (decoded from ", w.codec(), s && s->params.contains("outliers") ? " with outliers" : "",
                   " at upload)");
  return m;
}

}  // namespace upg
