// Dense (bf16/f16/f32) WeightMatrix::matmul throughput: decode (n = 1) and prefill (n = 512)
// at refA's MLP shape (1536 x 512) and a Phi-4-like shape (5120 x 5120).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "base/half.h"
#include "codecs/dense/dense_matrix.h"

using namespace upg;

static void BM_DenseMatmul(benchmark::State& st) {
  const int64_t rows = st.range(0), cols = st.range(1), n = st.range(2);
  const auto dtype = static_cast<TensorDType>(st.range(3));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<uint8_t> w(static_cast<size_t>(rows * cols) * tensor_dtype_size(dtype));
  for (int64_t i = 0; i < rows * cols; ++i) {
    float f = nd(rng);
    if (dtype == TensorDType::F32) std::memcpy(w.data() + 4 * i, &f, 4);
    else {
      uint16_t h = dtype == TensorDType::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
      std::memcpy(w.data() + 2 * i, &h, 2);
    }
  }
  DenseMatrix m(w.data(), dtype, rows, cols);
  std::vector<float> x(n * cols), y(n * rows);
  for (auto& v : x) v = nd(rng);
  for (auto _ : st) {
    m.matmul(x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GFLOPS"] = benchmark::Counter(2.0 * rows * cols * n, benchmark::Counter::kIsIterationInvariantRate,
                                             benchmark::Counter::kIs1000);
  st.counters["GB/s(W)"] = benchmark::Counter(static_cast<double>(w.size()), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_DenseMatmul)
    ->ArgNames({"rows", "cols", "n", "dtype"})
    ->Args({1536, 512, 512, static_cast<int>(TensorDType::BF16)})
    ->Args({1536, 512, 1, static_cast<int>(TensorDType::BF16)})
    ->Args({5120, 5120, 1, static_cast<int>(TensorDType::BF16)})
    ->Args({5120, 5120, 64, static_cast<int>(TensorDType::BF16)})
    ->Args({5120, 5120, 1, static_cast<int>(TensorDType::F16)})
    ->Args({5120, 5120, 1, static_cast<int>(TensorDType::F32)})
    ->UseRealTime();
BENCHMARK_MAIN();
