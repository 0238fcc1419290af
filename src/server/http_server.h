// `upg serve`: the OpenAI-compatible HTTP server (cpp-httplib) over one continuous-batching
// Scheduler per model. Routes: GET / (the chat page), GET /health, GET /metrics (Prometheus),
// GET /v1/models, POST /v1/chat/completions, POST /v1/completions (both with "stream": true as
// server-sent events ending in "data: [DONE]"). Errors are OpenAI's JSON error objects.
//
// Each HTTP connection runs on a thread of a pool; a request's thread waits on its RequestHandle
// while the model's scheduler thread runs the batch. A client that goes away is noticed at the next
// write (streams write every token; a waiting connection gets a keep-alive every 2 s) and its
// request is cancelled, freeing its cache blocks.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/model.h"
#include "runtime/scheduler.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
class Request;
class Response;
}  // namespace httplib

namespace upg::server {

struct ServedModel {
  std::string id;  // what requests name in "model"
  std::unique_ptr<Model> model;
  Tokenizer tokenizer;
  std::optional<std::string> chat_template;
  std::optional<std::string> generation_config;  // generation_config.json's text
  std::unique_ptr<Scheduler> scheduler;          // made by the Server
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                    // 0: any free port (see Server::port())
  std::string api_key;                // "": no authentication
  size_t max_body_bytes = 8u << 20;   // larger bodies get 413
  std::chrono::milliseconds shutdown_grace{10000};
  SchedulerOptions scheduler;         // per model (turns and observers are set by the Server)
};

class Server {
 public:
  // Starts one scheduler per model. Throws Error when two models share an id or none is given.
  Server(const ServerOptions& o, std::vector<std::unique_ptr<ServedModel>> models);
  ~Server();

  // Binds host:port; throws Error naming them when that fails. Returns the port bound.
  int bind();
  int port() const { return port_; }
  // Serves until stop(); returns after the listener closed.
  void run();
  // From any thread (a signal watcher): answers 503 to new requests, lets running requests finish
  // for up to shutdown_grace (then cancels them), closes the listener. Idempotent.
  void stop();

 private:
  void routes();
  const ServedModel& find_model(const std::string& id) const;
  void check_auth(const httplib::Request& req) const;
  void handle_generate(const std::string& body, httplib::Response& res, bool chat);
  void count_response(int status);

  ServerOptions opt_;
  std::vector<std::unique_ptr<ServedModel>> models_;
  std::unique_ptr<httplib::Server> http_;
  ComputeTurns turns_;
  Metrics metrics_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<int> in_flight_{0};
  int port_ = 0;
  int listen_fd_ = -1;
  static constexpr int kListenBacklog = 1024;
  static constexpr size_t kMaxDroppedBody = size_t{64} << 20;  // read past --max-body before giving up
};

// The chat page served at "/" (src/server/chat_page.html, embedded at build time).
extern const char* const kChatPageHtml;

}  // namespace upg::server
