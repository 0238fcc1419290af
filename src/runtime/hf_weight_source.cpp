#include "runtime/hf_weight_source.h"

#include "base/error.h"
#include "base/half.h"
#include "codecs/dense/dense_matrix.h"
#include "format/fp8_block.h"

namespace upg {

namespace {
// A bf16 matrix owning its values (an fp8 block-scaled tensor dequantized at load).
struct Bf16Values {
  std::vector<uint16_t> v;
};
class OwnedBf16Matrix : private Bf16Values, public DenseMatrix {
 public:
  OwnedBf16Matrix(std::vector<uint16_t> v, int64_t rows, int64_t cols)
      : Bf16Values{std::move(v)},
        DenseMatrix(reinterpret_cast<const uint8_t*>(Bf16Values::v.data()), TensorDType::BF16, rows, cols) {}
};
}  // namespace

std::unique_ptr<WeightMatrix> HfWeightSource::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  const TensorView& t = ck_->tensor(name, {rows, cols});
  if (t.dtype == TensorDType::F8_E4M3) {
    const std::vector<float> w = checkpoint_tensor_f32(*ck_, name, fp8_block_scheme(ck_->config(), ck_->dir()));
    std::vector<uint16_t> b(w.size());
    for (size_t i = 0; i < w.size(); ++i) b[i] = f32_to_bf16(w[i]);
    return std::make_unique<OwnedBf16Matrix>(std::move(b), rows, cols);
  }
  try {
    return make_weight_matrix(t);
  } catch (const Error& e) {
    throw Error(str_cat(ck_->dir(), ": ", e.what()));
  }
}

std::vector<float> HfWeightSource::vector(const std::string& name, int64_t n) const {
  const TensorView& t = ck_->tensor(name, {n});
  try {
    return tensor_to_f32(t);
  } catch (const Error& e) {
    throw Error(str_cat(ck_->dir(), ": ", e.what()));
  }
}

std::optional<std::string> HfWeightSource::file_text(const std::string& name) const {
  std::string s;
  if (!ck_->read_file(name, s)) return std::nullopt;
  return s;
}

}  // namespace upg
