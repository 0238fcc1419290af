#include "server/http_server.h"

#include <httplib.h>

#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <set>
#include <thread>

#include "base/error.h"
#include "server/openai_protocol.h"
#include "tokenizer/chat_template.h"

namespace upg::server {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// cpp-httplib calls a content provider outside its exception handling, so an exception escaping
// one would reach std::terminate and end the server. Any failure ends just that reply (the
// connection is closed; the releaser still runs).
template <class F>
auto guarded(F provider) {
  return [provider = std::move(provider)](size_t offset, httplib::DataSink& sink) mutable -> bool {
    try {
      return provider(offset, sink);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "upg serve: reply failed: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "upg serve: reply failed\n");
    }
    return false;
  };
}

uint64_t random_u64() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

std::string random_id(const std::string& prefix) {
  static const char* hex = "0123456789abcdef";
  std::string s = prefix;
  for (int i = 0; i < 2; ++i) {
    uint64_t v = random_u64();
    for (int k = 0; k < 12; ++k, v >>= 4) s += hex[v & 15];
  }
  return s;
}

// Compares every byte whatever the contents, so timing does not tell how much of a key matched.
bool equal_constant_time(const std::string& a, const std::string& b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = static_cast<unsigned>(a.size() ^ b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump(error_body(e)), "application/json");
}

std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// One request's response, shared by the content provider and its releaser.
struct Reply {
  std::shared_ptr<RequestHandle> handle;
  const ServedModel* model = nullptr;
  bool chat = true, stream = false, include_usage = false, echo = false, want_logprobs = false;
  std::string id, model_id;
  int64_t created = 0;
  std::vector<int32_t> prompt;
  std::string prompt_text;
  std::unique_ptr<StreamDecoder> dec;  // generated token texts for logprobs
  // Gathered for a non-streamed answer:
  std::string text;
  std::vector<GeneratedToken> tokens, prompt_lp;
  std::vector<std::string> token_text;
  bool started = false, done = false;
  bool echo_pending = false;  // an echoed prompt not yet sent
  Clock::time_point last_write = Clock::now();

  std::vector<std::string> texts_of(const std::vector<GeneratedToken>& ts) {
    std::vector<std::string> out;
    for (const auto& t : ts) out.push_back(dec->push(t.id));
    return out;
  }
  json chunk_base() const {
    json c = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
              {"model", model_id}, {"system_fingerprint", "upg-" UPG_VERSION}};
    if (include_usage) c["usage"] = nullptr;
    return c;
  }
  json echo_logprobs(const std::vector<GeneratedToken>& gen, const std::vector<std::string>& gen_text,
                     size_t offset0) const {
    // Prompt tokens first (the first without a logprob), then the generated ones.
    std::vector<GeneratedToken> all;
    all.push_back(GeneratedToken{prompt[0], 0.0f, {}});
    all.insert(all.end(), prompt_lp.begin(), prompt_lp.end());
    std::vector<std::string> texts = token_texts(model->tokenizer, prompt);
    all.insert(all.end(), gen.begin(), gen.end());
    texts.insert(texts.end(), gen_text.begin(), gen_text.end());
    return completion_logprobs(model->tokenizer, all, texts, true, offset0);
  }
};

bool write_event(httplib::DataSink& sink, Reply& r, const json& j) {
  const std::string s = "data: " + dump(j) + "\n\n";
  r.last_write = Clock::now();
  return sink.write(s.data(), s.size());
}

// The error a request that ended without a reply answers with: the scheduler cancelled it (a
// shutdown: 503) or failed (500). nullopt when it finished normally.
std::optional<ApiError> failure_of(const GenerationUpdate& u) {
  if (u.finish_reason == "error") return ApiError(500, "server_error", u.error);
  if (u.finish_reason == "cancelled")
    return ApiError(503, "server_error", "the request was cancelled: the server is shutting down");
  return std::nullopt;
}

// Gathers an update into a non-streamed reply; when it is the last, returns the HTTP status and the
// body (else status 0).
std::pair<int, json> absorb_final(Reply& r, const GenerationUpdate& u) {
  r.text += u.text;
  r.prompt_lp.insert(r.prompt_lp.end(), u.prompt.begin(), u.prompt.end());
  const std::vector<std::string> texts = r.texts_of(u.tokens);
  r.token_text.insert(r.token_text.end(), texts.begin(), texts.end());
  r.tokens.insert(r.tokens.end(), u.tokens.begin(), u.tokens.end());
  if (!u.done) return {0, json()};
  r.done = true;
  if (auto e = failure_of(u)) return {e->status, error_body(*e)};
  json lp = nullptr;
  json body = {{"id", r.id}, {"created", r.created}, {"model", r.model_id},
               {"system_fingerprint", "upg-" UPG_VERSION}, {"usage", usage_json(u.prompt_tokens, u.completion_tokens)}};
  if (r.chat) {
    if (r.want_logprobs) lp = chat_logprobs(r.model->tokenizer, r.tokens, r.token_text);
    body["object"] = "chat.completion";
    body["choices"] = {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", r.text}, {"refusal", nullptr}}},
                        {"logprobs", lp}, {"finish_reason", u.finish_reason}}};
  } else {
    if (r.want_logprobs)
      lp = r.echo ? r.echo_logprobs(r.tokens, r.token_text, 0)
                  : completion_logprobs(r.model->tokenizer, r.tokens, r.token_text, false, 0);
    body["object"] = "text_completion";
    body["choices"] = {{{"index", 0}, {"text", r.echo ? r.prompt_text + r.text : r.text}, {"logprobs", lp},
                        {"finish_reason", u.finish_reason}}};
  }
  return {200, body};
}

}  // namespace

Server::Server(const ServerOptions& o, std::vector<std::unique_ptr<ServedModel>> models)
    : opt_(o), models_(std::move(models)) {
  UPG_CHECK(!models_.empty(), "serve needs at least one --model");
  std::set<std::string> ids;
  for (const auto& m : models_) {
    UPG_CHECK(!m->id.empty(), "a model id is empty");
    UPG_CHECK(ids.insert(m->id).second, "two models are served under the same id '", m->id,
              "': give one of them another name with --alias NAME=PATH");
  }
  metrics_.describe("upg_requests_total", "counter", "HTTP requests answered, by status");
  metrics_.describe("upg_prompt_tokens_total", "counter", "Prompt tokens of finished requests");
  metrics_.describe("upg_generation_tokens_total", "counter", "Tokens generated by finished requests");
  metrics_.describe("upg_requests_finished_total", "counter", "Generation requests finished, by reason");
  metrics_.describe("upg_time_to_first_token_seconds", "histogram", "From queueing to the first generated token");
  metrics_.describe("upg_inter_token_latency_seconds", "histogram", "Between consecutive tokens of a request");
  metrics_.describe("upg_batch_tokens", "histogram", "Tokens (decode + prompt chunks) per engine step");
  metrics_.describe("upg_batch_sequences", "histogram", "Sequences per engine step");
  for (auto& m : models_) {
    SchedulerOptions so = opt_.scheduler;
    if (models_.size() > 1) so.turns = &turns_;
    const std::string l = "model=\"" + label(m->id) + "\"";
    Histogram* ttft = &metrics_.histogram("upg_time_to_first_token_seconds", l, latency_buckets());
    Histogram* itl = &metrics_.histogram("upg_inter_token_latency_seconds", l, latency_buckets());
    Histogram* bt = &metrics_.histogram("upg_batch_tokens", l, size_buckets());
    Histogram* bs = &metrics_.histogram("upg_batch_sequences", l, size_buckets());
    Metrics* mx = &metrics_;
    so.on_first_token = [ttft](double s) { ttft->observe(s); };
    so.on_next_token = [itl](double s) { itl->observe(s); };
    so.on_step = [bt, bs](int entries, int seqs) {
      bt->observe(entries);
      bs->observe(seqs);
    };
    so.on_finish = [mx, l](int p, int c, const std::string& reason) {
      mx->add("upg_prompt_tokens_total", l, p);
      mx->add("upg_generation_tokens_total", l, c);
      mx->add("upg_requests_finished_total", l + ",reason=\"" + reason + "\"");
    };
    m->scheduler = std::make_unique<Scheduler>(*m->model, m->tokenizer, so);
  }
  metrics_.add_gauges([this](std::string& out) {
    out += "# HELP upg_queue_depth Requests waiting to start\n# TYPE upg_queue_depth gauge\n";
    std::string running = "# HELP upg_running_requests Requests in the running batch\n# TYPE upg_running_requests gauge\n";
    std::string kv = "# HELP upg_kv_cache_blocks_in_use KV cache blocks held (sequences and shared prefixes)\n"
                     "# TYPE upg_kv_cache_blocks_in_use gauge\n";
    std::string kvp = "# HELP upg_kv_cache_prefix_blocks KV cache blocks kept as shared prefixes\n"
                      "# TYPE upg_kv_cache_prefix_blocks gauge\n";
    std::string kvmax = "# HELP upg_kv_cache_blocks_max KV cache block cap (0: none)\n# TYPE upg_kv_cache_blocks_max gauge\n";
    std::string kvb = "# HELP upg_kv_cache_bytes_allocated KV cache memory allocated\n"
                      "# TYPE upg_kv_cache_bytes_allocated gauge\n";
    for (const auto& m : models_) {
      const auto st = m->scheduler->stats();
      const std::string l = "{model=\"" + label(m->id) + "\"} ";
      out += "upg_queue_depth" + l + std::to_string(st.waiting) + "\n";
      running += "upg_running_requests" + l + std::to_string(st.running) + "\n";
      kv += "upg_kv_cache_blocks_in_use" + l + std::to_string(st.kv_blocks_in_use) + "\n";
      kvp += "upg_kv_cache_prefix_blocks" + l + std::to_string(st.kv_blocks_cached_prefix) + "\n";
      kvmax += "upg_kv_cache_blocks_max" + l + std::to_string(st.kv_max_blocks) + "\n";
      kvb += "upg_kv_cache_bytes_allocated" + l + std::to_string(st.kv_bytes_allocated) + "\n";
    }
    out += running + kv + kvp + kvmax + kvb;
  });
  http_ = std::make_unique<httplib::Server>();
  routes();
}

Server::~Server() {
  stop();
}

const ServedModel& Server::find_model(const std::string& id) const {
  for (const auto& m : models_)
    if (m->id == id) return *m;
  std::string names;
  for (const auto& m : models_) names += (names.empty() ? "" : ", ") + m->id;
  throw ApiError(404, "invalid_request_error", "The model '" + id + "' does not exist; this server has: " + names,
                 "model", "model_not_found");
}

void Server::check_auth(const httplib::Request& req) const {
  if (opt_.api_key.empty()) return;
  const std::string h = req.get_header_value("Authorization");
  const std::string bearer = "Bearer ";
  if (h.rfind(bearer, 0) != 0)
    throw ApiError(401, "authentication_error", "missing API key: send the header 'Authorization: Bearer KEY'", "",
                   "invalid_api_key");
  if (!equal_constant_time(h.substr(bearer.size()), opt_.api_key))
    throw ApiError(401, "authentication_error", "invalid API key", "", "invalid_api_key");
}

void Server::count_response(int status) { metrics_.add("upg_requests_total", "status=\"" + std::to_string(status) + "\""); }

int Server::bind() {
  // cpp-httplib 0.11 listens with a backlog of 5, which a burst of clients overflows (their SYNs are
  // dropped and retried a second later). Keep the listening socket to raise it after binding.
  http_->set_socket_options([this](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_fd_ = sock;
  });
  if (opt_.port == 0) {
    port_ = http_->bind_to_any_port(opt_.host);
    UPG_CHECK(port_ > 0, "cannot listen on ", opt_.host, " (not an address of this machine?)");
  } else {
    UPG_CHECK(http_->bind_to_port(opt_.host, opt_.port), "cannot listen on ", opt_.host, ":", opt_.port,
              " (address in use, or not an address of this machine)");
    port_ = opt_.port;
  }
  if (listen_fd_ >= 0) ::listen(listen_fd_, kListenBacklog);
  return port_;
}

void Server::run() { http_->listen_after_bind(); }

void Server::stop() {
  if (stopped_.exchange(true)) return;
  draining_ = true;
  // Let every scheduler finish (or, after the grace, cancel) its requests, all at once.
  std::vector<std::thread> ts;
  for (auto& m : models_)
    ts.emplace_back([s = m->scheduler.get(), grace = opt_.shutdown_grace] { s->shutdown(grace); });
  for (auto& t : ts) t.join();
  // Handlers now see their requests done; give them a moment to write the last bytes.
  for (int i = 0; i < 200 && in_flight_.load() > 0; ++i) std::this_thread::sleep_for(10ms);
  http_->stop();
}

void Server::routes() {
  auto& s = *http_;
  // A thread per connection that may be waiting on a request: every model's queue and batch.
  const size_t threads = std::min<size_t>(
      8 + models_.size() * static_cast<size_t>(opt_.scheduler.max_queue + opt_.scheduler.max_batch), 1024);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_payload_max_length(opt_.max_body_bytes);
  s.set_read_timeout(30, 0);
  s.set_write_timeout(30, 0);

  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    try {
      if (draining_ && req.path != "/health") throw ApiError(503, "server_error", "the server is shutting down");
      if (req.path.rfind("/v1/", 0) == 0 || req.path == "/metrics") check_auth(req);
    } catch (const ApiError& e) {
      send_error(res, e);
      count_response(e.status);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg = "HTTP " + std::to_string(res.status);
    std::string type = "invalid_request_error";
    if (res.status == 404) msg = "no route for " + req.method + " " + req.path;
    if (res.status == 413)
      msg = "the request body is larger than the server accepts (" + std::to_string(opt_.max_body_bytes) + " bytes)";
    if (res.status >= 500) type = "server_error";
    send_error(res, ApiError(res.status, type, msg));
    count_response(res.status);
  });
  s.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "server_error", msg));
    count_response(500);
  });

  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kChatPageHtml, "text/html; charset=utf-8");
  });
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump({{"status", draining_ ? "shutting down" : "ok"}}), "application/json");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json data = json::array();
    for (const auto& m : models_) {
      const auto& c = m->model->config();
      data.push_back({{"id", m->id},
                      {"object", "model"},
                      {"created", 0},
                      {"owned_by", "upg"},
                      {"meta",
                       {{"architecture", c.architecture},
                        {"parameters", m->model->parameter_count()},
                        {"weight_bytes", m->model->weight_bytes()},
                        {"context_length", m->scheduler->max_context()},
                        {"has_chat_template", m->chat_template.has_value()}}}});
    }
    res.set_content(dump({{"object", "list"}, {"data", data}}), "application/json");
    count_response(200);
  });
  // Bodies are read here, chunk by chunk, so --max-body holds for chunked uploads too (cpp-httplib
  // checks it only against Content-Length).
  auto post = [this](bool chat) {
    return [this, chat](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
      std::string body;
      bool too_big = req.has_header("Content-Length") &&
                     std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10) > opt_.max_body_bytes;
      // Past the cap the rest is read and dropped (up to a bound), so the client, still sending,
      // gets to read the 413 instead of a reset connection.
      size_t dropped = 0;
      const bool read = !too_big && reader([&](const char* data, size_t n) {
        if (too_big || body.size() + n > opt_.max_body_bytes) {
          too_big = true;
          body.clear();
          dropped += n;
          return dropped <= kMaxDroppedBody;
        }
        body.append(data, n);
        return true;
      });
      if (too_big) {
        res.set_header("Connection", "close");
        send_error(res, ApiError(413, "invalid_request_error",
                                 "the request body is larger than the server accepts (" +
                                     std::to_string(opt_.max_body_bytes) + " bytes)"));
        count_response(413);
        return;
      }
      if (!read && !too_big) {
        res.set_header("Connection", "close");
        send_error(res, ApiError(400, "invalid_request_error", "the request body could not be read"));
        count_response(400);
        return;
      }
      handle_generate(body, res, chat);
    };
  };
  s.Post("/v1/chat/completions", post(true));
  s.Post("/v1/completions", post(false));
}

void Server::handle_generate(const std::string& body, httplib::Response& res, bool chat) {
  auto r = std::make_shared<Reply>();
  try {
    ApiRequest a = parse_request(body, chat ? Endpoint::Chat : Endpoint::Completion);
    const ServedModel& m = find_model(a.model);
    const Tokenizer& tok = m.tokenizer;
    Scheduler& sched = *m.scheduler;
    if (chat) {
      if (!m.chat_template)
        throw ApiError(400, "invalid_request_error",
                       "the model '" + m.id + "' has no chat template; use /v1/completions with a prompt", "messages");
      std::string text;
      try {
        text = apply_chat_template(*m.chat_template, a.messages, true, tok.bos_token(), tok.eos_token());
      } catch (const ChatTemplateException& e) {
        bad_request(std::string("the model's chat template refused the messages: ") + e.what(), "messages");
      } catch (const Error& e) {
        bad_request(std::string("rendering the model's chat template failed: ") + e.what(), "messages");
      }
      r->prompt = tok.encode(text, false);
    } else if (a.prompt_is_ids) {
      r->prompt = a.prompt_ids;
      for (int32_t id : r->prompt)
        if (id >= tok.vocab_size() && id >= m.model->config().vocab_size)
          bad_request("'prompt' holds token id " + std::to_string(id) + ", outside the vocabulary of " +
                          std::to_string(m.model->config().vocab_size),
                      "prompt");
      r->prompt_text = tok.decode(r->prompt, true);
    } else {
      r->prompt = tok.encode(a.prompt_text, true);
      if (r->prompt.empty() && tok.bos_id()) r->prompt.push_back(*tok.bos_id());
      r->prompt_text = a.prompt_text;
    }
    if (r->prompt.empty()) bad_request("the prompt is empty and the model has no BOS token to start from", "prompt");
    const int64_t ctx = sched.max_context();
    const int64_t n = static_cast<int64_t>(r->prompt.size());
    if (n > ctx)
      throw ApiError(400, "invalid_request_error",
                     "This model's maximum context length is " + std::to_string(ctx) + " tokens; the prompt has " +
                         std::to_string(n) + " tokens",
                     chat ? "messages" : "prompt", "context_length_exceeded");
    if (a.max_tokens && n + *a.max_tokens > ctx)
      throw ApiError(400, "invalid_request_error",
                     "This model's maximum context length is " + std::to_string(ctx) + " tokens; you requested " +
                         std::to_string(n + *a.max_tokens) + " (" + std::to_string(n) + " in the prompt, " +
                         std::to_string(*a.max_tokens) + " to generate)",
                     "max_tokens", "context_length_exceeded");
    GenerationRequest g;
    g.prompt = r->prompt;
    g.max_new_tokens = static_cast<int>(a.max_tokens.value_or(chat ? ctx - n : std::min<int64_t>(16, ctx - n)));
    SamplingOverrides ov = a.sampling;
    if (!ov.repeat_penalty) ov.repeat_penalty = 1.0f;  // OpenAI's API has none; only the extension field sets it
    if (!ov.seed) ov.seed = random_u64();
    try {
      g.sampling = resolve_sampling(m.generation_config, ov);
    } catch (const Error& e) {
      throw ApiError(500, "server_error", e.what());
    }
    if (a.presence_penalty) g.sampling.presence_penalty = *a.presence_penalty;
    if (a.frequency_penalty) g.sampling.frequency_penalty = *a.frequency_penalty;
    g.stop_strings = a.stop;
    g.stop_at_eos = !a.ignore_eos;
    g.logprobs = a.logprobs;
    g.prompt_logprobs = !chat && a.echo && a.logprobs >= 0;
    try {
      r->handle = sched.submit(std::move(g));
    } catch (const QueueFull& e) {
      throw ApiError(429, "rate_limit_error", e.what(), "", "queue_full");
    } catch (const Error& e) {
      throw ApiError(stopped_ ? 503 : 400, stopped_ ? "server_error" : "invalid_request_error", e.what());
    }
    r->model = &m;
    r->chat = chat;
    r->stream = a.stream;
    r->include_usage = a.include_usage;
    r->echo = !chat && a.echo;
    r->echo_pending = r->echo;
    r->want_logprobs = a.logprobs >= 0;
    r->id = random_id(chat ? "chatcmpl-" : "cmpl-");
    r->model_id = m.id;
    r->created = static_cast<int64_t>(std::time(nullptr));
    r->dec = std::make_unique<StreamDecoder>(tok, /*skip_special=*/true);
  } catch (const ApiError& e) {
    send_error(res, e);
    count_response(e.status);
    return;
  }
  count_response(200);
  ++in_flight_;

  auto releaser = [this, r](bool) {
    if (!r->done) r->handle->cancel();
    --in_flight_;
  };
  if (r->stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        guarded([r](size_t, httplib::DataSink& sink) {
          if (!r->started) {
            r->started = true;
            json c = r->chunk_base();
            if (r->chat) {
              c["choices"] = {{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                               {"logprobs", nullptr}, {"finish_reason", nullptr}}};
              if (!write_event(sink, *r, c)) return false;
            } else if (r->echo && !r->want_logprobs) {
              c["choices"] = {{{"index", 0}, {"text", r->prompt_text}, {"logprobs", nullptr}, {"finish_reason", nullptr}}};
              r->echo_pending = false;
              if (!write_event(sink, *r, c)) return false;
            }
          }
          GenerationUpdate u;
          if (!r->handle->wait(u, 200ms)) {
            if (Clock::now() - r->last_write > 2s) {
              static const char ping[] = ": keep-alive\n\n";
              r->last_write = Clock::now();
              return sink.write(ping, sizeof ping - 1);
            }
            return true;
          }
          r->prompt_lp.insert(r->prompt_lp.end(), u.prompt.begin(), u.prompt.end());
          const std::vector<std::string> texts = r->texts_of(u.tokens);
          const auto failure = u.done ? failure_of(u) : std::nullopt;
          if (failure) {
            r->done = true;
            write_event(sink, *r, error_body(*failure));
            static const char end[] = "data: [DONE]\n\n";
            sink.write(end, sizeof end - 1);
            sink.done();
            return true;
          }
          // With logprobs, an echoed prompt goes out with the first generated token (its logprobs
          // need the whole prompt run).
          const bool echo_now = r->echo_pending && (!u.tokens.empty() || u.done);
          if (!u.text.empty() || (r->want_logprobs && !u.tokens.empty()) || echo_now) {
            json c = r->chunk_base();
            json lp = nullptr;
            if (r->want_logprobs) {
              if (r->chat) lp = chat_logprobs(r->model->tokenizer, u.tokens, texts);
              else if (echo_now) lp = r->echo_logprobs(u.tokens, texts, 0);
              else lp = completion_logprobs(r->model->tokenizer, u.tokens, texts, false, 0);
            }
            const std::string piece = (echo_now ? r->prompt_text : std::string()) + u.text;
            r->echo_pending = r->echo_pending && !echo_now;
            r->text += u.text;
            if (r->chat)
              c["choices"] = {{{"index", 0}, {"delta", {{"content", piece}}}, {"logprobs", lp}, {"finish_reason", nullptr}}};
            else
              c["choices"] = {{{"index", 0}, {"text", piece}, {"logprobs", lp}, {"finish_reason", nullptr}}};
            if (!write_event(sink, *r, c)) return false;
          }
          if (u.done) {
            r->done = true;
            json c = r->chunk_base();
            if (r->chat)
              c["choices"] = {{{"index", 0}, {"delta", json::object()}, {"logprobs", nullptr},
                               {"finish_reason", u.finish_reason}}};
            else
              c["choices"] = {{{"index", 0}, {"text", ""}, {"logprobs", nullptr},
                               {"finish_reason", u.finish_reason}}};
            if (!write_event(sink, *r, c)) return false;
            if (r->include_usage) {
              json uc = r->chunk_base();
              uc["choices"] = json::array();
              uc["usage"] = usage_json(u.prompt_tokens, u.completion_tokens);
              if (!write_event(sink, *r, uc)) return false;
            }
            static const char end[] = "data: [DONE]\n\n";
            if (!sink.write(end, sizeof end - 1)) return false;
            sink.done();
          }
          return true;
        }),
        releaser);
    return;
  }

  // Not streamed: one JSON object when done. Short replies are answered from here, with the status
  // telling what happened (200, or 503 when cancelled by a shutdown, 500 on an internal error). A
  // reply still running after 2 s continues as a chunked response that gets a space (JSON allows
  // leading whitespace) every 2 s while waiting, which is how a client that left is noticed; such a
  // reply has already sent "200" when it ends in an error, and carries the error object instead.
  const auto answer_by = Clock::now() + 2s;
  while (Clock::now() < answer_by) {
    GenerationUpdate u;
    if (!r->handle->wait(u, std::chrono::duration_cast<std::chrono::milliseconds>(answer_by - Clock::now())))
      continue;
    auto [status, body] = absorb_final(*r, u);
    if (status == 0) continue;
    res.status = status;
    res.set_content(dump(body), "application/json");
    --in_flight_;
    return;
  }
  res.set_chunked_content_provider(
      "application/json",
      guarded([r](size_t, httplib::DataSink& sink) {
        GenerationUpdate u;
        if (!r->handle->wait(u, 200ms)) {
          if (Clock::now() - r->last_write > 2s) {
            r->last_write = Clock::now();
            return sink.write(" ", 1);
          }
          return true;
        }
        auto [status, body] = absorb_final(*r, u);
        if (status == 0) return true;
        const std::string s = dump(body);
        if (!sink.write(s.data(), s.size())) return false;
        sink.done();
        return true;
      }),
      releaser);
}

}  // namespace upg::server
