// upg bench MODEL: prompt-processing and generation speed, modelled on llama.cpp's llama-bench.
//   pp<P>:      one sequence, a prompt of P random tokens in one step (logits of the last only).
//   tg<N>@b<B>: B sequences decoding together, N steps of one token each (B x N tokens); the
//               aggregate rate counts every sequence's tokens. Each step's tokens are the greedy
//               choices of the step before, drawn where the logits are (StepEngine::sample_kept:
//               on a GPU only token ids come back), as `upg run` decodes.
// Each test runs -r times after one warm-up run; rates are mean +/- sample standard deviation.
// The machine's memory read bandwidth is measured in the same run (a 1 GiB buffer summed by every
// thread, best of 3) and the batch-1 decode rate is turned into the weight bytes it reads per
// second (every stored matrix except the embedding table, which decode reads one row of, and of a
// mixture of experts only the experts_per_token experts a token is routed to, on average) as a
// fraction of it; the active matrix weights per token are reported too. --depth D fills each sequence's cache with D positions of random keys and values
// (not computed) before tg, so decode attends over a context of that length (memory at a given
// context size); peak resident memory is reported.
// --tp N runs the model split over N ranks (runtime/tensor_parallel.h): on --device cuda one GPU per
// rank (cuda:0 .. cuda:N-1) with NCCL, on the CPU N ranks as threads (the exact computation of N
// devices, no faster than one engine); --tp-devices and --tp-collectives choose otherwise (several
// ranks on one GPU need the host collectives). The bandwidth fraction is then against the
// bandwidth of one device times the number of distinct devices.
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "base/error.h"
#include "base/memory_bandwidth.h"
#include "base/thread_pool.h"
#include "commands.h"
#include "kernels/cpu/attention.h"
#include "loaded_model.h"
#include "runtime/tensor_parallel.h"

namespace upg::cli {

namespace {
struct BenchOptions {
  std::string model;
  std::vector<int> prompt{512};
  std::vector<int> gen{128};
  std::vector<int> batch{1};
  int threads = 0;
  std::string device = "cpu";
  int reps = 3;
  int depth = 0;
  std::string kv_type = "bf16";
  std::string kv_memory;
  std::string output = "md";
  TensorParallelFlags tp;  // --tp 1 given: one rank through the tensor-parallel path
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Stat {
  double mean = 0, sd = 0;
};
Stat stats(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(s.sd / static_cast<double>(v.size() - 1));
  }
  return s;
}

// Fills positions [0, depth) of s with random rows (what --depth promises: memory and attention
// work of that context, not its computation).
// Gives sequence s `depth` positions of random keys and values, written a whole cache block at a
// time on the host and copied to wherever the backend keeps the cache (a GPU's memory).
void fill_random(Engine& e, SeqId s, int depth, std::mt19937& rng) {
  if (depth <= 0) return;
  const ModelConfig& c = e.model().config();
  e.cache().append(s, depth);
  std::normal_distribution<float> nd(0.f, 1.f);
  const KvGeometry geo = kv_geometry(c);
  const int64_t B = e.cache().options().block_size;
  std::vector<float> row(static_cast<size_t>(geo.head_dim));
  std::vector<uint8_t> block(e.cache().block_bytes());
  uint8_t* staged = block.data();
  for (int64_t bi = 0; bi * B < depth; ++bi) {
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      KvLayerView v = e.cache().view(s, l);
      v.blocks = &staged;  // the block's rows at their offsets, positions taken modulo the block
      for (int kv = 0; kv < (geo.keys_only ? 1 : 2); ++kv)
        for (int64_t g = 0; g < geo.kv_heads; ++g)
          for (int64_t p = bi * B; p < std::min<int64_t>(depth, (bi + 1) * B); ++p) {
            for (float& x : row) x = nd(rng);
            kernels::kv_store_row(v.type, row.data(), geo.head_dim, v.row(kv, g, p - bi * B));
          }
    }
    e.backend().upload(e.cache().view(s, 0).blocks[bi], block.data(), block.size());
  }
}

struct Result {
  std::string test;
  int batch;
  int tokens;           // per run, all sequences
  Stat tps;             // aggregate tokens/s
  double bw_fraction;   // < 0: not reported
};

// The tests of o on e (an Engine or a TensorParallelEngine); fill(e, seq) gives a sequence its
// --depth positions. decode_bytes / bw: the batch-1 bandwidth fraction.
template <class E, class Fill>
std::vector<Result> run_tests(E& e, const BenchOptions& o, int64_t vocab, Fill fill, double decode_bytes, double bw) {
  std::mt19937 rng(1234);
  std::vector<Result> results;
  std::vector<float> logits;
  SamplingParams greedy_params;
  greedy_params.temperature = 0;
  Sampler greedy(greedy_params);
  auto random_token = [&] { return static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab)); };
  for (int p : o.prompt) {
    if (p <= 0) continue;
    std::vector<double> rates;
    for (int r = 0; r <= o.reps; ++r) {  // run 0 warms up
      const SeqId s = e.new_sequence();
      std::vector<BatchEntry> batch;
      for (int t = 0; t < p; ++t) batch.push_back({s, random_token(), t, t == p - 1});
      const auto ts = Clock::now();
      e.step(batch, logits);
      const double dt = seconds_since(ts);
      e.release(s);
      if (r > 0) rates.push_back(p / dt);
    }
    results.push_back({"pp" + std::to_string(p), 1, p, stats(rates), -1});
  }
  for (int n : o.gen) {
    if (n <= 0) continue;
    for (int b : o.batch) {
      std::vector<double> rates;
      for (int r = 0; r <= o.reps; ++r) {
        std::vector<SeqId> seqs;
        for (int i = 0; i < b; ++i) {
          seqs.push_back(e.new_sequence());
          fill(e, seqs.back(), rng);
        }
        std::vector<BatchEntry> batch(static_cast<size_t>(b));
        std::vector<int32_t> next(static_cast<size_t>(b));
        for (auto& t : next) t = random_token();
        std::vector<StepEngine::KeptSample> rows(static_cast<size_t>(b));
        for (int i = 0; i < b; ++i) rows[i] = {i, &greedy, {}, {}};
        const auto ts = Clock::now();
        for (int step = 0; step < n; ++step) {
          for (int i = 0; i < b; ++i) batch[i] = {seqs[i], next[i], o.depth + step, true};
          e.step_kept(batch);
          e.sample_kept(rows, next);  // the greedy choices, drawn where the logits are
        }
        const double dt = seconds_since(ts);
        for (SeqId s : seqs) e.release(s);
        if (r > 0) rates.push_back(static_cast<double>(b) * n / dt);
      }
      Stat st = stats(rates);
      const double frac = b == 1 ? st.mean * decode_bytes / bw : -1;
      results.push_back({"tg" + std::to_string(n) + (o.depth ? "@d" + std::to_string(o.depth) : ""), b, b * n, st, frac});
    }
  }
  return results;
}

void bench(const BenchOptions& o) {
  apply_threads(o.threads);
  UPG_CHECK(o.reps >= 1, "-r must be at least 1");
  for (int b : o.batch) UPG_CHECK(b >= 1, "-b: batch sizes must be at least 1, got ", b);
  const auto t0 = Clock::now();
  std::shared_ptr<Backend> backend = make_backend(o.device);
  auto model = Model::load(o.model);
  model->set_backend(backend);
  const double load_s = seconds_since(t0);
  const ModelConfig& c = model->config();
  const int64_t params = model->parameter_count();
  // Size on disk: the UPG file, or a Hugging Face directory's safetensors files.
  size_t file_bytes = 0;
  if (std::filesystem::is_directory(o.model)) {
    for (const auto& f : std::filesystem::directory_iterator(o.model))
      if (f.path().extension() == ".safetensors") file_bytes += f.file_size();
  } else {
    file_bytes = std::filesystem::file_size(o.model);
  }
  // Weights one decode step reads for one token: the active matrices (a mixture of experts reads
  // experts_per_token of its experts), less the embedding table unless tied (one row of it is read).
  const size_t decode_bytes = static_cast<size_t>(model->active_weight_bytes()) -
                              (c.tie_word_embeddings ? 0 : model->embed_tokens().stored_bytes());
  const int64_t active_weights = model->active_matrix_weights();
  double bw = backend->measure_bandwidth();  // CPU: 1 GiB read by all threads; GPU: 1 GiB device copy
  const int threads = o.threads > 0 ? o.threads : ThreadPool::default_threads();  // the engine's pool

  EngineOptions eo;
  eo.threads = threads;
  eo.kv.type = parse_kv_type(o.kv_type);
  eo.kv.max_bytes = o.kv_memory.empty() ? 0 : parse_byte_size(o.kv_memory, "--kv-memory");
  std::vector<Result> results;
  double prepare_s = 0;
  size_t kv_bytes = 0, device_bytes = 0;
  std::string tp_note;
  int tp_ranks = 1;
  if (!o.tp.given()) {
    Engine e(*model, eo);  // uploads the weights to a GPU
    prepare_s = seconds_since(t0) - load_s;
    results = run_tests(e, o, c.vocab_size, [&](Engine& en, SeqId s, std::mt19937& r) { fill_random(en, s, o.depth, r); },
                        static_cast<double>(decode_bytes), bw);
    kv_bytes = e.cache().bytes_allocated();
    device_bytes = backend->memory_in_use();
  } else {
    const TensorParallelOptions tp = o.tp.resolve(*backend);
    tp_ranks = tp.ranks;
    const std::set<std::string> distinct(tp.devices.begin(), tp.devices.end());
    if (!backend->host_memory()) bw *= static_cast<double>(distinct.size());  // the ranks' GPUs read in parallel
    TensorParallelEngine e(*model, tp, eo);
    prepare_s = seconds_since(t0) - load_s;
    // --depth: every rank's cache gets the positions (random rows of its own key-value heads).
    auto fill = [&](TensorParallelEngine& g, SeqId s, std::mt19937& r) {
      for (int k = 0; k < g.ranks(); ++k) fill_random(g.engine(k), s, o.depth, r);
    };
    results = run_tests(e, o, c.vocab_size, fill, static_cast<double>(decode_bytes), bw);
    std::ostringstream note;
    note << " | tensor parallel: " << tp.ranks << " ranks on";
    for (const auto& d : tp.devices) note << " " << d;
    note << ", " << tp.collectives << " collectives, o " << (e.plan().o_by_columns ? "by columns" : "gathered")
         << ", down " << (e.plan().down_by_columns ? "by columns" : "gathered");
    tp_note = note.str();
    for (int r = 0; r < tp.ranks; ++r) kv_bytes += e.engine(r).cache().bytes_allocated();
    std::set<const Backend*> seen;
    for (int r = 0; r < tp.ranks; ++r)
      if (seen.insert(&e.engine(r).backend()).second) device_bytes += e.engine(r).backend().memory_in_use();
  }

  const double bpw = 8.0 * static_cast<double>(file_bytes) / static_cast<double>(params);
  const double rss_mib = static_cast<double>(peak_rss_bytes()) / (1024.0 * 1024.0);
  if (o.output == "json") {
    nlohmann::json j;
    j["model"] = o.model;
    j["architecture"] = c.architecture;
    j["parameters"] = params;
    j["size_bytes"] = file_bytes;
    j["bits_per_weight"] = bpw;
    j["decode_bytes_per_step"] = decode_bytes;
    j["active_matrix_weights_per_token"] = active_weights;
    j["threads"] = threads;
    j["kv_type"] = o.kv_type;
    j["depth"] = o.depth;
    j["load_seconds"] = load_s;
    j["device"] = backend->name();
    j["upload_seconds"] = prepare_s;
    j["device_memory_in_use_mib"] = static_cast<double>(device_bytes) / (1024.0 * 1024.0);
    j["tensor_parallel_ranks"] = tp_ranks;
    j["memory_read_bandwidth_gbs"] = bw / 1e9;
    j["decode_weights_fit_in_last_level_cache"] = backend->host_memory() && decode_bytes < last_level_cache_bytes();
    j["peak_rss_mib"] = rss_mib;
    j["kv_cache_peak_mib"] = static_cast<double>(kv_bytes) / (1024.0 * 1024.0);
    j["results"] = nlohmann::json::array();
    for (const Result& r : results) {
      nlohmann::json x{{"test", r.test}, {"batch", r.batch}, {"tokens", r.tokens}, {"tokens_per_second", r.tps.mean},
                       {"stddev", r.tps.sd}, {"per_sequence_tokens_per_second", r.tps.mean / r.batch}};
      if (r.bw_fraction >= 0) x["bandwidth_fraction"] = r.bw_fraction;
      j["results"].push_back(x);
    }
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::ostringstream out;
  out << std::fixed;
  out << "| model | size | params | bpw | threads | kv | test | batch | t/s (aggregate) | t/s per sequence | of membw |\n";
  out << "|---|---|---|---|---|---|---|---|---|---|---|\n";
  auto human = [](double v, const char* const* units) {
    int u = 0;
    while (v >= 1000 && units[u + 1]) v /= 1000, ++u;
    std::ostringstream s;
    s << std::fixed << std::setprecision(v < 10 ? 2 : 1) << v << " " << units[u];
    return s.str();
  };
  static const char* const kBytes[] = {"B", "kB", "MB", "GB", "TB", nullptr};
  static const char* const kCount[] = {"", "K", "M", "B", "T", nullptr};
  const bool cache_resident = backend->host_memory() && decode_bytes < last_level_cache_bytes();
  for (const Result& r : results) {
    out << "| " << c.architecture << " | " << human(static_cast<double>(file_bytes), kBytes) << " | "
        << human(static_cast<double>(params), kCount) << " | " << std::setprecision(3) << bpw << " | " << threads
        << " | " << o.kv_type << " | " << r.test << " | " << r.batch << " | " << std::setprecision(2) << r.tps.mean
        << " ± " << r.tps.sd << " | " << r.tps.mean / r.batch << " | ";
    if (r.bw_fraction >= 0) out << std::setprecision(1) << 100 * r.bw_fraction << "%" << (cache_resident ? " (cache-resident)" : "");
    out << " |\n";
  }
  out << "\ndevice " << backend->name() << " | ";
  if (backend->host_memory())
    out << "memory read bandwidth " << std::setprecision(1) << bw / 1e9 << " GB/s (1 GiB, " << threads << " threads)";
  else
    out << "device copy bandwidth " << std::setprecision(1) << bw / 1e9 << " GB/s (1 GiB, read + written) | device memory in use "
        << device_bytes / (1024.0 * 1024.0) << " MiB | upload " << std::setprecision(2) << prepare_s << " s";
  out << " | decode reads " << std::setprecision(1) << decode_bytes / 1e6 << " MB of weights per step"
      << " | active matrix weights per token " << human(static_cast<double>(active_weights), kCount)
      << " | load " << std::setprecision(2) << load_s << " s | peak memory " << std::setprecision(1) << rss_mib
      << " MiB | KV cache " << kv_bytes / (1024.0 * 1024.0) << " MiB" << tp_note << "\n";
  std::cout << out.str();
}
}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "Measure prompt-processing and generation speed (like llama-bench)");
  cmd->add_option("model", o->model, "Hugging Face model directory or .upg file (upg synth makes any shape)")
      ->required();
  cmd->add_option("-p,--n-prompt", o->prompt, "Prompt lengths to test, comma-separated (0 = none)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", o->gen, "Tokens to generate per test, comma-separated (0 = none)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("-b,--batch", o->batch, "Sequences decoding together, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("-r,--repetitions", o->reps, "Timed runs per test (after one warm-up)")->capture_default_str();
  cmd->add_option("-d,--depth", o->depth, "Fill each sequence's cache with this many random positions before tg")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--kv-type", o->kv_type, "KV cache type: f32, bf16, f16, q8")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16", "f16", "q8"}));
  cmd->add_option("--kv-memory", o->kv_memory, "Cap on KV cache memory, e.g. 512M, 4G (default: none)");
  cmd->add_option("-o,--output", o->output, "md or json")->capture_default_str()->check(CLI::IsMember({"md", "json"}));
  add_tensor_parallel_flags(cmd, o->tp);
  add_threads_flag(cmd, o->threads);
  add_device_flag(cmd, o->device);
  cmd->callback([o] { bench(*o); });
}

}  // namespace upg::cli
