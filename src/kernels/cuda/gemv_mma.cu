// Skinny GEMM y (n x rows) = x (n x cols) W^T for n <= 16, straight from the packed weights in the
// "tiles" layout of gemv_layout.h (codebook 2-6 bits, int8, bf16), with bf16 tensor-core MMAs.
//
// Grid: blockIdx.y = a chunk of W consecutive 256-column slices (one warp per slice), blockIdx.x = a
// run of `tpb` consecutive 16-row tiles. Each warp keeps its slice of x (B fragments, read from fp32 x
// and rounded to bf16 once per product) in registers for all its tiles; per tile it loads its 128 weights with U
// coalesced 16-byte loads (the next tile's loads are issued before the current tile's maths when U is
// small), turns code pairs into bf16x2 A registers through a level-pair table in shared memory
// (replicated per bank, so lookups never conflict), runs 16 MMAs per n-tile and folds each scale
// window into fp32 sums. The W warps' partial sums meet in shared memory (double-buffered, one
// barrier per tile); a block writes y, or adds into it atomically when the columns are split over
// several blocks (y is zeroed first). Launched as a dependent launch (pdl.cuh): the first tile's
// weights and level table are read while the previous kernel finishes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/gemv_layout.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/tiles_decode.cuh"

namespace upg::cuda {

namespace {

struct TilesArgs {
  const uint4* w;
  const void* scales;
  const uint4* lut;  // nb tables of lut_u4 uint4 each
  const float* x;  // n x cols, fp32 (rotated already when the codec is)
  float* y;
  int rows, cols, S, mtiles, n, tpb, warps, cb_tiles, lut_u4;
  int period;       // row tiles whose partial sums are reduced together (one barrier per period)
  bool atomic;      // add into y with atomics (the columns are split over blocks)
  bool accumulate;  // y += x W^T (else y = x W^T; with atomics y was zeroed first)
};

// REGS: registers per thread at most. One n-tile: 96 (the compiler would use 128, allowed for
// blocks of up to 512 threads; at 96 a block of 8-10 warps leaves room for a second, and the 2-4-bit
// codebook and int8 kernels need no spills). Measured on an H100 (bench_cuda_gemv, 2026-12-06):
// 96 against 128, kernel time: 17920x5120 3-bit 0.0229 vs 0.0266 ms, 4-bit 0.0267 vs 0.0328,
// int8 0.0424 vs 0.0476; 5120x5120 within 1-7% either way; 5120x17920 3-bit 0.0265 vs 0.0255. 80
// and 64 were no better (64 spills 60-80 bytes and was slower everywhere).
// UPG_CUDA_GEMV_REGS=128 picks the uncapped variant (to compare).
template <int DEC, int BITS, int NT, int F, bool SF32, int REGS>
__global__ void __maxnreg__(REGS) tiles_gemm(TilesArgs args) {
  constexpr int U = units<DEC, BITS>();
  constexpr bool kPrefetch = U <= 6;
  constexpr int NWIN = F > 0 ? 16 / F : 1;
  __shared__ __align__(16) uint32_t lut_s[lut_words<DEC, BITS>()];
  extern __shared__ float red_s[];  // [2][period][warps][16][NT * 8]

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int s = blockIdx.y * args.warps + warp;
  const bool active = s < args.S;
  const int mt0 = blockIdx.x * args.tpb, mt1 = min(args.mtiles, mt0 + args.tpb);
  const uint32_t lane4 = static_cast<uint32_t>(lane) << 2;
  const uint32_t lut = static_cast<uint32_t>(__cvta_generic_to_shared(lut_s));

  // Before the previous kernel has finished (pdl.cuh): the first tile's weights and level table,
  // which no kernel of the step writes. Then wait for it, and let the next kernel start.
  uint32_t wcur[4 * U], wnext[4 * U];
  auto tile_ptr = [&](int mt) { return args.w + (static_cast<int64_t>(mt) * args.S + s) * U * 32 + lane; };
  if (active && mt0 < mt1) load_tile<U>(tile_ptr(mt0), kPrefetch ? wnext : wcur);
  int cur_cb = -1;
  if constexpr (DEC == static_cast<int>(Dec::Codebook)) {
    if (mt0 < mt1) {  // block-uniform
      cur_cb = mt0 / args.cb_tiles;
      const uint4* src = args.lut + static_cast<int64_t>(cur_cb) * args.lut_u4;
      for (int i = threadIdx.x; i < args.lut_u4; i += blockDim.x) reinterpret_cast<uint4*>(lut_s)[i] = src[i];
      __syncthreads();
    }
  }
  pdl_wait();
  pdl_launch_dependents();

  // This warp's slice of x: B registers of its 16 k-steps, per n-tile, read straight from fp32 x
  // (register (j, h) = bf16x2 of x[8 nt + g][256 s + 16 j + 2 t + 8 h + {0, 1}], zero past n or cols).
  uint32_t b[NT][16][2];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int row = nt * 8 + g;
    const bool has = active && row < args.n;
    const int k_lane = kTileCols * s + 2 * t;
    const float* xr = args.x + static_cast<int64_t>(has ? row : 0) * args.cols + k_lane;
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int k0 = k_lane + 16 * j + 8 * h;
        const float lo = has && k0 < args.cols ? xr[16 * j + 8 * h] : 0.f;
        const float hi = has && k0 + 1 < args.cols ? xr[16 * j + 8 * h + 1] : 0.f;
        const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        b[nt][j][h] = *reinterpret_cast<const uint32_t*>(&v);
      }
  }

  for (int mt = mt0, it = 0; mt < mt1; ++mt, ++it) {
    if constexpr (DEC == static_cast<int>(Dec::Codebook)) {
      const int cb = mt / args.cb_tiles;
      if (cb != cur_cb) {  // block-uniform
        __syncthreads();
        const uint4* src = args.lut + static_cast<int64_t>(cb) * args.lut_u4;
        for (int i = threadIdx.x; i < args.lut_u4; i += blockDim.x) reinterpret_cast<uint4*>(lut_s)[i] = src[i];
        __syncthreads();
        cur_cb = cb;
      }
    }
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
    if (active) {
      if constexpr (kPrefetch) {
#pragma unroll
        for (int i = 0; i < 4 * U; ++i) wcur[i] = wnext[i];
        if (mt + 1 < mt1) load_tile<U>(tile_ptr(mt + 1), wnext);
      } else if (mt != mt0) {  // the first tile was loaded before the wait
        load_tile<U>(tile_ptr(mt), wcur);
      }
      const int64_t tile = static_cast<int64_t>(mt) * args.S + s;
      if constexpr (F == 0) {  // dense: no scales
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          uint32_t a[4];
          decode_kstep<DEC, BITS, U>(wcur, j, lut, lane4, a);
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) mma_bf16(acc[nt], a, b[nt][j][0], b[nt][j][1]);
        }
      } else {
        float2 sc[NWIN];
#pragma unroll
        for (int wi = 0; wi < NWIN; ++wi) {
          if constexpr (SF32) {
            sc[wi] = reinterpret_cast<const float2*>(args.scales)[(tile * NWIN + wi) * 8 + g];
          } else {
            sc[wi] = __half22float2(reinterpret_cast<const __half2*>(args.scales)[(tile * NWIN + wi) * 8 + g]);
          }
        }
#pragma unroll
        for (int wi = 0; wi < NWIN; ++wi) {
          float c[NT][4];
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) c[nt][0] = c[nt][1] = c[nt][2] = c[nt][3] = 0.f;
#pragma unroll
          for (int jj = 0; jj < F; ++jj) {
            uint32_t a[4];
            decode_kstep<DEC, BITS, U>(wcur, wi * F + jj, lut, lane4, a);
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) mma_bf16(c[nt], a, b[nt][wi * F + jj][0], b[nt][wi * F + jj][1]);
          }
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            acc[nt][0] = fmaf(c[nt][0], sc[wi].x, acc[nt][0]);
            acc[nt][1] = fmaf(c[nt][1], sc[wi].x, acc[nt][1]);
            acc[nt][2] = fmaf(c[nt][2], sc[wi].y, acc[nt][2]);
            acc[nt][3] = fmaf(c[nt][3], sc[wi].y, acc[nt][3]);
          }
        }
      }
    }
    // Partial sums of the block's warps meet in shared memory: the tiles of a group of `period`
    // consecutive tiles in slots of their own, reduced (and written to y) after one barrier per
    // group; groups alternate between two halves of the buffer, so no second barrier is needed.
    constexpr int NC = NT * 8;
    const int slot = it % args.period, half = (it / args.period) & 1;
    const int slot_floats = args.warps * 16 * NC;
    float* red = red_s + (half * args.period + slot) * slot_floats;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      float* r0 = red + (warp * 16 + g) * NC + nt * 8 + 2 * t;
      float* r1 = red + (warp * 16 + g + 8) * NC + nt * 8 + 2 * t;
      r0[0] = acc[nt][0], r0[1] = acc[nt][1], r1[0] = acc[nt][2], r1[1] = acc[nt][3];
    }
    if (slot == args.period - 1 || mt + 1 == mt1) {  // block-uniform
      __syncthreads();
      const float* group = red_s + half * args.period * slot_floats;
      const int first = mt - slot;
      for (int i = threadIdx.x; i < (slot + 1) * 16 * NC; i += blockDim.x) {
        const int q = i / (16 * NC), row = (i / NC) % 16, col = i % NC, grow = (first + q) * kTileRows + row;
        if (col >= args.n || grow >= args.rows) continue;
        float sum = 0.f;
        for (int wi = 0; wi < args.warps; ++wi) sum += group[q * slot_floats + (wi * 16 + row) * NC + col];
        float* dst = args.y + static_cast<int64_t>(col) * args.rows + grow;
        if (args.atomic) atomicAdd(dst, sum);
        else if (args.accumulate) *dst += sum;
        else *dst = sum;
      }
    }
  }
}

__global__ void zero_kernel(float* y, int64_t count) {
  pdl_wait();  // the previous kernel may still read y
  pdl_launch_dependents();
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = 0.f;
}

using KernelFn = void (*)(TilesArgs);

// Shared memory for the warps' partial sums: the period is chosen so that they and the level table
// take about kReduceBudget; kSmemCap bounds any launch (the largest slot, 16 warps x 16 rows x 16
// columns, twice).
constexpr size_t kReduceBudget = size_t{40} << 10;
constexpr size_t kSmemCap = size_t{64} << 10;

bool uncapped_env() {
  static const bool v = [] {
    const char* e = std::getenv("UPG_CUDA_GEMV_REGS");
    return e && std::atoi(e) == 128;
  }();
  return v;
}

template <int NT>
KernelFn pick(const DeviceMatrix::Impl& m) {
  const bool uncapped = uncapped_env();
  return dispatch_tiles(m, [uncapped](auto dec, auto bits, auto fold, auto sf32) -> KernelFn {
    constexpr int D = decltype(dec)::value, B = decltype(bits)::value, F = decltype(fold)::value;
    constexpr bool S = decltype(sf32)::value;
    if constexpr (NT == 1) {
      return uncapped ? tiles_gemm<D, B, NT, F, S, 128> : tiles_gemm<D, B, NT, F, S, 96>;
    } else {
      return tiles_gemm<D, B, NT, F, S, 255>;
    }
  });
}

}  // namespace

void launch_tiles_gemm(const DeviceMatrix::Impl& m, const float* x, int64_t n, float* y, bool accumulate, void* stream) {
  UPG_CHECK(n >= 1 && n <= 16, "tiles_gemm: n = ", n, " must be 1..16");
  const int NT = n > 8 ? 2 : 1;
  DeviceMatrix::Impl::LaunchCfg& c = m.cfg[NT - 1];
  if (!c.fn) {
    const KernelFn fn = NT == 1 ? pick<1>(m) : pick<2>(m);
    int warps = warps_dividing(m.S, NT == 1 ? 16 : 8);
    // UPG_CUDA_GEMV_WARPS=W (one n-tile): the divisor of S nearest W, up to 32, to compare (W >= S: one
    // block over all of a row tile's column slices, so no atomics and no zeroing of y first).
    if (const char* e = std::getenv("UPG_CUDA_GEMV_WARPS"); e && NT == 1) {
      const long v = std::atol(e);
      int best = 0;
      for (int w = 1; w <= std::min<int64_t>(32, m.S); ++w)
        if (m.S % w == 0 && (best == 0 || std::abs(w - v) <= std::abs(best - v))) best = w;
      if (v > 0 && best > 0) warps = best;
    }
    const int64_t kchunks = (m.S + warps - 1) / warps;
    // Tiles per reduction group: as many as fit beside the level table in about 40 KB (at least one).
    const size_t slot_bytes = static_cast<size_t>(warps) * 16 * NT * 8 * sizeof(float);
    const size_t table = m.dec == Dec::Codebook ? m.lut_bytes : 0;
    int64_t period = std::clamp<int64_t>(static_cast<int64_t>((table < kReduceBudget ? kReduceBudget - table : 0) /
                                                              (2 * slot_bytes)), 1, 8);
    // UPG_CUDA_GEMV_FLUSH: a fixed period instead (1: a barrier per tile, the earlier kernel), to compare.
    if (const char* e = std::getenv("UPG_CUDA_GEMV_FLUSH")) period = std::clamp<long>(std::atol(e), 1, 8);
    while (period > 1 && 2 * period * slot_bytes > kSmemCap) --period;
    const size_t smem = 2 * static_cast<size_t>(period) * slot_bytes;
    // The attribute is per kernel function, shared by every matrix using it: set it to the most any
    // launch here asks for, never to this matrix's smem (a smaller matrix would lower it below what
    // a larger one launched with, and that launch would fail with "invalid argument").
    UPG_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmemCap)));
    int dev = 0, sms = 0, per_sm = 0;
    UPG_CUDA_CHECK(cudaGetDevice(&dev));
    UPG_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    UPG_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, warps * 32, smem));
    const int64_t resident = std::max<int64_t>(1, static_cast<int64_t>(per_sm) * sms);
    // Row tiles per block: the count whose blocks fill the resident slots best, by a model of the
    // time as waves x (tiles per block + a start-up of about two tiles: x's fragments, the level
    // table, the first loads). A last wave that is mostly empty costs as much as a full one.
    c.tpb = 1;
    int64_t best = -1;
    for (int64_t tpb = 1; tpb <= 64; ++tpb) {
      const int64_t blocks = (m.mtiles + tpb - 1) / tpb * kchunks, waves = (blocks + resident - 1) / resident;
      const int64_t cost = waves * (std::min(tpb, m.mtiles) + 2);
      if (best < 0 || cost < best) best = cost, c.tpb = tpb;
    }
    // UPG_CUDA_GEMV_TPB: a fixed count instead, or 0 for the earlier rule (about two waves), to compare.
    if (const char* e = std::getenv("UPG_CUDA_GEMV_TPB")) {
      const long v = std::atol(e);
      c.tpb = v > 0 ? std::min<int64_t>(v, 64) : std::clamp<int64_t>((m.mtiles * kchunks) / (2 * resident), 1, 64);
    }
    c.warps = warps, c.kchunks = kchunks, c.smem = smem, c.period = static_cast<int>(period);
    c.fn = reinterpret_cast<const void*>(fn);
  }
  const KernelFn fn = reinterpret_cast<KernelFn>(const_cast<void*>(c.fn));
  const int warps = c.warps, threads = warps * 32;
  const int64_t kchunks = c.kchunks, tpb = c.tpb;
  const size_t smem = c.smem;
  TilesArgs a;
  a.w = m.w.as<const uint4>();
  a.scales = m.scales.data();
  a.lut = m.lut.as<const uint4>();
  a.x = x;
  a.cols = static_cast<int>(m.cols);
  a.y = y;
  a.rows = static_cast<int>(m.rows);
  a.S = static_cast<int>(m.S);
  a.mtiles = static_cast<int>(m.mtiles);
  a.n = static_cast<int>(n);
  a.tpb = static_cast<int>(tpb);
  a.warps = warps;
  a.cb_tiles = static_cast<int>(m.cb_tiles > 0 ? m.cb_tiles : m.mtiles);
  a.lut_u4 = static_cast<int>(m.lut_bytes / 16);
  a.period = c.period;
  a.atomic = kchunks > 1;
  a.accumulate = accumulate;
  // y zeroed by a kernel, not a memset node, so that the product can start beside it (pdl.cuh).
  if (a.atomic && !accumulate) {
    const int64_t count = n * m.rows;
    launch_pdl("zero_kernel", zero_kernel, dim3(static_cast<unsigned>(std::min<int64_t>((count + 255) / 256, 1024))),
               dim3(256), 0, stream, y, count);
  }
  const dim3 grid(static_cast<unsigned>((m.mtiles + tpb - 1) / tpb), static_cast<unsigned>(kchunks));
  if (const cudaError_t e = try_launch_pdl(fn, grid, dim3(threads), smem, stream, a); e != cudaSuccess)
    throw Error(str_cat("CUDA: tiles_gemm launch failed (", m.rows, " x ", m.cols, ", n ", n, ", grid ", grid.x, " x ",
                        grid.y, ", ", threads, " threads, ", smem, " bytes of shared memory): ", cudaGetErrorString(e)));
}

}  // namespace upg::cuda
