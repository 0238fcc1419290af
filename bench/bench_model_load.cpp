// Load time of a UPG model: memory-map the file(s), parse the safetensors header and the UPG
// metadata, open every weight matrix in place (codec arrays validated, nothing decoded or copied).
// The seed design's target: a 5.5 GB file in under 1 s.
//
//   build/upg synth --config ../shared/data/configs/microsoft_phi-4.config.json --bpw 3.2 -o /tmp/phi4-3.2.upg
//   UPG_BENCH_MODEL=/tmp/phi4-3.2.upg build/bench_model_load
//
// BM_load_model: Model::load on the file (the pages are mostly cold: only the header and the few
// bytes each codec validates are touched). BM_load_model_first_token: load plus one decode step
// at position 0 (touches every weight once: the cost of the first token, bounded by read speed).
// Without UPG_BENCH_MODEL the benchmarks report an error saying how to make a model.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/session.h"

using namespace upg;

namespace {

const char* model_path(benchmark::State& state) {
  const char* p = std::getenv("UPG_BENCH_MODEL");
  if (!p || !*p) {
    state.SkipWithError("set UPG_BENCH_MODEL to a .upg file (make one with `upg synth --config CONFIG --bpw 3.2 -o F`)");
    return nullptr;
  }
  return p;
}

uint64_t file_bytes(const std::string& p) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(p)) return fs::file_size(p);
  return 0;
}

void BM_load_model(benchmark::State& state) {
  const char* p = model_path(state);
  if (!p) return;
  for (auto _ : state) {
    auto m = Model::load(p);
    benchmark::DoNotOptimize(m.get());
  }
  state.counters["file_GB"] = static_cast<double>(file_bytes(p)) / 1e9;
}
BENCHMARK(BM_load_model)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);

void BM_load_model_first_token(benchmark::State& state) {
  const char* p = model_path(state);
  if (!p) return;
  for (auto _ : state) {
    auto m = Model::load(p);
    Session s(*m, 16);
    std::vector<float> logits;
    const std::vector<int32_t> tok = {1};
    s.forward(tok, logits, false);
    benchmark::DoNotOptimize(logits.data());
  }
  state.counters["file_GB"] = static_cast<double>(file_bytes(p)) / 1e9;
}
BENCHMARK(BM_load_model_first_token)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);

}  // namespace

BENCHMARK_MAIN();
