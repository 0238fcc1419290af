// CPU kernel benchmarks: every codec x {matmul n = 1, 4, 8 (batched decode), 16 and 128 (prefill),
// decode-to-bf16} at Phi-4 layer shapes, against this machine's memory bandwidth measured in the
// same run.
//
//   bench_kernels [google benchmark flags, e.g. --benchmark_filter=cb3]
//
// Shapes (rows x cols = out x in features): qkvo 5120 x 5120, gate_up 17920 x 5120 (half of
// Phi-4's fused 35840 x 5120, to keep memory and run time modest), down 5120 x 17920.
// Codecs: bf16, int8 g128, codebook 2-6 bits g64, mdcsr 10%, trellis 2-4 bits L 12 g512 (tr*).
// Matrices are built directly from random stored arrays (random code bytes, f16 scales, gaussian
// level tables; mdcsr: random columns at 10% density, int8 values): kernel speed does not depend
// on the values, and this skips minutes of encoding.
// Each benchmark cycles through copies of its matrix whose total exceeds twice the last-level
// cache, so the stored bytes come from memory as in a real model's decode step.
// Counters: rd_GBps = stored (compressed) bytes read per second; bw_ratio = bytes moved per
// second / membw, where bytes moved = stored bytes (+ the bf16 output for decode) and membw is
// the multithreaded read bandwidth measured once at start-up (BM_membw_read reports it too).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "base/half.h"
#include "base/memory_bandwidth.h"
#include "codecs/codec_registry.h"
#include "codecs/codec_util.h"
#include "codecs/dense/dense_matrix.h"
#include "codecs/mdcsr/mdcsr_codec.h"

using namespace upg;

namespace {

// ---- memory bandwidth -------------------------------------------------------------------------

// Read bandwidth in bytes/s: best of 3 passes over 1 GiB, all threads (base/memory_bandwidth.h).
double membw_read_Bps() {
  static const double bw = measure_read_bandwidth();
  return bw;
}

// Reports the bandwidth measured once at start-up (its time is that of the cached lookup).
void BM_membw_read(benchmark::State& st) {
  for (auto _ : st) benchmark::DoNotOptimize(membw_read_Bps());
  st.counters["GBps"] = membw_read_Bps() / 1e9;
  st.counters["threads"] = omp_get_max_threads();
}
BENCHMARK(BM_membw_read)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

void BM_membw_copy(benchmark::State& st) {
  constexpr size_t kBytes = size_t{1} << 30;
  std::vector<float> a(kBytes / 4, 1.0f), b(kBytes / 4);
  const int64_t n = static_cast<int64_t>(a.size());
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += 4096) std::memcpy(&b[i], &a[i], 4096 * 4);
    benchmark::DoNotOptimize(b.data());
  }
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(2 * kBytes));  // read + write
}
BENCHMARK(BM_membw_copy)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

// ---- matrices ---------------------------------------------------------------------------------

struct Shape {
  const char* name;
  int64_t rows, cols;
};
const Shape kShapes[] = {{"qkvo", 5120, 5120}, {"gate_up", 17920, 5120}, {"down", 5120, 17920}};
const char* const kCodecs[] = {"bf16",     "int8_g128", "cb2_g64",  "cb3_g64",  "cb4_g64", "cb5_g64",
                               "cb6_g64",  "mdcsr10",   "tr2_g512", "tr3_g512", "tr4_g512"};

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<size_t>(8, n - i));
  }
  return v;
}

std::vector<uint8_t> random_f16(size_t n, float sigma, uint32_t seed) {
  std::vector<uint8_t> v(2 * n);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  for (size_t i = 0; i < n; ++i) store_le<uint16_t>(v.data(), i, f32_to_f16(nd(rng)));
  return v;
}

struct Built {
  std::map<std::string, Array> arrays;  // owned storage for codec matrices
  std::vector<uint8_t> dense;           // bf16 storage
  EncodedTensor mdcsr;
  EncodedArrays views;
  std::unique_ptr<WeightMatrix> m;
};

Array array_of(DType t, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  Array a;
  a.dtype = t;
  a.shape = std::move(shape);
  a.bytes = std::move(bytes);
  return a;
}

std::unique_ptr<Built> build(const std::string& codec, const Shape& s) {
  auto b = std::make_unique<Built>();
  const int64_t R = s.rows, C = s.cols;
  CodecParams params;
  std::string name;
  if (codec == "bf16") {
    b->dense.resize(static_cast<size_t>(2 * R * C));
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (int64_t i = 0; i < R * C; ++i) store_le<uint16_t>(b->dense.data(), i, f32_to_bf16(nd(rng)));
    b->m = std::make_unique<DenseMatrix>(b->dense.data(), TensorDType::BF16, R, C);
    return b;
  } else if (codec == "int8_g128") {
    name = "int8";
    params = {{"group", 128}, {"scale_dtype", "f16"}};
    b->arrays["qweight"] = array_of(DType::I8, {R, C}, random_bytes(static_cast<size_t>(R * C), 2));
    b->arrays["scales"] = array_of(DType::F16, {R, (C + 127) / 128}, random_f16(static_cast<size_t>(R * ((C + 127) / 128)), 1e-3f, 3));
  } else if (codec.rfind("cb", 0) == 0) {
    name = "codebook";
    const int k = codec[2] - '0';
    params = {{"bits", k}, {"group", 64}, {"levels", "gaussian"}, {"codebook_rows", 0}};
    const int64_t rb = (C * k + 7) / 8, ng = (C + 63) / 64;
    b->arrays["qweight"] = array_of(DType::U8, {R, rb}, random_bytes(static_cast<size_t>(R * rb), 4));
    b->arrays["scales"] = array_of(DType::F16, {R, ng}, random_f16(static_cast<size_t>(R * ng), 0.02f, 5));
    std::vector<uint8_t> lv(4u << k);
    for (int i = 0; i < (1 << k); ++i) store_le<float>(lv.data(), i, -1.0f + 2.0f * i / ((1 << k) - 1));
    b->arrays["codebook"] = array_of(DType::F32, {1, int64_t{1} << k}, std::move(lv));
  } else if (codec.rfind("tr", 0) == 0) {  // trellis K bits, L = 12, group 512: the converter's candidates
    name = "trellis";
    const int k = codec[2] - '0';
    params = {{"bits", k}, {"state_bits", 12}, {"group", 512}};
    const int64_t rb = (12 + (C - 1) * k + 7) / 8, ng = (C + 511) / 512;
    b->arrays["qweight"] = array_of(DType::U8, {R, rb}, random_bytes(static_cast<size_t>(R * rb), 4));
    b->arrays["scales"] = array_of(DType::F16, {R, ng}, random_f16(static_cast<size_t>(R * ng), 0.02f, 5));
  } else {  // mdcsr10: random columns at 10% density (gaps 1..19, mean 10), int8 values
    name = "mdcsr";
    SparseEntries e;
    e.row_start.assign(R + 1, 0);
    std::mt19937 rng(6);
    std::uniform_int_distribution<int> gap(1, 19);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t c = gap(rng) - 1; c < C; c += gap(rng)) {
        e.col.push_back(static_cast<int32_t>(c));
        e.val.push_back(nd(rng));
      }
      e.row_start[r + 1] = static_cast<int64_t>(e.col.size());
    }
    b->mdcsr = mdcsr_encode_entries(R, C, e, {{"values", "int8"}}, nullptr);
    b->views = b->mdcsr.views();
    b->m = make_codec("mdcsr")->open(b->views, R, C, b->mdcsr.params);
    return b;
  }
  for (auto& [n, a] : b->arrays) b->views[n] = ArrayView{a.bytes.data(), a.bytes.size(), a.dtype, a.shape};
  b->m = make_codec(name)->open(b->views, R, C, params);
  return b;
}

// Enough independent copies of the matrix (different random arrays) that cycling through them
// reads more than twice the last-level cache per round: every timed iteration then streams its
// matrix from memory, not from the cache (a single 5120 x 5120 3-bit matrix fits a 32 MiB L3).
const std::vector<std::unique_ptr<Built>>& matrices(int codec, int shape) {
  static std::map<std::pair<int, int>, std::vector<std::unique_ptr<Built>>> cache;
  auto& v = cache[{codec, shape}];
  if (v.empty()) {
    v.push_back(build(kCodecs[codec], kShapes[shape]));
    const size_t need = 2 * last_level_cache_bytes();
    const size_t copies = std::max<size_t>(2, (need + v[0]->m->stored_bytes() - 1) / v[0]->m->stored_bytes());
    while (v.size() < copies) v.push_back(build(kCodecs[codec], kShapes[shape]));
  }
  return v;
}

void label(benchmark::State& st, const WeightMatrix& m, int codec, int shape, double moved_per_iter) {
  const double stored = static_cast<double>(m.stored_bytes());
  st.SetLabel(std::string(kCodecs[codec]) + " " + kShapes[shape].name + " bpw=" +
              std::to_string(8.0 * stored / (m.rows() * m.cols())).substr(0, 5));
  st.counters["rd_GBps"] = benchmark::Counter(stored * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  st.counters["bw_ratio"] =
      benchmark::Counter(moved_per_iter * st.iterations() / membw_read_Bps(), benchmark::Counter::kIsRate);
}

void BM_matmul(benchmark::State& st) {
  const int codec = static_cast<int>(st.range(0)), shape = static_cast<int>(st.range(1));
  const int64_t n = st.range(2);
  const auto& ms = matrices(codec, shape);
  const WeightMatrix& m = *ms[0]->m;
  size_t next = 0;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n * m.cols()), y(n * m.rows());
  for (float& v : x) v = nd(rng);
  membw_read_Bps();
  for (auto _ : st) {
    ms[next++ % ms.size()]->m->matmul(x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  label(st, m, codec, shape, static_cast<double>(m.stored_bytes()));
  st.counters["GFLOPs"] = benchmark::Counter(2.0 * n * m.rows() * m.cols() * st.iterations() / 1e9,
                                             benchmark::Counter::kIsRate);
}

void BM_decode_bf16(benchmark::State& st) {
  const int codec = static_cast<int>(st.range(0)), shape = static_cast<int>(st.range(1));
  const auto& ms = matrices(codec, shape);
  const WeightMatrix& m = *ms[0]->m;
  size_t next = 0;
  std::vector<uint16_t> out(m.rows() * m.cols());
  membw_read_Bps();
  for (auto _ : st) {
    ms[next++ % ms.size()]->m->decode_rows_bf16(0, m.rows(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  label(st, m, codec, shape, static_cast<double>(m.stored_bytes()) + 2.0 * m.rows() * m.cols());
}

void all_args(benchmark::internal::Benchmark* b, bool with_n) {
  for (int c = 0; c < static_cast<int>(std::size(kCodecs)); ++c)
    for (int s = 0; s < static_cast<int>(std::size(kShapes)); ++s) {
      if (with_n)
        for (int64_t n : {1, 4, 8, 16, 128}) b->Args({c, s, n});
      else
        b->Args({c, s});
    }
}

BENCHMARK(BM_matmul)->Apply([](auto* b) { all_args(b, true); })->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_decode_bf16)->Apply([](auto* b) { all_args(b, false); })->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
