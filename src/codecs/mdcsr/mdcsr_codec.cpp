// mdcsr encoder, validation and reference decode; the sparse matmul and decode-to-bf16 call
// kernels/cpu/sparse_kernels.h. Layout: see mdcsr_codec.h.
#include "codecs/mdcsr/mdcsr_codec.h"

#include <algorithm>
#include <cmath>

#include "codecs/codebook/levels.h"
#include "codecs/codec_util.h"

namespace upg {

namespace {

const char* kName = "mdcsr";

// Appends the escape-coded gap (>= 1) to the delta stream.
void put_gap(std::vector<uint8_t>& out, int64_t gap) {
  while (gap > 255) {
    out.push_back(0);
    gap -= 255;
  }
  out.push_back(static_cast<uint8_t>(gap));
}

// Reads one gap starting at p (< end); advances p. Returns -1 if the stream ends inside an escape.
inline int64_t get_gap(const uint8_t*& p, const uint8_t* end) {
  int64_t gap = 0;
  while (p < end && *p == 0) {
    gap += 255;
    ++p;
  }
  if (p == end) return -1;
  return gap + *p++;
}

}  // namespace

EncodedTensor mdcsr_encode_entries(int64_t rows, int64_t cols, const SparseEntries& e,
                                   const CodecParams& params, const float* importance) {
  const std::string mode = param_str(params, kName, "values", "int8", {"int8", "levels"});
  const int64_t num_levels = param_int(params, kName, "num_levels", 256, 1, 65536);
  UPG_CHECK(static_cast<int64_t>(e.row_start.size()) == rows + 1, kName, ": entry list has ",
            e.row_start.size(), " row starts, expected ", rows + 1);
  const int64_t nnz = static_cast<int64_t>(e.col.size());
  std::vector<float> scales(rows, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float amax = 0.0f;
    for (int64_t i = e.row_start[r]; i < e.row_start[r + 1]; ++i) amax = std::max(amax, std::fabs(e.val[i]));
    scales[r] = mode == "int8" ? amax / 127.0f : amax;
  }

  EncodedTensor out;
  out.codec = kName;
  Array values;
  if (mode == "int8") {
    values = make_array(DType::I8, {nnz});
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = e.row_start[r]; i < e.row_start[r + 1]; ++i) {
        float q = scales[r] > 0 ? std::nearbyint(e.val[i] / scales[r]) : 0.0f;
        values.bytes[i] = static_cast<uint8_t>(static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f)));
      }
  } else {
    // Normalised values u = v / scale in [-1, 1]; squared error in weight units is
    // importance * scale^2 * (u - level)^2, so those are the k-means weights.
    std::vector<float> u(nnz), w(nnz);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = e.row_start[r]; i < e.row_start[r + 1]; ++i) {
        u[i] = scales[r] > 0 ? e.val[i] / scales[r] : 0.0f;
        float h = importance ? importance[e.col[i]] : 1.0f;
        w[i] = h * scales[r] * scales[r] + 1e-30f;
      }
    std::vector<float> init(num_levels);
    for (int64_t i = 0; i < num_levels; ++i)
      init[i] = num_levels == 1 ? 0.0f : -1.0f + 2.0f * static_cast<float>(i) / (num_levels - 1);
    std::vector<float> lv = kmeans_1d(u.data(), w.data(), u.size(), init, 30);
    Array levels = make_array(DType::F32, {num_levels});
    for (int64_t i = 0; i < num_levels; ++i) store_le<float>(levels.bytes.data(), i, lv[i]);
    out.arrays["levels"] = std::move(levels);
    values = make_array(DType::U16, {nnz});
    for (int64_t i = 0; i < nnz; ++i)
      store_le<uint16_t>(values.bytes.data(), i,
                         static_cast<uint16_t>(nearest_level(lv.data(), static_cast<int>(num_levels), u[i])));
  }

  std::vector<uint8_t> deltas;
  Array row_ptr = make_array(DType::U32, {2, rows + 1});
  for (int64_t r = 0; r < rows; ++r) {
    store_le<uint32_t>(row_ptr.bytes.data(), r, static_cast<uint32_t>(e.row_start[r]));
    store_le<uint32_t>(row_ptr.bytes.data(), rows + 1 + r, static_cast<uint32_t>(deltas.size()));
    int64_t prev = -1;
    for (int64_t i = e.row_start[r]; i < e.row_start[r + 1]; ++i) {
      UPG_CHECK(e.col[i] > prev && e.col[i] < cols, kName, ": entry columns must increase within a row");
      put_gap(deltas, e.col[i] - prev);
      prev = e.col[i];
    }
  }
  UPG_CHECK(nnz <= 0xffffffffLL && deltas.size() <= 0xffffffffULL, kName,
            ": too many entries for u32 row pointers (", nnz, ")");
  store_le<uint32_t>(row_ptr.bytes.data(), rows, static_cast<uint32_t>(nnz));
  store_le<uint32_t>(row_ptr.bytes.data(), 2 * rows + 1, static_cast<uint32_t>(deltas.size()));

  Array col_delta = make_array(DType::U8, {static_cast<int64_t>(deltas.size())});
  std::copy(deltas.begin(), deltas.end(), col_delta.bytes.begin());
  Array sc = make_array(DType::F32, {rows});
  for (int64_t r = 0; r < rows; ++r) store_le<float>(sc.bytes.data(), r, scales[r]);
  out.arrays["values"] = std::move(values);
  out.arrays["col_delta"] = std::move(col_delta);
  out.arrays["row_ptr"] = std::move(row_ptr);
  out.arrays["scales"] = std::move(sc);
  out.params = {{"values", mode}};
  if (mode == "levels") out.params["num_levels"] = num_levels;
  return out;
}

EncodedTensor MdcsrCodec::encode_core(const float* W, int64_t rows, int64_t cols,
                                      const CodecParams& params, const float* importance) const {
  const bool by_threshold = params.is_object() && params.contains("threshold");
  const double threshold = param_num(params, kName, "threshold", 0.0, 0.0, INFINITY);
  const double keep = param_num(params, kName, "keep_fraction", 0.1, 0.0, 1.0);
  const int64_t total = rows * cols;
  std::vector<uint8_t> kept(total, 0);
  if (by_threshold) {
    for (int64_t i = 0; i < total; ++i) kept[i] = std::fabs(W[i]) > threshold;
  } else {
    // Keep the `count` entries with the largest |w| * sqrt(importance); ties in row-major order.
    const int64_t count = std::llround(keep * static_cast<double>(total));
    std::vector<float> score(total);
    for (int64_t i = 0; i < total; ++i)
      score[i] = std::fabs(W[i]) * (importance ? std::sqrt(importance[i % cols]) : 1.0f);
    if (count > 0) {
      std::vector<float> tmp = score;
      std::nth_element(tmp.begin(), tmp.begin() + (count - 1), tmp.end(), std::greater<float>());
      const float cut = tmp[count - 1];
      int64_t above = 0;
      for (int64_t i = 0; i < total; ++i) above += score[i] > cut;
      int64_t ties = count - above;
      for (int64_t i = 0; i < total; ++i) {
        if (score[i] > cut) kept[i] = 1;
        else if (score[i] == cut && ties > 0) { kept[i] = 1; --ties; }
      }
    }
  }
  SparseEntries e;
  e.row_start.assign(rows + 1, 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c)
      if (kept[r * cols + c]) {
        e.col.push_back(static_cast<int32_t>(c));
        e.val.push_back(W[r * cols + c]);
      }
    e.row_start[r + 1] = static_cast<int64_t>(e.col.size());
  }
  EncodedTensor t = mdcsr_encode_entries(rows, cols, e, params, importance);
  if (by_threshold) t.params["threshold"] = threshold;
  else t.params["keep_fraction"] = keep;
  return t;
}

EncodedTensor mdcsr_slice(const EncodedArrays& arrays, int64_t rows, int64_t /*cols*/, const CodecParams& params,
                          const MatrixBlock& b) {
  const bool levels = param_str(params, kName, "values", "int8", {"int8", "levels"}) == "levels";
  const size_t vs = levels ? 2 : 1;
  const ArrayView& rp = require_array(arrays, kName, "row_ptr", DType::U32, {2, rows + 1});
  const ArrayView& cd = require_vector(arrays, kName, "col_delta", DType::U8);
  const ArrayView& vals = require_vector(arrays, kName, "values", levels ? DType::U16 : DType::I8);
  const ArrayView& sc = require_array(arrays, kName, "scales", DType::F32, {rows});
  const int64_t n = b.r1 - b.r0;
  std::vector<uint8_t> deltas, values;
  Array row_ptr = make_array(DType::U32, {2, n + 1});
  for (int64_t r = b.r0; r < b.r1; ++r) {
    const uint8_t* p = cd.data + load_le<uint32_t>(rp.data, rows + 1 + r);
    const uint8_t* end = cd.data + load_le<uint32_t>(rp.data, rows + 1 + r + 1);
    int64_t i = load_le<uint32_t>(rp.data, r), c = -1, prev = -1;
    while (p < end) {
      c += get_gap(p, end);
      if (c >= b.c0 && c < b.c1) {
        put_gap(deltas, c - b.c0 - prev);
        prev = c - b.c0;
        values.insert(values.end(), vals.data + i * vs, vals.data + (i + 1) * vs);
      }
      ++i;
    }
    store_le<uint32_t>(row_ptr.bytes.data(), r - b.r0 + 1, static_cast<uint32_t>(values.size() / vs));
    store_le<uint32_t>(row_ptr.bytes.data(), n + 1 + r - b.r0 + 1, static_cast<uint32_t>(deltas.size()));
  }
  EncodedTensor t;
  t.codec = kName;
  t.params = params;
  Array v = make_array(levels ? DType::U16 : DType::I8, {static_cast<int64_t>(values.size() / vs)});
  v.bytes = std::move(values);
  Array d = make_array(DType::U8, {static_cast<int64_t>(deltas.size())});
  d.bytes = std::move(deltas);
  Array s = make_array(DType::F32, {n});
  std::memcpy(s.bytes.data(), sc.data + b.r0 * 4, static_cast<size_t>(n) * 4);
  t.arrays["row_ptr"] = std::move(row_ptr);
  t.arrays["col_delta"] = std::move(d);
  t.arrays["values"] = std::move(v);
  t.arrays["scales"] = std::move(s);
  if (levels) {
    const ArrayView& lv = require_vector(arrays, kName, "levels", DType::F32);
    Array l = make_array(DType::F32, lv.shape);
    std::memcpy(l.bytes.data(), lv.data, lv.nbytes);
    t.arrays["levels"] = std::move(l);
  }
  return t;
}

std::unique_ptr<WeightMatrix> MdcsrCodec::open_core(const EncodedArrays& arrays, int64_t rows,
                                                    int64_t cols, const CodecParams& params) const {
  return std::make_unique<MdcsrMatrix>(arrays, rows, cols, params);
}

MdcsrMatrix::MdcsrMatrix(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                         const CodecParams& params)
    : WeightMatrix(rows, cols) {
  check_dims(kName, rows, cols);
  const std::string mode = param_str(params, kName, "values", "int8", {"int8", "levels"});
  use_levels_ = mode == "levels";
  const ArrayView& rp = require_array(arrays, kName, "row_ptr", DType::U32, {2, rows + 1});
  const ArrayView& cd = require_vector(arrays, kName, "col_delta", DType::U8);
  const ArrayView& vals = require_vector(arrays, kName, "values", use_levels_ ? DType::U16 : DType::I8);
  const ArrayView& sc = require_array(arrays, kName, "scales", DType::F32, {rows});
  row_ptr_ = rp.data;
  col_delta_ = cd.data;
  values_ = vals.data;
  scales_ = sc.data;
  nnz_ = vals.shape[0];
  delta_bytes_ = cd.shape[0];
  if (use_levels_) {
    const ArrayView& lv = require_vector(arrays, kName, "levels", DType::F32);
    num_levels_ = lv.shape[0];
    UPG_CHECK(num_levels_ >= 1 && num_levels_ <= 65536, kName, ": array 'levels' has ", num_levels_,
              " entries, expected 1..65536");
    levels_ = lv.data;
    for (int64_t i = 0; i < nnz_; ++i)
      UPG_CHECK(load_le<uint16_t>(values_, i) < num_levels_, kName, ": array 'values' entry ", i,
                " = ", load_le<uint16_t>(values_, i), " indexes past 'levels' (", num_levels_, " entries)");
  }
  // Row pointers: both halves start at 0, never decrease, end at the array lengths.
  const int64_t ends[2] = {nnz_, delta_bytes_};
  const char* what[2] = {"values", "col_delta"};
  for (int h = 0; h < 2; ++h) {
    const uint8_t* p = row_ptr_ + h * (rows + 1) * 4;
    UPG_CHECK(load_le<uint32_t>(p, 0) == 0, kName, ": array 'row_ptr' [", h, "][0] must be 0");
    for (int64_t r = 0; r < rows; ++r)
      UPG_CHECK(load_le<uint32_t>(p, r) <= load_le<uint32_t>(p, r + 1), kName, ": array 'row_ptr' [",
                h, "] decreases at row ", r);
    UPG_CHECK(load_le<uint32_t>(p, rows) == ends[h], kName, ": array 'row_ptr' [", h, "][", rows,
              "] = ", load_le<uint32_t>(p, rows), ", expected the length of '", what[h], "' (", ends[h], ")");
  }
  // Every row's delta bytes must decode to exactly its entry count, all columns < cols.
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* p = col_delta_ + load_le<uint32_t>(row_ptr_, rows + 1 + r);
    const uint8_t* end = col_delta_ + load_le<uint32_t>(row_ptr_, rows + 1 + r + 1);
    const int64_t count = load_le<uint32_t>(row_ptr_, r + 1) - load_le<uint32_t>(row_ptr_, r);
    int64_t c = -1, k = 0;
    while (p < end) {
      int64_t gap = get_gap(p, end);
      UPG_CHECK(gap > 0, kName, ": array 'col_delta' row ", r, " ends inside an escape");
      c += gap;
      UPG_CHECK(c < cols, kName, ": array 'col_delta' row ", r, " reaches column ", c, " >= cols (", cols, ")");
      ++k;
    }
    UPG_CHECK(k == count, kName, ": array 'col_delta' row ", r, " holds ", k,
              " columns but 'row_ptr' gives it ", count, " values");
  }
}

size_t MdcsrMatrix::stored_bytes() const {
  return static_cast<size_t>(rows_ + 1) * 8 + delta_bytes_ + nnz_ * (use_levels_ ? 2 : 1) +
         rows_ * 4 + num_levels_ * 4;
}

inline float MdcsrMatrix::value(int64_t i, float scale) const {
  if (use_levels_) return load_le<float>(levels_, load_le<uint16_t>(values_, i)) * scale;
  return static_cast<float>(static_cast<int8_t>(values_[i])) * scale;
}

// Reference: walks each row's delta stream and scatters into a zeroed dense row.
void MdcsrMatrix::decode_rows(int64_t r0, int64_t r1, float* out) const {
  std::fill(out, out + (r1 - r0) * cols_, 0.0f);
  for (int64_t r = r0; r < r1; ++r) {
    const float s = load_le<float>(scales_, r);
    const uint8_t* p = col_delta_ + load_le<uint32_t>(row_ptr_, rows_ + 1 + r);
    const uint8_t* end = col_delta_ + load_le<uint32_t>(row_ptr_, rows_ + 1 + r + 1);
    int64_t i = load_le<uint32_t>(row_ptr_, r), c = -1;
    while (p < end) {
      c += get_gap(p, end);
      out[(r - r0) * cols_ + c] = value(i++, s);
    }
  }
}

kernels::MdcsrView MdcsrMatrix::view() const {
  kernels::MdcsrView v;
  v.rows = rows_;
  v.cols = cols_;
  v.row_ptr = row_ptr_;
  v.col_delta = col_delta_;
  v.values = values_;
  v.scales = scales_;
  v.levels = use_levels_ ? levels_ : nullptr;
  return v;
}

// Fast path: kernels/cpu/sparse_kernels.h, tested against decode_rows in test_kernels_codecs.
void MdcsrMatrix::add_matmul(const float* x, int64_t n, float* y) const { kernels::mdcsr_add_matmul(view(), x, n, y); }

void MdcsrMatrix::decode_rows_bf16(int64_t r0, int64_t r1, uint16_t* out) const {
  UPG_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows_, kName, ": rows [", r0, ", ", r1, ") out of range [0, ", rows_, ")");
  kernels::mdcsr_decode_bf16(view(), r0, r1, out);
}

void MdcsrMatrix::matmul(const float* x, int64_t n, float* y) const {
  std::fill(y, y + n * rows_, 0.0f);
  add_matmul(x, n, y);
}

}  // namespace upg
