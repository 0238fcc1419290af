#include "loaded_model.h"

#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/thread_pool.h"
#include "runtime/model_tokenizer.h"

namespace upg::cli {

namespace {
std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}
}  // namespace

LoadedModel load_model(const std::string& path, const std::string& device) {
  auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<Backend> backend = make_backend(device);  // before loading: a bad --device fails fast
  auto model = Model::load(path);
  model->set_backend(std::move(backend));
  Tokenizer tok = load_model_tokenizer(*model, path);
  std::optional<std::string> chat_template = load_model_chat_template(*model);
  LoadedModel lm{std::move(model), std::move(tok), std::move(chat_template), 0};
  lm.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return lm;
}

void add_threads_flag(CLI::App* cmd, int& threads) {
  cmd->add_option("-t,--threads", threads, "Worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
}

void add_device_flag(CLI::App* cmd, std::string& device) {
  cmd->add_option("--device", device,
                  "Where the model runs: cpu, cuda (= cuda:0), cuda:N, or auto (the first GPU if there is one)")
      ->capture_default_str();
}

void add_tensor_parallel_flags(CLI::App* cmd, TensorParallelFlags& flags) {
  cmd->add_option("--tp", flags.ranks,
                  "Tensor parallelism: split the model over this many ranks (GPUs with --device cuda, threads on the CPU)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--tp-devices", flags.devices, "With --tp: each rank's device, comma-separated (e.g. cuda:0,cuda:0)")
      ->delimiter(',');
  cmd->add_option("--tp-collectives", flags.collectives,
                  "With --tp: nccl (one GPU per rank; the default on cuda) or host (through host memory; the CPU's)")
      ->check(CLI::IsMember({"nccl", "host"}));
}

TensorParallelOptions TensorParallelFlags::resolve(const Backend& backend) const {
  if (!given()) return {};
  TensorParallelOptions tp;
  tp.ranks = ranks > 0 ? ranks : std::max(1, static_cast<int>(devices.size()));
  tp.devices = devices;
  const bool gpu = !backend.host_memory();
  if (tp.devices.empty())
    for (int r = 0; r < tp.ranks; ++r) tp.devices.push_back(gpu ? "cuda:" + std::to_string(r) : "cpu");
  tp.collectives = !collectives.empty() ? collectives : gpu ? "nccl" : "host";
  return tp;
}

void apply_threads(int threads) {
  // The engines' pools (the forward pass) and kernels called outside an engine take the default
  // pool's count; the offline OpenMP loops (conversion, evaluation scoring, decompress, verify) OpenMP's.
  ThreadPool::set_default_threads(threads);
  if (threads > 0) omp_set_num_threads(threads);
}

size_t parse_byte_size(const std::string& s, const std::string& what) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  std::string unit = s.substr(pos);
  if (unit.size() > 1 && (unit.substr(1) == "iB" || unit.substr(1) == "B")) unit = unit.substr(0, 1);
  double mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "K" || unit == "k") mult = 1024.0;
  else if (unit == "M") mult = 1024.0 * 1024;
  else if (unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  UPG_CHECK(pos > 0 && mult > 0 && std::isfinite(v) && v > 0 && v * mult < 1e18, what, ": '", s,
            "' is not a size (examples: 512M, 4G, 1.5GiB)");
  return static_cast<size_t>(v * mult);
}

void add_generation_flags(CLI::App* cmd, GenerationFlags& f) {
  auto& s = f.sampling;
  cmd->add_option("-n,--n-predict", f.gen.max_new_tokens, "Tokens to generate at most")->capture_default_str();
  cmd->add_option("--temp", s.temperature,
                  "Sampling temperature (0 = greedy). Unset options take the model's generation_config.json, "
                  "else temp 0.8, top-k 40, top-p 0.95, min-p 0.05, no repeat penalty");
  cmd->add_option("--top-k", s.top_k, "Keep the k most likely tokens (0 = off)");
  cmd->add_option("--top-p", s.top_p, "Nucleus sampling mass (1 = off)");
  cmd->add_option("--min-p", s.min_p, "Drop tokens below min-p x the top probability (0 = off)");
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "Repetition penalty (1 = off)");
  cmd->add_option("--repeat-last-n", s.repeat_last_n, "Tokens the penalty looks back (-1 = all; default 64)");
  cmd->add_option("--seed", s.seed, "Random seed (default 0)");
  cmd->add_option("--stop", f.gen.stop_strings, "Stop when this text is generated (repeatable)");
  cmd->add_flag("--ignore-eos{false},!--ignore-eos", f.gen.stop_at_eos, "Keep generating past end-of-sequence");
  cmd->add_option("--kv-type", f.kv_type, "KV cache type: f32, bf16, f16, q8")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16", "f16", "q8"}));
  cmd->add_option("--kv-memory", f.kv_memory, "Cap on KV cache memory, e.g. 512M, 4G (default: none)");
}

GenerateOptions GenerationFlags::resolve(const Model& model) const {
  GenerateOptions g = gen;
  g.sampling = resolve_sampling(model.file_text("generation_config.json"), sampling);
  return g;
}

size_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<size_t>(ru.ru_maxrss) * 1024;
}

std::string speed_report(double load_seconds, const GenerateStats& st, const Backend& backend) {
  std::string r = str_cat("load ", fixed(load_seconds, 2), " s | prompt ", st.prompt_tokens, " tokens, ",
                          fixed(st.prompt_tokens_per_second(), 1), " tok/s | generated ", st.generated_tokens,
                          " tokens, ", fixed(st.generation_tokens_per_second(), 1), " tok/s | peak memory ",
                          fixed(peak_rss_bytes() / (1024.0 * 1024.0), 1), " MiB");
  if (!backend.host_memory())
    r += str_cat(" | ", backend.name(), ": ", fixed(backend.memory_in_use() / (1024.0 * 1024.0), 1), " MiB in use");
  return r;
}

}  // namespace upg::cli
