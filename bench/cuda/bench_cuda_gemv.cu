// Benchmark of the packed skinny GEMM of upg_cuda (src/kernels/cuda/gemv_mma.cu, host API cuda_ops.h)
// on Phi-4 shapes: 5120x5120 (o_proj), 17920x5120 (half of gate_up), 5120x17920 (down_proj), for
// codebook 2-6 bits (group 64), int8 (group 128) and dense bf16 in the same tile layout; beside
// cuBLAS bf16 GEMV (cublasGemmEx, fp32 compute) on the same shape and a device-to-device copy, the
// measured memory roofline (bytes read + written).
// Per row: median time of a call, timed as replays of a CUDA graph of `reps` calls (batch 1: the
// whole matmul; "kernel" = the product alone, the kernel reading fp32 x itself, y zeroing included
// when columns are split; they differ only for rotated codecs),
// GB/s of stored bytes read (codes + scales + tables), that as a share of the copy bandwidth, batch-16
// time, cuBLAS time. Every weight set is copied on the device until the copies exceed 4x the L2 cache,
// and calls rotate over the copies. Before timing, 16 sampled rows of y are checked against a host
// reference (bf16 tolerance). Usage: bench_cuda_gemv [reps=200]
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "kernels/trellis_code.h"
#include "kernels/cuda/cuda_ops.h"

namespace cu = upg::cuda;

#define CK(x)                                                                                    \
  do {                                                                                           \
    cudaError_t e_ = (x);                                                                        \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));   \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)
#define CB(x)                                                                    \
  do {                                                                           \
    cublasStatus_t s_ = (x);                                                     \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                           \
      std::fprintf(stderr, "%s:%d: %s: cublas status %d\n", __FILE__, __LINE__, #x, (int)s_); \
      std::exit(1);                                                              \
    }                                                                            \
  } while (0)

static std::mt19937 rng(12345);

// Median over `trials` of (time of `reps` calls) / reps, in ms; call(i) launches call number i.
static double time_ms(const std::function<void(int)>& call, int reps, int trials = 5) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 5; ++i) call(i);
  CK(cudaDeviceSynchronize());
  std::vector<double> t;
  for (int k = 0; k < trials; ++k) {
    CK(cudaEventRecord(a));
    for (int i = 0; i < reps; ++i) call(i);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / reps);
  }
  CK(cudaGetLastError());
  std::sort(t.begin(), t.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return t[t.size() / 2];
}

// The same for calls that each take a few microseconds: `reps` calls captured once in a CUDA graph
// (as a decode step would be), the graph replayed `trials` times; median replay time / reps, in ms.
// Without the graph, the host's launch overhead would be timed instead of the GPU.
static double time_graph_ms(const std::function<void(int, cudaStream_t)>& call, cudaStream_t st, int reps,
                            int trials = 7) {
  for (int i = 0; i < 3; ++i) call(i, st);  // warm-up: launch configurations are set up outside the capture
  CK(cudaStreamSynchronize(st));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < reps; ++i) call(i, st);
  CK(cudaStreamEndCapture(st, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, st));
  CK(cudaStreamSynchronize(st));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int k = 0; k < trials; ++k) {
    CK(cudaEventRecord(a, st));
    CK(cudaGraphLaunch(ge, st));
    CK(cudaEventRecord(b, st));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / reps);
  }
  CK(cudaGetLastError());
  std::sort(t.begin(), t.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  return t[t.size() / 2];
}

struct Weights {  // host arrays as the codec stores them
  std::string name;
  std::vector<uint8_t> q, scales, codebook;
  std::function<float(int64_t, int64_t)> w;  // reference weight (r, c)
  std::function<cu::DeviceMatrix()> upload;
};

// count f16 scales 0.01 * N(0, 1) (signed, like the codecs'), as little-endian bytes.
static void random_f16_scales(std::vector<uint8_t>& out, int64_t count) {
  out.resize(count * 2);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t i = 0; i < count; ++i) {
    const uint16_t s = upg::f32_to_f16(0.01f * nd(rng));
    std::memcpy(&out[2 * i], &s, 2);
  }
}

// The make_* functions fill h in place (its lambdas refer to h, which must not move afterwards).
static void make_codebook(Weights& h, int64_t rows, int64_t cols, int bits, int G) {
  h.name = "codebook " + std::to_string(bits) + "-bit g" + std::to_string(G);
  const int64_t RB = (cols * bits + 7) / 8, ng = (cols + G - 1) / G;
  h.q.resize(rows * RB);
  for (auto& b : h.q) b = static_cast<uint8_t>(rng());
  random_f16_scales(h.scales, rows * ng);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> lv(1 << bits);
  for (auto& v : lv) v = nd(rng);
  std::sort(lv.begin(), lv.end());
  h.codebook.resize(lv.size() * 4);
  std::memcpy(h.codebook.data(), lv.data(), h.codebook.size());
  h.w = [&h, RB, ng, bits, G, lv](int64_t r, int64_t c) {
    uint32_t code = 0;
    for (int t = 0; t < bits; ++t) {
      const int64_t bit = c * bits + t;
      code |= ((h.q[r * RB + bit / 8] >> (bit % 8)) & 1u) << t;
    }
    uint16_t s;
    std::memcpy(&s, &h.scales[2 * (r * ng + c / G)], 2);
    return upg::f16_to_f32(s) * lv[code];
  };
  h.upload = [&h, rows, cols, bits, G] {
    return cu::DeviceMatrix::upload(cu::CodebookHost{h.q.data(), h.scales.data(), h.codebook.data(), rows, cols, bits, G, 0, {}});
  };
}

static void make_int8(Weights& h, int64_t rows, int64_t cols, int G) {
  h.name = "int8 g" + std::to_string(G);
  const int64_t ng = (cols + G - 1) / G;
  h.q.resize(rows * cols);
  for (auto& b : h.q) b = static_cast<uint8_t>(static_cast<int>(rng() % 255) - 127);
  h.scales.resize(rows * ng * 2);
  for (int64_t i = 0; i < rows * ng; ++i) {
    const uint16_t s = upg::f32_to_f16(1e-4f * (1 + rng() % 100));
    std::memcpy(&h.scales[2 * i], &s, 2);
  }
  h.w = [&h, cols, ng, G](int64_t r, int64_t c) {
    uint16_t s;
    std::memcpy(&s, &h.scales[2 * (r * ng + c / G)], 2);
    return static_cast<int8_t>(h.q[r * cols + c]) * upg::f16_to_f32(s);
  };
  h.upload = [&h, rows, cols, G] {
    return cu::DeviceMatrix::upload(cu::Int8Host{h.q.data(), h.scales.data(), true, rows, cols, G, {}});
  };
}

// Trellis K bits, L = 12 (the converter's), one scale per G columns; random streams (every stream
// is a valid trellis row).
static void make_trellis(Weights& h, int64_t rows, int64_t cols, int bits, int G) {
  const int L = 12;
  h.name = "trellis " + std::to_string(bits) + "-bit g" + std::to_string(G);
  const int64_t RB = (L + (cols - 1) * bits + 7) / 8, ng = (cols + G - 1) / G;
  h.q.resize(rows * RB);
  for (auto& b : h.q) b = static_cast<uint8_t>(rng());
  random_f16_scales(h.scales, rows * ng);
  h.w = [&h, RB, ng, bits, G, L](int64_t r, int64_t c) {
    uint32_t state = 0;
    for (int t = 0; t < L; ++t) {
      const int64_t bit = c * bits + t;
      state = state << 1 | ((h.q[r * RB + bit / 8] >> (7 - bit % 8)) & 1u);
    }
    uint16_t s;
    std::memcpy(&s, &h.scales[2 * (r * ng + c / G)], 2);
    return upg::f16_to_f32(s) * upg::trellis::code(state);
  };
  h.upload = [&h, rows, cols, bits, G, L] {
    return cu::DeviceMatrix::upload(cu::TrellisHost{h.q.data(), h.scales.data(), rows, cols, bits, L, G, {}});
  };
}

static void make_bf16(Weights& h, int64_t rows, int64_t cols) {
  h.name = "bf16 (tiles)";
  h.q.resize(rows * cols * 2);
  std::normal_distribution<float> nd(0.f, 0.02f);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const uint16_t v = upg::f32_to_bf16(nd(rng));
    std::memcpy(&h.q[2 * i], &v, 2);
  }
  h.w = [&h, cols](int64_t r, int64_t c) {
    uint16_t v;
    std::memcpy(&v, &h.q[2 * (r * cols + c)], 2);
    return upg::bf16_to_f32(v);
  };
  h.upload = [&h, rows, cols] { return cu::DeviceMatrix::upload(cu::DenseHost{h.q.data(), 0, rows, cols}); };
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 200;
  std::string why;
  if (cu::device_count(&why) == 0) {
    std::printf("no CUDA device: %s\n", why.c_str());
    return 1;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s\n", cu::device_name(0).c_str());
  const size_t l2 = prop.l2CacheSize;

  // Copy roofline: 1 GiB device-to-device, bytes read + written.
  const size_t cbytes = size_t{1} << 30;
  void *src, *dst;
  CK(cudaMalloc(&src, cbytes));
  CK(cudaMalloc(&dst, cbytes));
  CK(cudaMemset(src, 1, cbytes));
  const double copy_ms = time_ms([&](int) { CK(cudaMemcpyAsync(dst, src, cbytes, cudaMemcpyDeviceToDevice)); }, 10);
  const double copy_gbs = 2.0 * cbytes / (copy_ms * 1e-3) / 1e9;
  CK(cudaFree(src));
  CK(cudaFree(dst));
  std::printf("device-to-device copy: %.0f GB/s (read + written)\n\n", copy_gbs);

  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cublasHandle_t cublas;
  CB(cublasCreate(&cublas));
  CB(cublasSetStream(cublas, st));
  void* cublas_ws;
  CK(cudaMalloc(&cublas_ws, 64 << 20));
  CB(cublasSetWorkspace(cublas, cublas_ws, 64 << 20));
  struct Shape {
    int64_t rows, cols;
    const char* what;
  };
  const Shape shapes[] = {{5120, 5120, "o_proj"}, {17920, 5120, "gate_up/2"}, {5120, 17920, "down_proj"}};
  std::printf("| shape | weights | layout | stored MB | batch 1 ms | kernel ms | GB/s | of copy | batch 16 ms | cuBLAS bf16 ms (b1) | cuBLAS b16 ms | check |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Shape& sh : shapes) {
    // cuBLAS peer: dense bf16 W (rows x cols, row-major = column-major cols x rows), y = W x.
    const size_t wb = static_cast<size_t>(sh.rows) * sh.cols * 2;
    const int ncopies_b = static_cast<int>(std::max<size_t>(2, (4 * l2 + wb - 1) / wb));
    std::vector<void*> dw(ncopies_b);
    std::vector<uint16_t> hw(static_cast<size_t>(sh.rows) * sh.cols);
    for (auto& v : hw) v = upg::f32_to_bf16(0.02f * (static_cast<float>(rng() % 2001) / 1000.f - 1.f));
    for (auto& p : dw) {
      CK(cudaMalloc(&p, wb));
      CK(cudaMemcpy(p, hw.data(), wb, cudaMemcpyHostToDevice));
    }
    hw.clear();
    hw.shrink_to_fit();
    void *xb, *yb;
    CK(cudaMalloc(&xb, sh.cols * 16 * 2));
    CK(cudaMalloc(&yb, sh.rows * 16 * 4));
    std::vector<uint16_t> hx(sh.cols * 16);
    for (auto& v : hx) v = upg::f32_to_bf16(static_cast<float>(rng() % 2001) / 1000.f - 1.f);
    CK(cudaMemcpy(xb, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice));
    const float one = 1.f, zero = 0.f;
    auto cublas_call = [&](int i, int n) {
      CB(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(sh.rows), n, static_cast<int>(sh.cols), &one,
                      dw[i % ncopies_b], CUDA_R_16BF, static_cast<int>(sh.cols), xb, CUDA_R_16BF,
                      static_cast<int>(sh.cols), &zero, yb, CUDA_R_32F, static_cast<int>(sh.rows), CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT));
    };
    const double cublas1 = time_graph_ms([&](int i, cudaStream_t) { cublas_call(i, 1); }, st, reps);
    const double cublas16 = time_graph_ms([&](int i, cudaStream_t) { cublas_call(i, 16); }, st, reps);
    for (auto p : dw) CK(cudaFree(p));
    CK(cudaFree(xb));
    CK(cudaFree(yb));

    std::vector<std::function<void(Weights&)>> makers;
    for (int bits = 2; bits <= 6; ++bits) makers.push_back([&, bits](Weights& h) { make_codebook(h, sh.rows, sh.cols, bits, 64); });
    for (int bits = 2; bits <= 4; ++bits) makers.push_back([&, bits](Weights& h) { make_trellis(h, sh.rows, sh.cols, bits, 512); });
    makers.push_back([&](Weights& h) { make_int8(h, sh.rows, sh.cols, 128); });
    makers.push_back([&](Weights& h) { make_bf16(h, sh.rows, sh.cols); });
    for (auto& make : makers) {
      Weights h;
      make(h);
      std::vector<cu::DeviceMatrix> mats;
      mats.push_back(h.upload());
      const size_t bytes = mats[0].device_bytes();
      const int ncopies = static_cast<int>(std::max<size_t>(2, (4 * l2 + bytes - 1) / bytes));
      for (int i = 1; i < ncopies; ++i) mats.push_back(mats[0].clone());
      // x (16 x cols fp32) and y.
      std::vector<float> x(static_cast<size_t>(16) * sh.cols);
      for (auto& v : x) v = static_cast<float>(rng() % 2001) / 1000.f - 1.f;
      cu::DeviceBuffer dx(x.size() * 4), dy(static_cast<size_t>(16) * sh.rows * 4);
      dx.upload(x.data(), x.size() * 4);
      // Check 16 sampled rows of batch 16 (every copy computes the same).
      mats[ncopies - 1].matmul(dx.as<float>(), 16, dy.as<float>());
      std::vector<float> y(static_cast<size_t>(16) * sh.rows);
      dy.download(y.data(), y.size() * 4);
      int bad = 0;
      for (int k = 0; k < 16; ++k) {
        const int64_t r = static_cast<int64_t>(rng() % sh.rows);
        for (int i = 0; i < 16; ++i) {
          double ref = 0, mag = 0;
          for (int64_t c = 0; c < sh.cols; ++c) {
            const double p = static_cast<double>(h.w(r, c)) * x[i * sh.cols + c];
            ref += p, mag += std::fabs(p);
          }
          if (!(std::fabs(y[i * sh.rows + r] - ref) <= 0.0079 * mag + 1e-6)) ++bad;
        }
      }
      auto call1 = [&](int i, cudaStream_t s) { mats[i % ncopies].matmul(dx.as<float>(), 1, dy.as<float>(), s); };
      auto kern1 = [&](int i, cudaStream_t s) { mats[i % ncopies].multiply_prepared(1, dy.as<float>(), s); };
      auto call16 = [&](int i, cudaStream_t s) { mats[i % ncopies].matmul(dx.as<float>(), 16, dy.as<float>(), s); };
      for (auto& m : mats) m.prepare(dx.as<float>(), 1);
      cu::synchronize();
      const double k1 = time_graph_ms(kern1, st, reps);
      const double t1 = time_graph_ms(call1, st, reps);
      const double t16 = time_graph_ms(call16, st, reps);
      const double gbs = bytes / (k1 * 1e-3) / 1e9;
      std::printf("| %lldx%lld %s | %s | %s | %.2f | %.4f | %.4f | %.0f | %.0f%% | %.4f | %.4f | %.4f | %s |\n",
                  static_cast<long long>(sh.rows), static_cast<long long>(sh.cols), sh.what, h.name.c_str(),
                  mats[0].layout().c_str(), bytes / 1e6, t1, k1, gbs, 100.0 * gbs / copy_gbs, t16, cublas1, cublas16,
                  bad ? "FAIL" : "ok");
      std::fflush(stdout);
      if (bad) std::fprintf(stderr, "check failed: %d of 256 sampled outputs off for %s\n", bad, h.name.c_str());
    }
  }
  CB(cublasDestroy(cublas));
  CK(cudaFree(cublas_ws));
  CK(cudaStreamDestroy(st));
  return 0;
}
