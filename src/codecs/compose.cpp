// Codec::encode / Codec::open and the shared options "rotate" and "outliers" (see compose.h).
#include "codecs/compose.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/thread_pool.h"
#include "codecs/codec_util.h"
#include "codecs/mdcsr/mdcsr_codec.h"

namespace upg {

int64_t default_rotation_block(int64_t cols) {
  int64_t b = 1;
  while (cols % (b * 2) == 0 && b * 2 <= 4096) b *= 2;
  return b;
}

// Orthonormal fast Walsh-Hadamard transform of each block of B values (B log2 B adds).
static void fwht_blocks(float* v, int64_t cols, int64_t block) {
  const float norm = 1.0f / std::sqrt(static_cast<float>(block));
  for (int64_t b0 = 0; b0 < cols; b0 += block) {
    float* a = v + b0;
    for (int64_t h = 1; h < block; h *= 2)
      for (int64_t i = 0; i < block; i += 2 * h)
        for (int64_t j = i; j < i + h; ++j) {
          float p = a[j], q = a[j + h];
          a[j] = p + q;
          a[j + h] = p - q;
        }
    for (int64_t j = 0; j < block; ++j) a[j] *= norm;
  }
}

void rotate_row(float* v, int64_t cols, const float* signs, int64_t block) {
  for (int64_t j = 0; j < cols; ++j) v[j] *= signs[j];
  fwht_blocks(v, cols, block);
}

void unrotate_row(float* v, int64_t cols, const float* signs, int64_t block) {
  fwht_blocks(v, cols, block);
  for (int64_t j = 0; j < cols; ++j) v[j] *= signs[j];
}

RotateOpt read_rotate(const CodecParams& p, const std::string& codec, int64_t cols, bool encoding) {
  RotateOpt o;
  if (!p.is_object() || !p.contains("rotate")) return o;
  const auto& r = p.at("rotate");
  if (r.is_boolean()) {
    UPG_CHECK(encoding || !r.get<bool>(), codec, ": param 'rotate' must be {\"seed\", \"block\"} in stored params");
    o.on = r.get<bool>();
    o.block = default_rotation_block(cols);
    return o;
  }
  UPG_CHECK(r.is_object(), codec, ": param 'rotate' must be true/false or {\"seed\": S, \"block\": B}, found ", r.dump());
  o.on = true;
  o.seed = static_cast<uint64_t>(param_int(r, codec + " rotate", "seed", 0, 0, INT64_MAX));
  UPG_CHECK(encoding || r.contains("block"), codec, ": param 'rotate' lacks 'block'");
  o.block = param_int(r, codec + " rotate", "block", default_rotation_block(cols), 1, cols);
  UPG_CHECK((o.block & (o.block - 1)) == 0 && cols % o.block == 0, codec, ": param 'rotate.block' = ",
            o.block, " must be a power of two dividing cols (", cols, ")");
  o.first = param_int(r, codec + " rotate", "first_column", 0, 0, INT64_MAX - cols);
  return o;
}

namespace {

// dense + sparse, both over the same (rotated) basis.
class SumMatrix : public WeightMatrix {
 public:
  SumMatrix(std::unique_ptr<WeightMatrix> dense, std::unique_ptr<MdcsrMatrix> sparse)
      : WeightMatrix(dense->rows(), dense->cols()), dense_(std::move(dense)), sparse_(std::move(sparse)) {}
  void matmul(const float* x, int64_t n, float* y) const override {
    dense_->matmul(x, n, y);
    sparse_->add_matmul(x, n, y);
  }
  void decode_rows(int64_t r0, int64_t r1, float* out) const override {
    dense_->decode_rows(r0, r1, out);
    std::vector<float> tmp((r1 - r0) * cols_);
    sparse_->decode_rows(r0, r1, tmp.data());
    for (size_t i = 0; i < tmp.size(); ++i) out[i] += tmp[i];
  }
  std::string codec() const override { return dense_->codec(); }
  size_t stored_bytes() const override { return dense_->stored_bytes() + sparse_->stored_bytes(); }

 private:
  std::unique_ptr<WeightMatrix> dense_;
  std::unique_ptr<MdcsrMatrix> sparse_;
};

// W = W_rot R^T: matmul rotates x (n x cols, into a scratch copy) and calls the inner matrix.
class RotatedMatrix : public WeightMatrix {
 public:
  RotatedMatrix(std::unique_ptr<WeightMatrix> inner, const RotateOpt& rot)
      : WeightMatrix(inner->rows(), inner->cols()), inner_(std::move(inner)),
        signs_(rotation_signs(rot.seed, cols_, rot.first)), block_(rot.block) {}
  void matmul(const float* x, int64_t n, float* y) const override {
    std::vector<float> xr(x, x + n * cols_);
    parallel_for(n, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) rotate_row(xr.data() + t * cols_, cols_, signs_.data(), block_);
    });
    inner_->matmul(xr.data(), n, y);
  }
  void decode_rows(int64_t r0, int64_t r1, float* out) const override {
    inner_->decode_rows(r0, r1, out);
    for (int64_t r = r0; r < r1; ++r) unrotate_row(out + (r - r0) * cols_, cols_, signs_.data(), block_);
  }
  std::string codec() const override { return inner_->codec(); }
  size_t stored_bytes() const override { return inner_->stored_bytes(); }

 private:
  std::unique_ptr<WeightMatrix> inner_;
  std::vector<float> signs_;
  int64_t block_;
};

// The dense-and-sparse option's sparse part: the arrays named "sparse.<name>", as <name>.
EncodedArrays sparse_arrays(const EncodedArrays& arrays) {
  EncodedArrays sub;
  for (const auto& [n, v] : arrays)
    if (n.rfind("sparse.", 0) == 0) sub[n.substr(7)] = v;
  return sub;
}

CodecParams strip_shared(const CodecParams& p) {
  CodecParams q = p.is_object() ? p : CodecParams::object();
  q.erase("rotate");
  q.erase("outliers");
  return q;
}

}  // namespace

EncodedTensor Codec::encode(const float* W, int64_t rows, int64_t cols, const CodecParams& params,
                            const float* importance) const {
  check_dims(name(), rows, cols);
  UPG_CHECK(params.is_null() || params.is_object(), name(), ": params must be a JSON object, found ", params.dump());
  const bool has_outliers = params.is_object() && params.contains("outliers");
  const RotateOpt rot = read_rotate(params, name(), cols, true);
  if (!supports_shared_options()) {
    UPG_CHECK(!rot.on && !has_outliers, name(), ": params 'rotate'/'outliers' do not apply to this codec");
    return encode_core(W, rows, cols, params.is_object() ? params : CodecParams::object(), importance);
  }
  const CodecParams core = strip_shared(params);
  if (!rot.on && !has_outliers) return encode_core(W, rows, cols, core, importance);

  std::vector<float> Wm(W, W + rows * cols);
  std::vector<float> imp;
  if (importance) imp.assign(importance, importance + cols);
  if (rot.on) {
    const std::vector<float> s = rotation_signs(rot.seed, cols);
#pragma omp parallel for  // encoding (offline): OpenMP, like the converter
    for (int64_t r = 0; r < rows; ++r) rotate_row(Wm.data() + r * cols, cols, s.data(), rot.block);
    for (int64_t b0 = 0; b0 < cols && importance; b0 += rot.block) {
      double m = 0;
      for (int64_t j = b0; j < b0 + rot.block; ++j) m += imp[j];
      for (int64_t j = b0; j < b0 + rot.block; ++j) imp[j] = static_cast<float>(m / rot.block);
    }
  }
  const float* impm = importance ? imp.data() : nullptr;

  SparseEntries out;
  CodecParams oparams;
  if (has_outliers) {
    const auto& o = params.at("outliers");
    UPG_CHECK(o.is_object(), name(), ": param 'outliers' must be {\"fraction\": f, ...}, found ", o.dump());
    const double frac = param_num(o, name() + " outliers", "fraction", 0.01, 0.0, 0.5);
    oparams = o;
    const int64_t total = rows * cols;
    const int64_t count = std::llround(frac * static_cast<double>(total));
    std::vector<float> score(total);
    for (int64_t i = 0; i < total; ++i) score[i] = std::fabs(Wm[i]) * (impm ? std::sqrt(impm[i % cols]) : 1.0f);
    float cut = INFINITY;
    if (count > 0) {
      std::vector<float> tmp = score;
      std::nth_element(tmp.begin(), tmp.begin() + (count - 1), tmp.end(), std::greater<float>());
      cut = tmp[count - 1];
    }
    int64_t above = 0;
    for (int64_t i = 0; i < total; ++i) above += score[i] > cut;
    int64_t ties = count - above;
    out.row_start.assign(rows + 1, 0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t i = r * cols + c;
        bool keep = score[i] > cut || (score[i] == cut && count > 0 && ties > 0 && (ties--, true));
        if (!keep) continue;
        out.col.push_back(static_cast<int32_t>(c));
        out.val.push_back(Wm[i]);
        Wm[i] = 0.0f;
      }
      out.row_start[r + 1] = static_cast<int64_t>(out.col.size());
    }
  }

  EncodedTensor t = encode_core(Wm.data(), rows, cols, core, impm);
  if (has_outliers) {
    // Residual at the outlier positions: original minus what the dense part decodes to there.
    auto dense = open_core(t.views(), rows, cols, t.params);
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      dense->decode_rows(r, r + 1, row.data());
      for (int64_t i = out.row_start[r]; i < out.row_start[r + 1]; ++i) out.val[i] -= row[out.col[i]];
    }
    EncodedTensor sp = mdcsr_encode_entries(rows, cols, out, oparams, impm);
    for (auto& [n, a] : sp.arrays) t.arrays["sparse." + n] = std::move(a);
    CodecParams op = sp.params;
    op["fraction"] = param_num(oparams, name() + " outliers", "fraction", 0.01, 0.0, 0.5);
    t.params["outliers"] = op;
  }
  if (rot.on) t.params["rotate"] = {{"seed", rot.seed}, {"block", rot.block}};
  t.codec = name();
  return t;
}

std::unique_ptr<WeightMatrix> Codec::open(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                          const CodecParams& params) const {
  check_dims(name(), rows, cols);
  UPG_CHECK(params.is_null() || params.is_object(), name(), ": params must be a JSON object, found ", params.dump());
  const CodecParams p = params.is_object() ? params : CodecParams::object();
  std::unique_ptr<WeightMatrix> m = open_shared(arrays, rows, cols, p);
  m->set_stored(std::make_shared<const StoredTensor>(StoredTensor{name(), p, arrays}));
  return m;
}

std::unique_ptr<WeightMatrix> Codec::open_shared(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                                 const CodecParams& p) const {
  if (!supports_shared_options()) return open_core(arrays, rows, cols, p);
  const RotateOpt rot = read_rotate(p, name(), cols, false);
  std::unique_ptr<WeightMatrix> m = open_core(arrays, rows, cols, strip_shared(p));
  if (p.contains("outliers")) {
    std::unique_ptr<MdcsrMatrix> sp;
    try {
      sp = std::make_unique<MdcsrMatrix>(sparse_arrays(arrays), rows, cols, p.at("outliers"));
    } catch (const Error& e) {
      throw Error(str_cat(name(), " outliers (arrays 'sparse.*'): ", e.what()));
    }
    m = std::make_unique<SumMatrix>(std::move(m), std::move(sp));
  }
  if (rot.on) m = std::make_unique<RotatedMatrix>(std::move(m), rot);
  return m;
}

int64_t Codec::column_alignment(int64_t cols, const CodecParams& params) const {
  const CodecParams p = params.is_object() ? params : CodecParams::object();
  if (!supports_shared_options()) return column_alignment_core(cols, p);
  int64_t a = column_alignment_core(cols, strip_shared(p));
  const RotateOpt rot = read_rotate(p, name(), cols, false);
  if (rot.on) a = std::lcm(a, rot.block);  // a slice keeps whole rotation blocks
  return a;
}

EncodedTensor Codec::slice(const EncodedArrays& arrays, int64_t rows, int64_t cols, const CodecParams& params,
                           const MatrixBlock& b) const {
  check_dims(name(), rows, cols);
  UPG_CHECK(params.is_null() || params.is_object(), name(), ": params must be a JSON object, found ", params.dump());
  const CodecParams p = params.is_object() ? params : CodecParams::object();
  UPG_CHECK(0 <= b.r0 && b.r0 < b.r1 && b.r1 <= rows && 0 <= b.c0 && b.c0 < b.c1 && b.c1 <= cols, name(),
            ": slice rows [", b.r0, ", ", b.r1, ") x columns [", b.c0, ", ", b.c1, ") is not a non-empty block of the ",
            rows, " x ", cols, " matrix");
  const int64_t align = column_alignment(cols, p);
  UPG_CHECK(b.c0 % align == 0 && (b.c1 % align == 0 || b.c1 == cols), name(), ": a slice's columns must start and end on ",
            "multiples of ", align, " (its group and rotation block) or at the last column, not [", b.c0, ", ", b.c1, ")");
  EncodedTensor t;
  if (!supports_shared_options()) {
    t = slice_core(arrays, rows, cols, p, b);
  } else {
    t = slice_core(arrays, rows, cols, strip_shared(p), b);
    if (p.contains("outliers")) {
      EncodedTensor sp = mdcsr_slice(sparse_arrays(arrays), rows, cols, p.at("outliers"), b);
      for (auto& [n, a] : sp.arrays) t.arrays["sparse." + n] = std::move(a);
      t.params["outliers"] = p.at("outliers");
    }
    const RotateOpt rot = read_rotate(p, name(), cols, false);
    if (rot.on) t.params["rotate"] = {{"seed", rot.seed}, {"block", rot.block}, {"first_column", rot.first + b.c0}};
  }
  t.codec = name();
  return t;
}

namespace {

// Multiplies row r of a [rows, ...] F16/F32 array by mult[r] in place.
void scale_array_rows(Array& a, int64_t rows, const float* mult, const std::string& codec, const std::string& name) {
  UPG_CHECK(!a.shape.empty() && a.shape[0] == rows, codec, ": array '", name, "' of shape ", shape_str(a.shape),
            " does not have one entry per row (", rows, ")");
  UPG_CHECK(a.dtype == DType::F16 || a.dtype == DType::F32, codec, ": array '", name, "' is ", dtype_name(a.dtype),
            ", not F16 or F32");
  const int64_t per_row = shape_numel(a.shape) / rows;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = r * per_row; i < (r + 1) * per_row; ++i) {
      if (a.dtype == DType::F32) {
        const float v = load_le<float>(a.bytes.data(), static_cast<size_t>(i)) * mult[r];
        UPG_CHECK(std::isfinite(v), codec, ": array '", name, "' row ", r, ": the scaled value is not finite");
        store_le<float>(a.bytes.data(), static_cast<size_t>(i), v);
      } else {
        const float v = load_f16(a.bytes.data(), static_cast<size_t>(i)) * mult[r];
        UPG_CHECK(std::fabs(v) <= 65504.f, codec, ": array '", name, "' row ", r, ": the scaled value ", v,
                  " does not fit f16");
        store_le<uint16_t>(a.bytes.data(), static_cast<size_t>(i), f32_to_f16(v));
      }
    }
  }
}

}  // namespace

EncodedTensor Codec::scale_rows(const EncodedArrays& arrays, int64_t rows, int64_t cols, const CodecParams& params,
                                const float* mult) const {
  check_dims(name(), rows, cols);
  const std::vector<std::string> own = row_scale_arrays();
  UPG_CHECK(!own.empty(), name(), ": this codec has no per-row scales, so its rows cannot be scaled");
  for (int64_t r = 0; r < rows; ++r)
    UPG_CHECK(std::isfinite(mult[r]), name(), ": row multiplier ", r, " is not finite (", mult[r], ")");
  std::vector<std::string> scaled = own;
  if (supports_shared_options() && params.is_object() && params.contains("outliers")) {
    const MdcsrCodec sparse;
    for (const std::string& n : static_cast<const Codec&>(sparse).row_scale_arrays()) scaled.push_back("sparse." + n);
  }
  EncodedTensor t;
  t.codec = name();
  t.params = params.is_object() ? params : CodecParams::object();
  for (const auto& [n, v] : arrays) t.arrays[n] = copy_array(v);
  for (const std::string& n : scaled) {
    auto it = t.arrays.find(n);
    UPG_CHECK(it != t.arrays.end(), name(), ": array '", n, "' is missing");
    scale_array_rows(it->second, rows, mult, name(), n);
  }
  return t;
}

}  // namespace upg
