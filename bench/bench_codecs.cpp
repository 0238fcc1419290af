// Codec benchmarks and the codec quality table.
//
//   bench_codecs [google benchmark flags]
//     Decode to bf16 (the codecs' fast decoders), the plain reference decode (decode_rows, for
//     comparison) and matmul n = 1 per codec at a Phi-4-like 5120 x 5120 layer, encoded from a
//     Gaussian matrix; bytes/s counts the stored (compressed) bytes read per iteration. CACHE-HOT:
//     one such matrix (3-13 MB compressed) fits a server's last-level cache; bench_kernels measures
//     the same kernels streaming from memory.
//   bench_codecs --quality [path/to/model.safetensors]
//     For each codec option at ~2, 3, 4 bits/weight: relative Frobenius error and importance-
//     weighted relative error, pooled over real weight matrices of refA-phi3-26m (layers 0, 3, 5:
//     qkv, o, gate_up, down) and over a Gaussian 512 x 1536 matrix. Bits/weight count every
//     stored array. Importance (no calibration data here): for qkv_proj / gate_up_proj, the square
//     of the RMSNorm weight feeding them (the per-channel activation scale); for o_proj / down_proj
//     and the Gaussian matrix, a fixed log-normal(0, 1) vector (seeded). Output: a markdown table.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/half.h"
#include "base/mapped_file.h"
#include "codecs/codec_registry.h"

using namespace upg;

namespace {

std::vector<float> gaussian(int64_t rows, int64_t cols, uint32_t seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = nd(rng);
  return w;
}

std::vector<float> lognormal(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> ln(0.0f, 1.0f);
  std::vector<float> h(n);
  for (float& v : h) v = ln(rng);
  return h;
}

// ---- speed ----------------------------------------------------------------------------------

struct Config {
  const char* label;
  const char* codec;
  const char* params;  // JSON
};
const Config kConfigs[] = {
    {"int8_g128", "int8", R"({"group":128})"},
    {"mdcsr_keep10", "mdcsr", R"({"keep_fraction":0.1})"},
    {"cb2_g64", "codebook", R"({"bits":2,"group":64,"lloyd_iters":1})"},
    {"cb3_g64", "codebook", R"({"bits":3,"group":64,"lloyd_iters":1})"},
    {"cb4_g64", "codebook", R"({"bits":4,"group":64,"lloyd_iters":1})"},
    {"cb3_g64_rot", "codebook", R"({"bits":3,"group":64,"lloyd_iters":1,"rotate":true})"},
    {"cb3_g64_out1", "codebook", R"({"bits":3,"group":64,"lloyd_iters":1,"outliers":{"fraction":0.01}})"},
    // One Viterbi pass (the search takes ~30 s per config here on 2 cores; the speed does not depend on it).
    {"trellis2_g64", "trellis", R"({"bits":2,"group":64,"passes":1})"},
    {"trellis3_g64", "trellis", R"({"bits":3,"group":64,"passes":1})"},
    {"trellis4_g64", "trellis", R"({"bits":4,"group":64,"passes":1})"},
    {"trellis3_g512", "trellis", R"({"bits":3,"group":512,"passes":1})"},  // what the converter's candidates use
};
constexpr int64_t kRows = 5120, kCols = 5120;

struct Encoded {
  EncodedTensor t;
  EncodedArrays views;
  std::unique_ptr<WeightMatrix> m;
};

const Encoded& encoded(int i) {
  static std::map<int, std::unique_ptr<Encoded>> cache;
  auto& e = cache[i];
  if (!e) {
    static const std::vector<float> W = gaussian(kRows, kCols, 1, 0.02f);
    e = std::make_unique<Encoded>();
    auto codec = make_codec(kConfigs[i].codec);
    e->t = codec->encode(W.data(), kRows, kCols, nlohmann::json::parse(kConfigs[i].params));
    e->views = e->t.views();
    e->m = codec->open(e->views, kRows, kCols, e->t.params);
  }
  return *e;
}

void BM_DecodeBf16(benchmark::State& st) {
  const Encoded& e = encoded(static_cast<int>(st.range(0)));
  std::vector<uint16_t> out(kRows * kCols);
  for (auto _ : st) {
    e.m->decode_rows_bf16(0, kRows, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(e.m->stored_bytes()));
  st.SetLabel(std::string(kConfigs[st.range(0)].label) + " bpw=" +
              std::to_string(e.t.bits_per_weight(kRows, kCols)).substr(0, 5));
}

// The plain reference decoder (decode_rows, 16 rows at a time) followed by scalar rounding to bf16.
void BM_DecodeRowsReference(benchmark::State& st) {
  const Encoded& e = encoded(static_cast<int>(st.range(0)));
  const int64_t tile = 16;
  std::vector<float> f(tile * kCols);
  std::vector<uint16_t> out(kRows * kCols);
  for (auto _ : st) {
    for (int64_t r = 0; r < kRows; r += tile) {
      e.m->decode_rows(r, r + tile, f.data());
      for (int64_t i = 0; i < tile * kCols; ++i) out[r * kCols + i] = f32_to_bf16(f[i]);
    }
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(e.m->stored_bytes()));
  st.SetLabel(std::string(kConfigs[st.range(0)].label) + " bpw=" +
              std::to_string(e.t.bits_per_weight(kRows, kCols)).substr(0, 5));
}

void BM_Matmul1(benchmark::State& st) {
  const Encoded& e = encoded(static_cast<int>(st.range(0)));
  std::vector<float> x = gaussian(1, kCols, 2, 1.0f), y(kRows);
  for (auto _ : st) {
    e.m->matmul(x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(e.m->stored_bytes()));
  st.SetLabel(std::string(kConfigs[st.range(0)].label) + " bpw=" +
              std::to_string(e.t.bits_per_weight(kRows, kCols)).substr(0, 5));
}

BENCHMARK(BM_DecodeBf16)->DenseRange(0, std::size(kConfigs) - 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DecodeRowsReference)->DenseRange(0, std::size(kConfigs) - 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Matmul1)->DenseRange(0, std::size(kConfigs) - 1)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- quality --------------------------------------------------------------------------------

struct Matrix {
  std::string name;
  int64_t rows, cols;
  std::vector<float> w, importance;
};

// A tiny safetensors reader (BF16/F32 tensors only): enough for the quality table.
std::map<std::string, Matrix> read_safetensors(const std::string& path) {
  MappedFile f(path);
  UPG_CHECK(f.size() >= 8, path, ": too small for a safetensors file");
  uint64_t n;
  std::memcpy(&n, f.data(), 8);
  UPG_CHECK(n <= f.size() - 8, path, ": header length ", n, " exceeds the file");
  auto header = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(f.data()) + 8, n));
  const uint8_t* data = f.data() + 8 + n;
  std::map<std::string, Matrix> out;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string dt = info["dtype"];
    auto shape = info["shape"].get<std::vector<int64_t>>();
    auto off = info["data_offsets"].get<std::vector<uint64_t>>();
    Matrix m{name, shape[0], shape.size() > 1 ? shape[1] : 1, {}, {}};
    const size_t numel = static_cast<size_t>(m.rows * m.cols), es = dt == "BF16" ? 2 : 4;
    UPG_CHECK((dt == "BF16" || dt == "F32") && off[1] - off[0] == numel * es && 8 + n + off[1] <= f.size(),
              path, ": tensor ", name, " has an unsupported dtype or bad offsets");
    m.w.resize(numel);
    for (size_t i = 0; i < numel; ++i) {
      if (es == 2) {
        uint16_t h;
        std::memcpy(&h, data + off[0] + 2 * i, 2);
        m.w[i] = bf16_to_f32(h);
      } else {
        std::memcpy(&m.w[i], data + off[0] + 4 * i, 4);
      }
    }
    out[name] = std::move(m);
  }
  return out;
}

struct Option {
  const char* label;
  const char* codec;
  const char* params;
};

int run_quality(const std::string& path) {
  std::vector<Matrix> real;
  auto st = read_safetensors(path);
  for (int layer : {0, 3, 5}) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    const std::pair<const char*, const char*> kinds[] = {{"self_attn.qkv_proj.weight", "input_layernorm.weight"},
                                                         {"self_attn.o_proj.weight", nullptr},
                                                         {"mlp.gate_up_proj.weight", "post_attention_layernorm.weight"},
                                                         {"mlp.down_proj.weight", nullptr}};
    for (auto [w, norm] : kinds) {
      Matrix m = st.at(p + w);
      if (norm) {
        m.importance = st.at(p + norm).w;
        for (float& v : m.importance) v *= v;
      } else {
        m.importance = lognormal(m.cols, 1000 + layer);
      }
      real.push_back(std::move(m));
    }
  }
  Matrix g{"gaussian", 512, 1536, gaussian(512, 1536, 3, 0.02f), lognormal(1536, 4)};

  std::vector<Option> options;
  static const char* kBits[] = {"2", "3", "4"};
  static std::vector<std::string> keep;  // owns the generated JSON strings
  keep.reserve(64);
  for (const char* b : kBits) {
    auto add = [&](const char* label, const std::string& extra) {
      keep.push_back(std::string(R"({"bits":)") + b + R"(,"group":64)" + extra + "}");
      options.push_back({label, "codebook", keep.back().c_str()});
    };
    add("prime LUT", R"(,"levels":"prime")");
    add("gaussian (Lloyd-Max)", R"(,"levels":"gaussian")");
    add("fitted (weighted k-means)", R"(,"levels":"fitted")");
    add("fitted + rotate", R"(,"levels":"fitted","rotate":true)");
    add("fitted + 1% outliers", R"(,"levels":"fitted","outliers":{"fraction":0.01})");
    add("fitted + rotate + 1% outliers", R"(,"levels":"fitted","rotate":true,"outliers":{"fraction":0.01})");
  }
  options.push_back({"int8 g128 (reference)", "int8", R"({"group":128})"});

  std::printf("| bits | option | real bpw | real rel. Frobenius | real imp.-weighted | gauss bpw | gauss rel. Frobenius | gauss imp.-weighted |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const Option& o : options) {
    auto codec = make_codec(o.codec);
    const auto params = nlohmann::json::parse(o.params);
    auto measure = [&](const std::vector<const Matrix*>& ms, double& bpw, double& fro, double& imp) {
      double bits = 0, n = 0, e2 = 0, w2 = 0, ie2 = 0, iw2 = 0;
      for (const Matrix* m : ms) {
        EncodedTensor t = codec->encode(m->w.data(), m->rows, m->cols, params, m->importance.data());
        auto views = t.views();
        auto wm = codec->open(views, m->rows, m->cols, t.params);
        std::vector<float> d(m->w.size());
        wm->decode_rows(0, m->rows, d.data());
        double me2 = 0, mw2 = 0;
        for (size_t i = 0; i < d.size(); ++i) {
          const double h = m->importance[i % m->cols], e = m->w[i] - d[i];
          e2 += e * e;
          w2 += static_cast<double>(m->w[i]) * m->w[i];
          me2 += h * e * e;
          mw2 += h * m->w[i] * m->w[i];
        }
        // Importance-weighted error: each matrix normalised by its own weighted norm, pooled by size.
        ie2 += me2 / mw2 * d.size();
        iw2 += d.size();
        bits += 8.0 * t.total_bytes();
        n += d.size();
      }
      bpw = bits / n;
      fro = std::sqrt(e2 / w2);
      imp = std::sqrt(ie2 / iw2);
    };
    std::vector<const Matrix*> rs;
    for (const Matrix& m : real) rs.push_back(&m);
    double rb, rf, ri, gb, gf, gi;
    measure(rs, rb, rf, ri);
    measure({&g}, gb, gf, gi);
    const std::string bits = std::string(o.codec) == "int8" ? "8" : nlohmann::json(params["bits"]).dump();
    std::printf("| %s | %s | %.3f | %.4f | %.4f | %.3f | %.4f | %.4f |\n", bits.c_str(), o.label, rb, rf, ri, gb, gf, gi);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "--quality") {
    const std::string path = argc >= 3 ? argv[2] : "../shared/data/models/refA-phi3-26m/model.safetensors";
    try {
      return run_quality(path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_codecs --quality: %s\n", e.what());
      return 1;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
