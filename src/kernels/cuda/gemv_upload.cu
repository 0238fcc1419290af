// Upload of a codec's stored arrays into the GPU "tiles" layout (gemv_layout.h), done once on the host
// (OpenMP over tiles), and DeviceMatrix itself. Params the packed kernel does not take (codebook bits
// outside 2..6, a group that is not a multiple of 16, codebook blocks that split a 16-row tile, or
// too many level tables) are decoded to bf16 at upload instead: right, but 16 bits per weight.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/half.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/gemv_layout.h"
#include "kernels/cuda/hadamard.cuh"
#include "kernels/rotation_signs.h"
#include "kernels/trellis_code.h"

namespace upg::cuda {

namespace {

// Lane value c of a tile -> (row, col) inside the tile (the MMA A-fragment order).
inline void lane_pos(int lane, int c, int& row, int& col) {
  const int j = c >> 3, reg = (c >> 1) & 3, e = c & 1, g = lane >> 2, t = lane & 3;
  row = g + 8 * (reg & 1);
  col = 16 * j + 2 * t + 8 * (reg >> 1) + e;
}

uint16_t load_u16(const uint8_t* p, int64_t i) {
  uint16_t v;
  std::memcpy(&v, p + 2 * i, 2);
  return v;
}
float load_f32(const uint8_t* p, int64_t i) {
  float v;
  std::memcpy(&v, p + 4 * i, 4);
  return v;
}

void init_shape(DeviceMatrix::Impl& m, int64_t rows, int64_t cols) {
  UPG_CHECK(rows > 0 && cols > 0 && rows < (int64_t{1} << 31) && cols < (int64_t{1} << 31),
            "cuda upload: bad shape ", rows, " x ", cols);
  m.rows = rows, m.cols = cols;
  m.mtiles = (rows + kTileRows - 1) / kTileRows;
  m.S = (cols + kTileCols - 1) / kTileCols;
}

// Packs the lane streams: value(r, c) -> `bits`-bit field (bits = 8: int8 byte, 16: bf16 word).
template <class Value>
std::vector<uint32_t> pack_tiles(const DeviceMatrix::Impl& m, int bits, Value value) {
  const int U = bits * kLaneValues / 128;  // uint4 per lane
  std::vector<uint32_t> out(static_cast<size_t>(m.mtiles * m.S) * U * 32 * 4, 0u);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t tile = 0; tile < m.mtiles * m.S; ++tile) {
    const int64_t mt = tile / m.S, s = tile % m.S;
    uint32_t lw[4 * 16];
    for (int lane = 0; lane < 32; ++lane) {
      std::memset(lw, 0, sizeof lw);
      for (int c = 0; c < kLaneValues; ++c) {
        int row, col;
        lane_pos(lane, c, row, col);
        const int64_t r = mt * kTileRows + row, k = s * kTileCols + col;
        if (r >= m.rows || k >= m.cols) continue;
        const uint64_t v = value(r, k);
        const int bit = c * bits;
        lw[bit >> 5] |= static_cast<uint32_t>(v << (bit & 31));
        if ((bit & 31) + bits > 32) lw[(bit >> 5) + 1] |= static_cast<uint32_t>(v >> (32 - (bit & 31)));
      }
      for (int w = 0; w < 4 * U; ++w)
        out[((static_cast<size_t>(tile) * U + w / 4) * 32 + lane) * 4 + w % 4] = lw[w];
    }
  }
  return out;
}

// Scales per fold window: [tile][window][g] pairs (row g, row g + 8). `scale(r, group)` gives the raw
// value (f16 bits or f32 bits); G the group (columns per scale).
template <class T, class Scale>
std::vector<T> pack_scales(const DeviceMatrix::Impl& m, int64_t G, Scale scale) {
  const int nw = 16 / m.fold;
  std::vector<T> out(static_cast<size_t>(m.mtiles * m.S) * nw * 8 * 2, T{0});
#pragma omp parallel for
  for (int64_t tile = 0; tile < m.mtiles * m.S; ++tile) {
    const int64_t mt = tile / m.S, s = tile % m.S;
    for (int w = 0; w < nw; ++w)
      for (int g = 0; g < 8; ++g) {
        const int64_t col = s * kTileCols + static_cast<int64_t>(w) * 16 * m.fold;
        for (int h = 0; h < 2; ++h) {
          const int64_t r = mt * kTileRows + g + 8 * h;
          if (r < m.rows && col < m.cols) out[((static_cast<size_t>(tile) * nw + w) * 8 + g) * 2 + h] = scale(r, col / G);
        }
      }
  }
  return out;
}

template <class T>
DeviceBuffer to_device(const std::vector<T>& v) {
  DeviceBuffer b(v.size() * sizeof(T));
  b.upload(v.data(), v.size() * sizeof(T));
  return b;
}

void set_rotation(DeviceMatrix::Impl& m, const RotateParams& rot) {
  m.rot = rot;
  if (!rot.on) return;
  UPG_CHECK(rotation_block_fits(rot.block, m.cols),
            "cuda upload: rotation block ", rot.block, " must be a power of two <= 4096 dividing cols ", m.cols);
  m.signs = to_device(upg::rotation_signs(rot.seed, m.cols, rot.first));
}

// Dense bf16 tiles from a row-major fp32 source (also the fallback for unsupported params).
template <class Get>
void build_dense(DeviceMatrix::Impl& m, Get get_bf16) {
  m.dec = Dec::Bf16;
  m.fold = 0;
  m.units = 16;
  m.w = to_device(pack_tiles(m, 16, get_bf16));
}

}  // namespace

void DeviceMatrix::Impl::alloc_scratch() {
  xrot = DeviceBuffer(rot.on ? static_cast<size_t>(16) * cols * sizeof(float) : 0);
}

const float* DeviceMatrix::Impl::source(const float* x, int64_t n, void* stream) const {
  if (!rot.on) return x;
  hadamard_rotate(x, xrot.as<float>(), n, cols, signs.as<const float>(), rot.block, stream);
  return xrot.as<const float>();
}

void DeviceMatrix::Impl::multiply(const float* src, int64_t n, float* y, bool accumulate, void* stream) const {
  if (dec == Dec::Trellis)
    launch_trellis_gemv(*this, src, n, y, accumulate, stream);
  else
    launch_tiles_gemm(*this, src, n, y, accumulate, stream);
}

void DeviceMatrix::Impl::product(const float* x, int64_t n, float* y, bool accumulate, void* stream,
                                 GemmWorkspace* gemm_ws, int64_t gemm_min_tokens) const {
  UPG_CHECK(n >= 1, "DeviceMatrix::matmul: n = ", n);
  const bool ready = rotated_x == x && rotated_n == n && n <= 16;
  rotated_x = nullptr;
  if (ready) {  // x R is in xrot already (input_rotated)
    multiply(xrot.as<const float>(), n, y, accumulate, stream);
    return;
  }
  if (gemm_ws && n > 16 && n >= gemm_min_tokens && gemm_ws->available()) {
    gemm(x, n, y, accumulate, *gemm_ws, stream);
    return;
  }
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t m = std::min<int64_t>(16, n - i);
    multiply(source(x + i * cols, m, stream), m, y + i * rows, accumulate, stream);
  }
}

DeviceMatrix DeviceMatrix::upload(const CodebookHost& w) {
  DeviceMatrix out;
  Impl& m = *out.impl_;
  init_shape(m, w.rows, w.cols);
  UPG_CHECK(w.bits >= 1 && w.bits <= 8 && w.group >= 8 && w.group % 8 == 0, "cuda upload: codebook bits ", w.bits,
            " / group ", w.group, " out of range");
  const int k = w.bits;
  const int64_t G = w.group, ng = (w.cols + G - 1) / G, RB = (w.cols * k + 7) / 8;
  const int64_t CB = w.codebook_rows > 0 ? std::min(w.codebook_rows, w.rows) : w.rows;
  const int64_t nb = (w.rows + CB - 1) / CB;
  const int nl = 1 << k;
  auto code = [&](int64_t r, int64_t j) -> uint32_t {
    const int64_t bit = j * k, byte = bit >> 3;
    uint32_t v = w.qweight[r * RB + byte];
    if (byte + 1 < RB) v |= static_cast<uint32_t>(w.qweight[r * RB + byte + 1]) << 8;
    return (v >> (bit & 7)) & (nl - 1);
  };
  auto level = [&](int64_t r, uint32_t c) { return load_f32(w.codebook, (r / CB) * nl + c); };
  const size_t one_lut = static_cast<size_t>(k <= 4 ? (1 << (2 * k)) : (1 << k)) * 32 * 4;
  const size_t packed = static_cast<size_t>(w.rows) * w.cols * k / 8;
  const bool fast = k >= 2 && k <= 6 && G % 16 == 0 && (nb == 1 || CB % kTileRows == 0) &&
                    (nb == 1 || nb * one_lut <= std::max<size_t>(packed / 4, size_t{1} << 20));
  set_rotation(m, w.rotate);
  if (!fast) {
    build_dense(m, [&](int64_t r, int64_t j) -> uint64_t {
      return f32_to_bf16(f16_to_f32(load_u16(w.scales, r * ng + j / G)) * level(r, code(r, j)));
    });
    m.layout = str_cat("bf16-tiles (codebook ", k, "-bit g", G, " decoded at upload)");
  } else {
    m.dec = Dec::Codebook;
    m.bits = k;
    m.units = k;
    m.fold = G % 64 == 0 ? 4 : 1;
    m.w = to_device(pack_tiles(m, k, code));
    m.scales = to_device(pack_scales<uint16_t>(m, G, [&](int64_t r, int64_t gi) { return load_u16(w.scales, r * ng + gi); }));
    // Level tables, replicated per bank (gemv_layout.h).
    m.nb = nb;
    m.cb_tiles = nb == 1 ? m.mtiles : CB / kTileRows;
    m.lut_bytes = one_lut;
    std::vector<uint32_t> lut(static_cast<size_t>(nb) * one_lut / 4);
    for (int64_t b = 0; b < nb; ++b) {
      uint32_t* t = lut.data() + b * one_lut / 4;
      const int entries = static_cast<int>(one_lut / 128);
      for (int e = 0; e < entries; ++e) {
        uint32_t v;
        if (k <= 4) {
          v = f32_to_bf16(load_f32(w.codebook, b * nl + (e & (nl - 1)))) |
              static_cast<uint32_t>(f32_to_bf16(load_f32(w.codebook, b * nl + (e >> k)))) << 16;
        } else {
          v = f32_to_bf16(load_f32(w.codebook, b * nl + e));
        }
        for (int l = 0; l < 32; ++l) t[e * 32 + l] = v;
      }
    }
    m.lut = to_device(lut);
    m.layout = str_cat("codebook", k, "-tiles");
  }
  m.alloc_scratch();
  return out;
}

DeviceMatrix DeviceMatrix::upload(const Int8Host& w) {
  DeviceMatrix out;
  Impl& m = *out.impl_;
  init_shape(m, w.rows, w.cols);
  const int64_t G = w.group > 0 ? w.group : w.cols, ng = (w.cols + G - 1) / G;
  auto scale_f = [&](int64_t r, int64_t gi) {
    return w.f16_scales ? f16_to_f32(load_u16(w.scales, r * ng + gi)) : load_f32(w.scales, r * ng + gi);
  };
  auto q = [&](int64_t r, int64_t c) { return static_cast<int8_t>(w.qweight[r * w.cols + c]); };
  set_rotation(m, w.rotate);
  if (G % 16 != 0) {
    build_dense(m, [&](int64_t r, int64_t c) -> uint64_t { return f32_to_bf16(q(r, c) * scale_f(r, c / G)); });
    m.layout = str_cat("bf16-tiles (int8 g", G, " decoded at upload)");
  } else {
    m.dec = Dec::Int8;
    m.units = 8;
    m.fold = G % 64 == 0 ? 4 : 1;
    m.scale_f32 = !w.f16_scales;
    m.w = to_device(pack_tiles(m, 8, [&](int64_t r, int64_t c) -> uint64_t { return static_cast<uint8_t>(q(r, c)); }));
    if (w.f16_scales)
      m.scales = to_device(pack_scales<uint16_t>(m, G, [&](int64_t r, int64_t gi) { return load_u16(w.scales, r * ng + gi); }));
    else
      m.scales = to_device(pack_scales<float>(m, G, [&](int64_t r, int64_t gi) { return load_f32(w.scales, r * ng + gi); }));
    m.layout = "int8-tiles";
  }
  m.alloc_scratch();
  return out;
}

DeviceMatrix DeviceMatrix::upload(const TrellisHost& w) {
  DeviceMatrix out;
  Impl& m = *out.impl_;
  init_shape(m, w.rows, w.cols);
  const int K = w.bits, L = w.state_bits;
  UPG_CHECK(K >= 1 && K <= trellis::kMaxBits && L > K && L <= 16 && w.group >= 8 && w.group % 8 == 0, "cuda upload: trellis bits ", K,
            " / state_bits ", L, " / group ", w.group, " out of range");
  UPG_CHECK(w.cols < (int64_t{1} << 30), "cuda upload: trellis rows of ", w.cols, " columns (the kernels index columns in int)");
  const int64_t RB = (L + (w.cols - 1) * K + 7) / 8, ng = (w.cols + w.group - 1) / w.group;
  // Words per row: the stream, then at least 2 words of zeros (a lane reads 3 words from its first), to 16 bytes.
  const int64_t pitch = ((RB + 3) / 4 + 2 + 3) / 4 * 4;
  std::vector<uint32_t> words(static_cast<size_t>(w.rows * pitch), 0u);
#pragma omp parallel for
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t b = 0; b < RB; ++b)
      words[r * pitch + b / 4] |= static_cast<uint32_t>(w.qweight[r * RB + b]) << (8 * (3 - b % 4));
  m.dec = Dec::Trellis;
  m.bits = K, m.state_bits = L, m.group = w.group, m.pitch = pitch;
  m.fold = 0;
  m.w = to_device(words);
  const size_t scale_bytes = static_cast<size_t>(w.rows * ng) * 2;  // F16 as stored, little-endian
  m.scales = DeviceBuffer(scale_bytes);
  m.scales.upload(w.scales, scale_bytes);
  set_rotation(m, w.rotate);
  m.layout = str_cat("trellis", K, "-rows");
  m.alloc_scratch();
  return out;
}

DeviceMatrix DeviceMatrix::upload(const DenseHost& w) {
  DeviceMatrix out;
  Impl& m = *out.impl_;
  init_shape(m, w.rows, w.cols);
  UPG_CHECK(w.dtype >= 0 && w.dtype <= 2, "cuda upload: dense dtype ", w.dtype, " must be 0 (bf16), 1 (f16), 2 (f32)");
  build_dense(m, [&](int64_t r, int64_t c) -> uint64_t {
    const int64_t i = r * w.cols + c;
    if (w.dtype == 0) return load_u16(w.data, i);
    if (w.dtype == 1) return f32_to_bf16(f16_to_f32(load_u16(w.data, i)));
    return f32_to_bf16(load_f32(w.data, i));
  });
  m.layout = "bf16-tiles";
  m.alloc_scratch();
  return out;
}

DeviceMatrix::DeviceMatrix() : impl_(new Impl) {}
DeviceMatrix::~DeviceMatrix() { delete impl_; }
DeviceMatrix::DeviceMatrix(DeviceMatrix&& o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
DeviceMatrix& DeviceMatrix::operator=(DeviceMatrix&& o) noexcept {
  if (this != &o) {
    delete impl_;
    impl_ = o.impl_;
    o.impl_ = nullptr;
  }
  return *this;
}

DeviceMatrix DeviceMatrix::clone() const {
  DeviceMatrix out;
  Impl& m = *out.impl_;
  const Impl& s = *impl_;
  auto copy = [](const DeviceBuffer& b) {
    DeviceBuffer c(b.size());
    if (b.size()) UPG_CUDA_CHECK(cudaMemcpy(c.data(), b.data(), b.size(), cudaMemcpyDeviceToDevice));
    return c;
  };
  m.dec = s.dec, m.bits = s.bits, m.fold = s.fold, m.scale_f32 = s.scale_f32;
  m.state_bits = s.state_bits, m.group = s.group, m.pitch = s.pitch;
  m.rows = s.rows, m.cols = s.cols, m.mtiles = s.mtiles, m.S = s.S, m.units = s.units;
  m.w = copy(s.w), m.scales = copy(s.scales), m.lut = copy(s.lut);
  m.nb = s.nb, m.cb_tiles = s.cb_tiles, m.lut_bytes = s.lut_bytes, m.rot = s.rot, m.signs = copy(s.signs);
  m.layout = s.layout;
  m.alloc_scratch();
  return out;
}

int64_t DeviceMatrix::rows() const { return impl_->rows; }
int64_t DeviceMatrix::cols() const { return impl_->cols; }
std::string DeviceMatrix::layout() const { return impl_->layout; }
size_t DeviceMatrix::device_bytes() const { return impl_->w.size() + impl_->scales.size() + impl_->lut.size(); }

void DeviceMatrix::matmul(const float* x, int64_t n, float* y, void* stream, GemmWorkspace* gemm,
                          int64_t gemm_min_tokens) const {
  impl_->product(x, n, y, false, stream, gemm, gemm_min_tokens);
}
void DeviceMatrix::matmul_add(const float* x, int64_t n, float* y, void* stream, GemmWorkspace* gemm,
                              int64_t gemm_min_tokens) const {
  impl_->product(x, n, y, true, stream, gemm, gemm_min_tokens);
}
DeviceMatrix::InputRotation DeviceMatrix::input_rotation() const {
  if (!impl_->rot.on) return {};
  return {impl_->signs.as<const float>(), impl_->rot.block, impl_->xrot.as<float>()};
}
void DeviceMatrix::input_rotated(const float* x, int64_t n) const {
  UPG_CHECK(!x || (impl_->rot.on && n >= 1 && n <= 16), "DeviceMatrix::input_rotated: n = ", n,
            " (rotated: ", impl_->rot.on, ")");
  impl_->rotated_x = x;
  impl_->rotated_n = n;
}
void DeviceMatrix::prepare(const float* x, int64_t n, void* stream) const {
  UPG_CHECK(n >= 1 && n <= 16, "DeviceMatrix::prepare: n = ", n, " must be 1..16");
  impl_->prepared = impl_->source(x, n, stream);
}
void DeviceMatrix::multiply_prepared(int64_t n, float* y, void* stream) const {
  UPG_CHECK(impl_->prepared, "DeviceMatrix::multiply_prepared: prepare() first");
  impl_->multiply(impl_->prepared, n, y, false, stream);
}

}  // namespace upg::cuda
