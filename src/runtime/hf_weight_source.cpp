#include "runtime/hf_weight_source.h"

#include "base/error.h"
#include "codecs/dense/dense_matrix.h"

namespace upg {

std::unique_ptr<WeightMatrix> HfWeightSource::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  const TensorView& t = ck_->tensor(name, {rows, cols});
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
