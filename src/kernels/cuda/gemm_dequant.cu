// Prompt processing (many tokens in one product): y (n x rows) = x (n x cols) W^T as a bf16
// tensor-core GEMM (cuBLAS, fp32 accumulation) over W decoded from its tiles (gemv_layout.h) to bf16,
// one block of rows at a time into a fixed scratch (GemmWorkspace; dequant_plan), so that each weight
// is decoded once per product however many tokens there are. x is rotated first when the codec is (fast
// Walsh-Hadamard transform, as the skinny path does) and converted to bf16.
//
// cuBLAS is opened at run time (dlopen of libcublas.so.<major of the toolkit built with>), so that
// binaries still need only the NVIDIA driver: without the library the workspace says why and products
// take the skinny path in chunks of 16 tokens (slower, same results within bf16 rounding).
#include <cublas_v2.h>  // types and signatures only; the library itself is opened with dlopen
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/gemv_layout.h"
#include "kernels/cuda/tiles_decode.cuh"

namespace upg::cuda {

namespace {

// ---- Tiles -> bf16 rows ---------------------------------------------------------------------------
struct ToBf16Args {
  const uint4* w;
  const void* scales;
  const uint4* lut;
  __nv_bfloat16* out;  // row (mt - mt0) * 16 + r, column c at out[row * ld + c]
  int64_t ld;
  int rows, S, mt0, mt1, tpb, spw, cb_tiles, lut_u4;
};

// Decodes one warp's tile (mt, s) from its lane words w and writes it, times its scales, as bf16 pairs
// to the rows and columns gemv_layout.h gives them.
template <int DEC, int BITS, int F, bool SF32, int U>
__device__ __forceinline__ void tile_to_bf16(const ToBf16Args& a, const uint32_t (&w)[4 * U], int mt, int s,
                                             uint32_t lut, uint32_t lane4, int g, int t) {
  constexpr int NWIN = F > 0 ? 16 / F : 1;
  const int64_t tile = static_cast<int64_t>(mt) * a.S + s;
  const int r0 = mt * kTileRows + g;  // rows r0 and r0 + 8 of W
  __nv_bfloat16* o0 = a.out + static_cast<int64_t>((mt - a.mt0) * kTileRows + g) * a.ld + kTileCols * s + 2 * t;
  __nv_bfloat16* o1 = o0 + 8 * a.ld;
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    uint32_t v[4];
    decode_kstep<DEC, BITS, U>(w, j, lut, lane4, v);
    if constexpr (F > 0) {
      float2 sc;
      if constexpr (SF32) {
        sc = reinterpret_cast<const float2*>(a.scales)[(tile * NWIN + j / F) * 8 + g];
      } else {
        sc = __half22float2(reinterpret_cast<const __half2*>(a.scales)[(tile * NWIN + j / F) * 8 + g]);
      }
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v[r]));
        const float k = (r & 1) ? sc.y : sc.x;
        const __nv_bfloat162 b = __floats2bfloat162_rn(f.x * k, f.y * k);
        v[r] = *reinterpret_cast<const uint32_t*>(&b);
      }
    }
    // Register r: row g + 8 (r & 1), columns 16 j + 2 t + 8 (r >> 1) + {0, 1}.
    if (r0 < a.rows) {
      *reinterpret_cast<uint32_t*>(o0 + 16 * j) = v[0];
      *reinterpret_cast<uint32_t*>(o0 + 16 * j + 8) = v[2];
    }
    if (r0 + 8 < a.rows) {
      *reinterpret_cast<uint32_t*>(o1 + 16 * j) = v[1];
      *reinterpret_cast<uint32_t*>(o1 + 16 * j + 8) = v[3];
    }
  }
}

// Grid: x = runs of tpb row tiles in [mt0, mt1), y = groups of warps x spw column slices. Warp w of a
// block takes slices s0 + w + k * warps (k < spw, s < S) of each of its block's row tiles, one tile
// (16 x 256 weights) at a time, and loads the next tile's words before it decodes the current one
// (packed codes up to 8 words per lane; bf16 tiles, 16, are not prefetched). The row-tile loop is
// block-uniform, so the level table of a codebook block is loaded when the row tile's block changes.
template <int DEC, int BITS, int F, bool SF32>
__global__ void __launch_bounds__(256) tiles_to_bf16_kernel(ToBf16Args a) {
  constexpr int U = units<DEC, BITS>();
  constexpr bool kPrefetch = U <= 8;
  __shared__ __align__(16) uint32_t lut_s[lut_words<DEC, BITS>()];
  const int warps = blockDim.x >> 5;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int s0 = blockIdx.y * warps * a.spw + warp;
  const int nk = s0 >= a.S ? 0 : min(a.spw, (a.S - 1 - s0) / warps + 1);  // this warp's slices per row tile
  const int m0 = a.mt0 + blockIdx.x * a.tpb, m1 = min(a.mt1, m0 + a.tpb);
  const uint32_t lane4 = static_cast<uint32_t>(lane) << 2;
  const uint32_t lut = static_cast<uint32_t>(__cvta_generic_to_shared(lut_s));
  const uint4* wl = a.w + lane;
  auto tile_words = [&](int mt, int k) { return wl + (static_cast<int64_t>(mt) * a.S + s0 + k * warps) * U * 32; };
  uint32_t w[4 * U];
  if (kPrefetch && nk > 0) load_tile<U>(tile_words(m0, 0), w);
  int cur_cb = -1;
  for (int mt = m0; mt < m1; ++mt) {
    if constexpr (DEC == static_cast<int>(Dec::Codebook)) {
      const int cb = mt / a.cb_tiles;
      if (cb != cur_cb) {  // block-uniform
        __syncthreads();
        const uint4* src = a.lut + static_cast<int64_t>(cb) * a.lut_u4;
        for (int i = threadIdx.x; i < a.lut_u4; i += blockDim.x) reinterpret_cast<uint4*>(lut_s)[i] = src[i];
        __syncthreads();
        cur_cb = cb;
      }
    }
    for (int k = 0; k < nk; ++k) {
      if constexpr (kPrefetch) {
        uint32_t wn[4 * U];
        const int nmt = k + 1 < nk ? mt : mt + 1, nkk = k + 1 < nk ? k + 1 : 0;
        if (nmt < m1) load_tile<U>(tile_words(nmt, nkk), wn);
        tile_to_bf16<DEC, BITS, F, SF32, U>(a, w, mt, s0 + k * warps, lut, lane4, g, t);
#pragma unroll
        for (int i = 0; i < 4 * U; ++i) w[i] = wn[i];
      } else {
        load_tile<U>(tile_words(mt, k), w);
        tile_to_bf16<DEC, BITS, F, SF32, U>(a, w, mt, s0 + k * warps, lut, lane4, g, t);
      }
    }
  }
}

__global__ void f32_to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ out, int64_t count) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = __float2bfloat16_rn(x[i]);
}

// ---- cuBLAS, opened at run time ------------------------------------------------------------------
using CreateFn = cublasStatus_t (*)(cublasHandle_t*);
using DestroyFn = cublasStatus_t (*)(cublasHandle_t);
using SetStreamFn = cublasStatus_t (*)(cublasHandle_t, cudaStream_t);
using GemmExFn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                                    const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                                    cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

#define UPG_STR2(x) #x
#define UPG_STR(x) UPG_STR2(x)

struct CublasLib {
  CreateFn create = nullptr;
  DestroyFn destroy = nullptr;
  SetStreamFn set_stream = nullptr;
  GemmExFn gemm = nullptr;
  std::string error;  // empty when loaded
};

const CublasLib& cublas_lib() {
  static const CublasLib lib = [] {
    CublasLib l;
    std::string tried;
    void* h = open_first_library({"libcublas.so." UPG_STR(CUBLAS_VER_MAJOR), "libcublas.so"}, &tried);
    if (!h) {
      l.error = str_cat("cuBLAS could not be opened (", tried, ")");
      return l;
    }
    l.create = reinterpret_cast<CreateFn>(dlsym(h, "cublasCreate_v2"));
    l.destroy = reinterpret_cast<DestroyFn>(dlsym(h, "cublasDestroy_v2"));
    l.set_stream = reinterpret_cast<SetStreamFn>(dlsym(h, "cublasSetStream_v2"));
    l.gemm = reinterpret_cast<GemmExFn>(dlsym(h, "cublasGemmEx"));
    if (!l.create || !l.destroy || !l.set_stream || !l.gemm) l.error = "cuBLAS lacks cublasCreate_v2/cublasGemmEx";
    return l;
  }();
  return lib;
}

void check_cublas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) throw Error(str_cat("cuBLAS: ", what, " failed with status ", static_cast<int>(st)));
}

using ToBf16Fn = void (*)(ToBf16Args);

ToBf16Fn pick_to_bf16(const DeviceMatrix::Impl& m) {
  return dispatch_tiles(m, [](auto dec, auto bits, auto fold, auto sf32) -> ToBf16Fn {
    return tiles_to_bf16_kernel<decltype(dec)::value, decltype(bits)::value, decltype(fold)::value,
                                decltype(sf32)::value>;
  });
}

}  // namespace

// ---- GemmWorkspace --------------------------------------------------------------------------------
struct GemmWorkspace::Impl {
  cublasHandle_t handle = nullptr;
  std::string why_not;
  DeviceBuffer wbuf, xrot, xb;
};

GemmWorkspace::GemmWorkspace(size_t weight_bytes) : impl_(new Impl) {
  weight_bytes_ = std::max<size_t>(weight_bytes, 1);  // at least one tile of rows is decoded at a time
  const CublasLib& l = cublas_lib();
  if (!l.error.empty()) {
    impl_->why_not = l.error;
    return;
  }
  if (const cublasStatus_t st = l.create(&impl_->handle); st != CUBLAS_STATUS_SUCCESS) {
    impl_->handle = nullptr;
    impl_->why_not = str_cat("cublasCreate failed with status ", static_cast<int>(st));
  }
}

GemmWorkspace::~GemmWorkspace() {
  if (impl_->handle) cublas_lib().destroy(impl_->handle);
  delete impl_;
}

bool GemmWorkspace::available() const { return impl_->handle != nullptr; }
std::string GemmWorkspace::why_not() const { return impl_->why_not; }
size_t GemmWorkspace::device_bytes() const { return impl_->wbuf.size() + impl_->xrot.size() + impl_->xb.size(); }

void DeviceMatrix::Impl::gemm(const float* x, int64_t n, float* y, bool accumulate, GemmWorkspace& ws,
                              void* stream) const {
  GemmWorkspace::Impl& g = *ws.impl_;
  const CublasLib& l = cublas_lib();
  const std::vector<DequantChunk> plan = dequant_plan(mtiles, S, ws.weight_bytes_);
  size_t wbytes = 0;
  for (const DequantChunk& c : plan)
    wbytes = std::max(wbytes, static_cast<size_t>((c.mt1 - c.mt0) * kTileRows * S * kTileCols * 2));
  if (g.wbuf.size() < wbytes) g.wbuf = DeviceBuffer(wbytes);
  const size_t xcount = static_cast<size_t>(n) * cols;
  if (g.xb.size() < xcount * 2) g.xb = DeviceBuffer(std::max(xcount * 2, 2 * g.xb.size()));
  const float* src = x;
  if (rot.on) {
    if (g.xrot.size() < xcount * 4) g.xrot = DeviceBuffer(std::max(xcount * 4, 2 * g.xrot.size()));
    hadamard_rotate(x, g.xrot.as<float>(), n, cols, signs.as<const float>(), rot.block, stream);
    src = g.xrot.as<const float>();
  }
  f32_to_bf16_kernel<<<static_cast<unsigned>((xcount + 255) / 256), 256, 0, as_stream(stream)>>>(
      src, g.xb.as<__nv_bfloat16>(), static_cast<int64_t>(xcount));
  UPG_CUDA_LAUNCHED("f32_to_bf16_kernel");
  check_cublas(l.set_stream(g.handle, as_stream(stream)), "cublasSetStream");

  const ToBf16Fn fn = dec == Dec::Trellis ? nullptr : pick_to_bf16(*this);
  ToBf16Args a;
  a.w = w.as<const uint4>();
  a.scales = scales.data();
  a.lut = lut.as<const uint4>();
  a.out = g.wbuf.as<__nv_bfloat16>();
  a.rows = static_cast<int>(rows);
  a.S = static_cast<int>(S);
  a.cb_tiles = static_cast<int>(cb_tiles > 0 ? cb_tiles : mtiles);
  a.lut_u4 = static_cast<int>(lut_bytes / 16);
  static const int env_tpb = [] { const char* e = std::getenv("UPG_CUDA_DEQUANT_TPB"); return e ? std::atoi(e) : 0; }();
  static const int env_spw = [] { const char* e = std::getenv("UPG_CUDA_DEQUANT_SPW"); return e ? std::atoi(e) : 0; }();
  // The tile decoder's launch shape: warps dividing S, each decoding tpb row tiles x spw slices. One
  // tile per warp (the default) gave the most blocks and the fastest prompts on an H100 (Phi-4 3.2
  // bpw pp512: 7,349 t/s against 7,200-7,286 with 2 x 2, 1 x 2, 4 x 2 and 7,125-7,139 for the earlier
  // kernel of 8 row tiles x 1 slice per warp, docs/PERFORMANCE-GPU.md). UPG_CUDA_DEQUANT_TPB / _SPW set them.
  const int tpb = ws.decode_tpb_ > 0 ? ws.decode_tpb_ : env_tpb > 0 ? env_tpb : 1;
  const int spw = ws.decode_spw_ > 0 ? ws.decode_spw_ : env_spw > 0 ? env_spw : 1;
  const float one = 1.f, beta = accumulate ? 1.f : 0.f;
  const int64_t ld = S * kTileCols;
  const int warps = warps_dividing(S, 8);
  a.ld = ld;
  a.spw = static_cast<int>(std::clamp<int64_t>(spw, 1, (S + warps - 1) / warps));
  for (const DequantChunk& c : plan) {
    const int64_t r0 = c.mt0 * kTileRows, r1 = std::min(rows, c.mt1 * kTileRows);
    if (dec == Dec::Trellis) {
      launch_trellis_to_bf16(*this, r0, r1, g.wbuf.data(), ld, stream);
    } else {
      a.mt0 = static_cast<int>(c.mt0), a.mt1 = static_cast<int>(c.mt1);
      a.tpb = static_cast<int>(std::clamp<int64_t>(tpb, 1, c.mt1 - c.mt0));
      const dim3 grid(static_cast<unsigned>((c.mt1 - c.mt0 + a.tpb - 1) / a.tpb),
                      static_cast<unsigned>((S + warps * a.spw - 1) / (warps * a.spw)));
      fn<<<grid, warps * 32, 0, as_stream(stream)>>>(a);
      UPG_CUDA_LAUNCHED("tiles_to_bf16_kernel");
    }
    // Column-major view: y^T (rows x n, ld rows) = W_chunk (as k x m, transposed) * x^T (k x n).
    check_cublas(l.gemm(g.handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(r1 - r0), static_cast<int>(n),
                        static_cast<int>(cols), &one, g.wbuf.data(), CUDA_R_16BF, static_cast<int>(ld), g.xb.data(),
                        CUDA_R_16BF, static_cast<int>(cols), &beta, y + r0, CUDA_R_32F, static_cast<int>(rows),
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  }
}

}  // namespace upg::cuda
