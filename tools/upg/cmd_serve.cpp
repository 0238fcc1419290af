// upg serve --model PATH [--model PATH ...]: the OpenAI-compatible HTTP server (src/server).
// SIGINT/SIGTERM: new requests get 503, running ones finish within --shutdown-grace (then are
// cancelled), and the process exits 0.
#include <pthread.h>
#include <signal.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

#include "base/error.h"
#include "base/mapped_file.h"
#include "commands.h"
#include "loaded_model.h"
#include "server/http_server.h"

namespace upg::cli {

namespace {
struct ServeOptions {
  std::vector<std::string> models;
  std::vector<std::string> aliases;  // NAME=PATH
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key, api_key_file;
  int max_batch = 16;
  int max_queue = 64;
  int step_tokens = 256;
  int ctx = 0;
  int threads = 0;
  std::string device = "cpu";
  TensorParallelFlags tp;
  std::string kv_type = "bf16";
  std::string kv_memory = "2G";
  std::string max_body = "8M";
  double grace_seconds = 10;
};

// "refA-phi3-26m" for ../models/refA-phi3-26m/ or refA.upg.
std::string default_id(const std::string& path) {
  std::filesystem::path p(path);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();
  if (p.extension() == ".upg") return p.stem().string();
  return p.filename().string();
}

void serve(const ServeOptions& o) {
  apply_threads(o.threads);
  UPG_CHECK(o.api_key.empty() || o.api_key_file.empty(), "give either --api-key or --api-key-file, not both");
  std::string key = o.api_key;
  if (!o.api_key_file.empty()) {
    key = read_text_file(o.api_key_file);
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
    UPG_CHECK(!key.empty(), "--api-key-file ", o.api_key_file, " is empty");
  }
  std::vector<std::pair<std::string, std::string>> wanted;  // (id, path)
  for (const auto& p : o.models) wanted.emplace_back(default_id(p), p);
  for (const auto& a : o.aliases) {
    const size_t eq = a.find('=');
    UPG_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < a.size(), "--alias '", a, "' is not NAME=PATH");
    const std::string name = a.substr(0, eq), path = a.substr(eq + 1);
    bool renamed = false;
    for (auto& w : wanted)
      if (w.second == path && !renamed) {
        w.first = name;
        renamed = true;
      }
    if (!renamed) wanted.emplace_back(name, path);
  }
  UPG_CHECK(!wanted.empty(), "serve needs at least one --model PATH");

  server::ServerOptions so;
  so.host = o.host;
  so.port = o.port;
  so.api_key = key;
  so.max_body_bytes = parse_byte_size(o.max_body, "--max-body");
  UPG_CHECK(o.grace_seconds >= 0 && o.grace_seconds < 3600, "--shutdown-grace must be in [0, 3600) seconds");
  so.shutdown_grace = std::chrono::milliseconds(static_cast<int64_t>(o.grace_seconds * 1000));
  so.scheduler.max_batch = o.max_batch;
  so.scheduler.threads = o.threads;
  so.scheduler.max_queue = o.max_queue;
  so.scheduler.max_step_tokens = std::max(o.step_tokens, o.max_batch);
  so.scheduler.max_context = o.ctx;
  so.scheduler.kv.type = parse_kv_type(o.kv_type);
  so.scheduler.kv.max_bytes = o.kv_memory == "0" ? 0 : parse_byte_size(o.kv_memory, "--kv-memory");

  std::vector<std::unique_ptr<server::ServedModel>> models;
  for (const auto& [id, path] : wanted) {
    LoadedModel lm = load_model(path, o.device);
    so.scheduler.tp = o.tp.resolve(*lm.model->backend());  // the same for every model (one --device)
    auto m = std::make_unique<server::ServedModel>(server::ServedModel{
        id, std::move(lm.model), std::move(lm.tokenizer), lm.chat_template, std::nullopt, nullptr});
    m->generation_config = m->model->file_text("generation_config.json");
    std::cerr << "upg serve: loaded '" << id << "' from " << path << " in " << lm.load_seconds << " s\n";
    models.push_back(std::move(m));
  }

  // Signals go to one thread that waits for them; every other thread has them blocked.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  server::Server srv(so, std::move(models));
  const int port = srv.bind();
  std::string names;
  for (const auto& [id, path] : wanted) names += (names.empty() ? "" : ", ") + id;
  std::cerr << "upg serve: listening on http://" << o.host << ":" << port << " (models: " << names
            << "; chat page at /, API under /v1)" << std::endl;
  std::thread watcher([&srv, sigs] {
    int sig = 0;
    sigwait(&sigs, &sig);
    std::cerr << "upg serve: " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << ", shutting down" << std::endl;
    srv.stop();
  });
  srv.run();
  // The listener closed: from a signal (the watcher is done) or otherwise (wake the watcher).
  pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  std::cerr << "upg serve: stopped" << std::endl;
}
}  // namespace

void add_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  auto* cmd = app.add_subcommand("serve", "Serve models over an OpenAI-compatible HTTP API with continuous batching");
  cmd->add_option("-m,--model", o->models, "Hugging Face model directory or .upg file (repeatable); its id is the "
                                           "folder or file name");
  cmd->add_option("--alias", o->aliases, "NAME=PATH: serve PATH (or a --model of that path) under the id NAME (repeatable)");
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port to listen on (0: any free port)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' on /v1 and /metrics");
  cmd->add_option("--api-key-file", o->api_key_file, "Read the API key from this file");
  cmd->add_option("--max-batch", o->max_batch, "Requests decoded together per model")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--max-queue", o->max_queue, "Requests waiting per model before 429")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--step-tokens", o->step_tokens, "Tokens per engine step (decode tokens + prompt chunks)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("-c,--ctx", o->ctx, "Context length per request (0 = the model's maximum)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-type", o->kv_type, "KV cache type: f32, bf16, f16, q8")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16", "f16", "q8"}));
  cmd->add_option("--kv-memory", o->kv_memory, "KV cache cap per model, e.g. 512M, 4G (0 = none)")->capture_default_str();
  cmd->add_option("--max-body", o->max_body, "Largest request body accepted (413 beyond)")->capture_default_str();
  cmd->add_option("--shutdown-grace", o->grace_seconds, "Seconds running requests get to finish on SIGINT/SIGTERM")
      ->capture_default_str();
  add_threads_flag(cmd, o->threads);
  add_device_flag(cmd, o->device);
  add_tensor_parallel_flags(cmd, o->tp);
  cmd->callback([o] { serve(*o); });
}

}  // namespace upg::cli
