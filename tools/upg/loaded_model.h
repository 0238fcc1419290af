// What `run`, `chat` and `eval` share: loading a model (Hugging Face directory or UPG file) with
// its tokenizer and chat template, the common flags (threads, sampling), and the speed/memory
// report printed to stderr at the end.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

#include "runtime/generate.h"
#include "runtime/session.h"
#include "runtime/tensor_parallel.h"
#include "tokenizer/tokenizer.h"

namespace upg::cli {

struct LoadedModel {
  std::unique_ptr<Model> model;
  Tokenizer tokenizer;
  std::optional<std::string> chat_template;  // nullopt when the model has none
  double load_seconds = 0;
};

// Loads path to run on `device` (--device: cpu, cuda, cuda:N, auto; make_backend); throws Error
// naming the path, the device and the problem.
LoadedModel load_model(const std::string& path, const std::string& device = "cpu");

// --device: where the forward pass runs.
void add_device_flag(CLI::App* cmd, std::string& device);

// --tp N, --tp-devices, --tp-collectives: tensor parallelism (runtime/tensor_parallel.h) for run,
// chat, bench and serve.
struct TensorParallelFlags {
  int ranks = 0;  // 0: --tp not given
  std::vector<std::string> devices;
  std::string collectives;
  bool given() const { return ranks > 0 || !devices.empty() || !collectives.empty(); }
  // The options for a model whose backend is `backend`: none given, one Engine ({}); on a GPU one
  // rank per GPU (cuda:0 .. cuda:N-1) with NCCL, on the CPU N ranks of threads with host collectives,
  // unless --tp-devices / --tp-collectives say otherwise.
  TensorParallelOptions resolve(const Backend& backend) const;
};
void add_tensor_parallel_flags(CLI::App* cmd, TensorParallelFlags& flags);

// --threads: 0 = all cores. Applies it to the default thread pool (which engines take their thread
// count from: base/thread_pool.h) and to OpenMP (the offline loops).
void add_threads_flag(CLI::App* cmd, int& threads);
void apply_threads(int threads);

// "4096", "512K", "512M", "4G", "1.5GiB" (K/M/G/T, binary: 1K = 1024) -> bytes. Throws Error
// naming `what` for anything else.
size_t parse_byte_size(const std::string& s, const std::string& what);

// What `run` and `chat` take from the command line about generation.
struct GenerationFlags {
  GenerateOptions gen;          // sampling is filled by resolve()
  SamplingOverrides sampling;   // only what the user gave
  std::string kv_type = "bf16";
  std::string kv_memory;  // "" = no cap; else a size such as 512M or 4G
  // gen with the sampling settings of resolve_sampling(the model's generation_config.json, sampling).
  GenerateOptions resolve(const Model& model) const;
  KvType kv() const { return parse_kv_type(kv_type); }
  size_t kv_bytes() const { return kv_memory.empty() ? 0 : parse_byte_size(kv_memory, "--kv-memory"); }
};

// --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n, --seed, -n, --stop,
// --ignore-eos, --kv-type.
void add_generation_flags(CLI::App* cmd, GenerationFlags& flags);

// Peak resident memory of this process so far, in bytes.
size_t peak_rss_bytes();

// "load 0.12 s | prompt 7 tokens, 812.3 tok/s | generated 64 tokens, 95.1 tok/s | peak memory 61.2 MiB",
// and on a GPU " | cuda:0 (...): 7018.8 MiB in use" (device memory).
std::string speed_report(double load_seconds, const GenerateStats& st, const Backend& backend);

}  // namespace upg::cli
