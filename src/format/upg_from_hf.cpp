#include "format/upg_from_hf.h"

#include <cmath>

#include "base/error.h"
#include "base/half.h"
#include "codecs/codec_registry.h"
#include "codecs/dense/dense_matrix.h"
#include "format/fp8_block.h"
#include "format/upg_format.h"
#include "format/upg_writer.h"

namespace upg {

double relative_frobenius_error(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  if (den == 0) return num == 0 ? 0.0 : INFINITY;
  return std::sqrt(num / den);
}

namespace {

// Stores `t` densely: "keep" copies its bytes, otherwise rounds to the named dtype.
void add_dense(UpgWriter& w, const TensorView& t, const std::string& how, bool measure) {
  UpgTensorMeta meta{t.shape, t.dtype, std::nullopt};
  const bool float_src = t.dtype == TensorDType::BF16 || t.dtype == TensorDType::F16 || t.dtype == TensorDType::F32;
  if (how == "keep" && float_src) {
    meta.err = 0.0;
    return w.add_raw(t.name, meta, t.dtype, t.data, t.nbytes);
  }
  const auto dt = upg_dense_codec_dtype(how == "keep" ? "f32" : how);
  UPG_CHECK(dt.has_value(), "convert: unknown dense storage '", how, "' (use keep, bf16, f16 or f32)");
  const std::vector<float> v = tensor_to_f32(t);
  if (measure) {
    std::vector<float> r(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      r[i] = *dt == TensorDType::BF16 ? bf16_to_f32(f32_to_bf16(v[i]))
             : *dt == TensorDType::F16 ? f16_to_f32(f32_to_f16(v[i]))
                                       : v[i];
    meta.err = relative_frobenius_error(r.data(), v.data(), v.size());
  }
  w.add_f32(t.name, meta, v.data(), *dt);
}

}  // namespace

std::vector<std::string> convert_hf_to_upg(const HfCheckpoint& ck, const std::string& out_path,
                                           const UpgFromHfOptions& o) {
  UpgWriter w(out_path, UpgWriterOptions{o.shard_bytes, true});
  for (const std::string& f : upg_text_file_names()) {
    std::string s;
    if (ck.read_file(f, s)) w.set_text(f, std::move(s));
  }
  w.set_converter({{"name", "convert_hf_to_upg"},
                   {"version", UPG_VERSION},
                   {"options", {{"matrix_codec", o.matrix_codec}, {"matrix_params", o.matrix_params},
                                {"vector_codec", o.vector_codec}}}});
  const bool dense_matrices = o.matrix_codec == "keep" || upg_dense_codec_dtype(o.matrix_codec).has_value();
  std::unique_ptr<Codec> codec;
  if (!dense_matrices) codec = make_codec(o.matrix_codec);
  // FP8 block-scaled tensors (format/fp8_block.h) are dequantized: "keep" stores them as bf16 (what
  // a Hugging Face directory of them loads as); their _scale_inv tensors are used up, not copied.
  const std::optional<Fp8BlockScheme> fp8 = fp8_block_scheme(ck.config(), ck.dir() + "/config.json");
  const std::vector<std::string> names = ck.names();
  for (size_t i = 0; i < names.size(); ++i) {
    const TensorView& t = ck.tensor(names[i]);
    const std::string suffix = "_scale_inv";
    if (t.name.size() > suffix.size() && t.name.ends_with(suffix)) {
      const TensorView* base = ck.find(t.name.substr(0, t.name.size() - suffix.size()));
      if (base && base->dtype == TensorDType::F8_E4M3) continue;
    }
    try {
      if (t.dtype == TensorDType::F8_E4M3) {
        // The error is measured against the dequantized fp32 values.
        const std::vector<float> W = checkpoint_tensor_f32(ck, t.name, fp8);
        const int64_t rows = t.shape[0], cols = t.shape[1];
        UpgTensorMeta meta{t.shape, t.dtype, std::nullopt};
        std::vector<float> D(W.size());
        if (dense_matrices) {
          const TensorDType dt = o.matrix_codec == "keep" ? TensorDType::BF16 : *upg_dense_codec_dtype(o.matrix_codec);
          for (size_t j = 0; j < W.size(); ++j)
            D[j] = dt == TensorDType::BF16 ? bf16_to_f32(f32_to_bf16(W[j]))
                   : dt == TensorDType::F16 ? f16_to_f32(f32_to_f16(W[j]))
                                            : W[j];
          if (o.measure_err) meta.err = relative_frobenius_error(D.data(), W.data(), W.size());
          w.add_f32(t.name, meta, W.data(), dt);
        } else {
          EncodedTensor enc = codec->encode(W.data(), rows, cols, o.matrix_params);
          if (o.measure_err) {
            codec->open(enc.views(), rows, cols, enc.params)->decode_rows(0, rows, D.data());
            meta.err = relative_frobenius_error(D.data(), W.data(), W.size());
          }
          w.add(t.name, meta, enc);
        }
      } else if (t.shape.size() != 2 || dense_matrices) {
        add_dense(w, t, t.shape.size() == 2 ? o.matrix_codec : o.vector_codec, o.measure_err);
      } else {
        const int64_t rows = t.shape[0], cols = t.shape[1];
        const std::vector<float> W = tensor_to_f32(t);
        EncodedTensor enc = codec->encode(W.data(), rows, cols, o.matrix_params);
        UpgTensorMeta meta{t.shape, t.dtype, std::nullopt};
        if (o.measure_err) {
          auto m = codec->open(enc.views(), rows, cols, enc.params);
          std::vector<float> D(W.size());
          m->decode_rows(0, rows, D.data());
          meta.err = relative_frobenius_error(D.data(), W.data(), W.size());
        }
        w.add(t.name, meta, enc);
      }
    } catch (const Error& e) {
      const std::string msg = e.what();
      if (msg.find(t.name) != std::string::npos) throw;
      throw Error(str_cat("convert: tensor '", t.name, "': ", msg));
    }
    if (o.progress) o.progress(i + 1, names.size(), t.name);
  }
  return w.finish();
}

}  // namespace upg
