// The HTTP server in-process on a tiny random model (no ../shared needed, runs under the
// sanitizers): routes, authentication, OpenAI error objects and statuses, greedy text equal to
// generate(), streamed chunks in OpenAI's format, logprobs, the body cap, the context limit,
// metrics, and shutdown. (Real-client tests with the OpenAI SDK: tests/scripts/test_server.sh.)
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "runtime/generate.h"
#include "runtime/session.h"
#include "server/http_server.h"
#include "server/openai_protocol.h"
#include "test_util.h"
#include "tiny_model.h"
#include "tiny_tokenizer.h"

using namespace upg;
using nlohmann::json;

namespace {

std::unique_ptr<server::ServedModel> tiny_served(const std::string& id) {
  return std::make_unique<server::ServedModel>(server::ServedModel{
      id, test::tiny_text_model(id), test::tiny_text_tokenizer(),
      "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:", R"({"do_sample": false})",
      nullptr});
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server::ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.api_key = "sekret";
    o.max_body_bytes = 16 * 1024;
    o.shutdown_grace = std::chrono::milliseconds(200);
    o.scheduler.max_batch = 4;
    o.scheduler.max_step_tokens = 16;
    o.scheduler.kv.type = KvType::F32;
    std::vector<std::unique_ptr<server::ServedModel>> ms;
    ms.push_back(tiny_served("tiny"));
    ms.push_back(tiny_served("tiny2"));
    srv_ = new server::Server(o, std::move(ms));
    port_ = srv_->bind();
    thread_ = new std::thread([] { srv_->run(); });
  }
  static void TearDownTestSuite() {
    srv_->stop();
    thread_->join();
    delete thread_;
    delete srv_;
  }
  httplib::Client client(bool auth = true) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    if (auth) c.set_bearer_token_auth("sekret");
    return c;
  }
  json post(const std::string& path, const std::string& body, int expect_status, bool auth = true) {
    auto c = client(auth);
    auto r = c.Post(path, body, "application/json");
    EXPECT_TRUE(r) << "no response";
    if (!r) return {};
    EXPECT_EQ(r->status, expect_status) << r->body;
    auto j = json::parse(r->body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r->body;
    return j;
  }
  static void expect_error_object(const json& j, const std::string& needle) {
    ASSERT_TRUE(j.contains("error")) << j.dump();
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_TRUE(j["error"]["type"].is_string());
    EXPECT_NE(j.dump().find(needle), std::string::npos) << j.dump();
  }
  static server::Server* srv_;
  static std::thread* thread_;
  static int port_;
};
server::Server* ServerTest::srv_ = nullptr;
std::thread* ServerTest::thread_ = nullptr;
int ServerTest::port_ = 0;

// SSE "data: ..." payloads of a streamed response.
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end;
  }
  return out;
}

}  // namespace

TEST_F(ServerTest, HealthModelsAndThePage) {
  auto c = client(false);
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<html"), std::string::npos);
  auto m = client().Get("/v1/models");
  ASSERT_TRUE(m);
  auto j = json::parse(m->body);
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["data"][0]["id"], "tiny");
  EXPECT_EQ(j["data"][1]["id"], "tiny2");
}

TEST_F(ServerTest, AuthenticationIsRequiredOnTheApi) {
  auto c = client(false);
  auto r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  expect_error_object(json::parse(r->body), "API key");
  c.set_bearer_token_auth("sekreT");
  r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
}

TEST_F(ServerTest, BadRequestsGetOpenAiErrors) {
  expect_error_object(post("/v1/completions", "{not json", 400), "not valid JSON");
  expect_error_object(post("/v1/completions", "[1, 2]", 400), "JSON object");
  expect_error_object(post("/v1/completions", R"({"model": "tiny"})", 400), "prompt");
  expect_error_object(post("/v1/completions", R"({"model": "nope", "prompt": "x"})", 404), "model_not_found");
  expect_error_object(post("/v1/chat/completions", R"({"model": "tiny", "messages": 5})", 400), "messages");
  expect_error_object(post("/v1/chat/completions", R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n": 2})", 400), "\"n\"");
  expect_error_object(post("/v1/completions", R"({"model": "tiny", "prompt": "x", "temperature": 9})", 400), "temperature");
  expect_error_object(post("/v1/completions", R"({"model": "tiny", "prompt": "x", "max_tokens": "x"})", 400), "max_tokens");
  expect_error_object(post("/v1/completions", R"({"model": "tiny", "prompt": [1, 99999]})", 400), "vocabulary");
  expect_error_object(post("/v1/chat/completions", R"({"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]})", 400), "role");
  expect_error_object(post("/v1/chat/completions", R"({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", 400), "text");
  // Longer than the context (256 positions).
  json big = {{"model", "tiny"}, {"prompt", std::string(300, 'x')}};
  expect_error_object(post("/v1/completions", big.dump(), 400), "context_length_exceeded");
  json over = {{"model", "tiny"}, {"prompt", "abc"}, {"max_tokens", 1000}};
  expect_error_object(post("/v1/completions", over.dump(), 400), "maximum context length is 256");
  // Over the body cap (16 KiB).
  json huge = {{"model", "tiny"}, {"prompt", std::string(40000, 'a')}};
  expect_error_object(post("/v1/completions", huge.dump(), 413), "larger than");
  expect_error_object(post("/v1/nothing", "{}", 404), "no route");
  // A chunked upload (no Content-Length) over the cap: refused as it is read.
  auto c = client();
  const std::string part = "[" + std::string(4000, ' ') + "]";
  int sent = 0;
  auto r = c.Post(
      "/v1/completions",
      [&](size_t, httplib::DataSink& sink) {
        if (sent++ < 10) return sink.write(part.data(), part.size());
        sink.done();
        return true;
      },
      "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  expect_error_object(json::parse(r->body), "larger than");
}

TEST_F(ServerTest, GreedyCompletionEqualsGenerate) {
  const std::string prompt = "abc ab xyz";
  json req = {{"model", "tiny2"}, {"prompt", prompt}, {"max_tokens", 20}, {"temperature", 0}, {"ignore_eos", true}};
  json j = post("/v1/completions", req.dump(), 200);
  ASSERT_TRUE(j.contains("choices")) << j.dump();
  // The same with generate() on a Session.
  auto m = tiny_served("ref");
  Session s(*m->model, 0, KvType::F32);
  GenerateOptions g;
  g.max_new_tokens = 20;
  g.sampling.temperature = 0;
  g.stop_at_eos = false;
  std::string text;
  generate(s, m->tokenizer, m->tokenizer.encode(prompt, true), g, [&](const std::string& p) {
    text += p;
    return true;
  });
  EXPECT_EQ(j["choices"][0]["text"], text);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["usage"]["completion_tokens"], 20);
  EXPECT_EQ(j["usage"]["prompt_tokens"], static_cast<int>(m->tokenizer.encode(prompt, true).size()));
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int>() + 20);
  // Echo with logprobs: prompt + text; one logprob entry per token, the first null.
  req["echo"] = true;
  req["logprobs"] = 2;
  json e = post("/v1/completions", req.dump(), 200);
  EXPECT_EQ(e["choices"][0]["text"], prompt + text);
  const json& lp = e["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), e["usage"]["total_tokens"].get<size_t>());
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  std::string joined;
  for (const auto& t : lp["tokens"]) joined += t.get<std::string>();
  EXPECT_EQ(joined, prompt + text);
  for (size_t i = 1; i < lp["token_logprobs"].size(); ++i) {
    EXPECT_LE(lp["token_logprobs"][i].get<double>(), 0.0);
    EXPECT_LE(lp["top_logprobs"][i].size(), 2u);
  }
}

TEST_F(ServerTest, StreamedChatMatchesTheWholeReply) {
  json req = {{"model", "tiny"},
              {"messages", {{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", "hello"}}}},
              {"max_tokens", 12},
              {"temperature", 0},
              {"logprobs", true},
              {"top_logprobs", 3}};
  json whole = post("/v1/chat/completions", req.dump(), 200);
  ASSERT_TRUE(whole.contains("choices")) << whole.dump();
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"]["role"], "assistant");
  const auto& content = whole["choices"][0]["logprobs"]["content"];
  EXPECT_EQ(content.size(), whole["usage"]["completion_tokens"].get<size_t>());
  for (const auto& t : content) {
    ASSERT_EQ(t["top_logprobs"].size(), 3u);
    EXPECT_NEAR(t["logprob"].get<double>(), t["top_logprobs"][0]["logprob"].get<double>(), 1e-6) << "greedy";
  }
  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  auto c = client();
  auto r = c.Post("/v1/chat/completions", req.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  auto events = sse_data(r->body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  std::string finish;
  json usage;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    json ch = json::parse(events[i]);
    EXPECT_EQ(ch["object"], "chat.completion.chunk");
    EXPECT_EQ(ch["model"], "tiny");
    if (!ch["usage"].is_null()) {
      usage = ch["usage"];
      EXPECT_TRUE(ch["choices"].empty());
      EXPECT_EQ(i + 2, events.size()) << "usage comes last";
      continue;
    }
    const auto& d = ch["choices"][0]["delta"];
    if (d.contains("content")) text += d["content"].get<std::string>();
    if (!ch["choices"][0]["finish_reason"].is_null()) finish = ch["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, whole["choices"][0]["message"]["content"]);
  EXPECT_EQ(finish, whole["choices"][0]["finish_reason"]);
  EXPECT_EQ(usage, whole["usage"]);
}

TEST_F(ServerTest, StopStringsAndSeeds) {
  json req = {{"model", "tiny"}, {"prompt", "abc"}, {"max_tokens", 16}, {"temperature", 0}, {"ignore_eos", true}};
  json base = post("/v1/completions", req.dump(), 200);
  const std::string text = base["choices"][0]["text"];
  // The stop string: the text's 3rd and 4th characters (whole UTF-8 characters).
  std::vector<size_t> starts;
  for (size_t i = 0; i < text.size(); ++i)
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) starts.push_back(i);
  starts.push_back(text.size());
  ASSERT_GE(starts.size(), 6u);
  const std::string stop = text.substr(starts[2], starts[4] - starts[2]);
  req["stop"] = json::array({stop});
  json cut = post("/v1/completions", req.dump(), 200);
  EXPECT_EQ(cut["choices"][0]["text"], text.substr(0, text.find(stop)));
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
  json s = {{"model", "tiny"}, {"prompt", "abc"}, {"max_tokens", 16}, {"temperature", 1.0}, {"seed", 77},
            {"ignore_eos", true}, {"presence_penalty", 0.5}};
  EXPECT_EQ(post("/v1/completions", s.dump(), 200)["choices"][0]["text"],
            post("/v1/completions", s.dump(), 200)["choices"][0]["text"]);
}

TEST_F(ServerTest, MetricsCountRequestsAndTokens) {
  post("/v1/completions", R"({"model": "tiny", "prompt": "ab", "max_tokens": 3, "temperature": 0})", 200);
  auto r = client().Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  for (const char* name : {"upg_requests_total", "upg_generation_tokens_total{model=\"tiny\"}",
                           "upg_time_to_first_token_seconds_bucket", "upg_inter_token_latency_seconds_count",
                           "upg_queue_depth{model=\"tiny\"}", "upg_kv_cache_blocks_in_use{model=\"tiny2\"}",
                           "upg_batch_tokens_sum"})
    EXPECT_NE(r->body.find(name), std::string::npos) << name;
}

TEST(ServerProtocol, TokenTextsJoinToTheDecodedText) {
  auto tok = test::tiny_text_tokenizer();
  const std::vector<int32_t> ids = tok.encode("abc ab \xC3\xA9t\xC3\xA9", false);
  std::string joined;
  for (const auto& t : server::token_texts(tok, ids)) joined += t;
  EXPECT_EQ(joined, "abc ab \xC3\xA9t\xC3\xA9");
}

TEST(ServerProtocol, ParseChecksTypesAndRanges) {
  using server::Endpoint;
  auto a = server::parse_request(
      R"({"model": "m", "messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
          "max_completion_tokens": 7, "top_logprobs": 2, "logprobs": true, "stop": "x", "seed": -3, "top_p": 0.5})",
      Endpoint::Chat);
  EXPECT_EQ(a.messages[0]["role"], "system");
  EXPECT_EQ(a.messages[0]["content"], "ab");
  EXPECT_EQ(a.max_tokens, 7);
  EXPECT_EQ(a.logprobs, 2);
  EXPECT_EQ(a.stop, std::vector<std::string>{"x"});
  EXPECT_FLOAT_EQ(*a.sampling.top_p, 0.5f);
  auto fails = [](const std::string& body, Endpoint e, const std::string& needle) {
    try {
      server::parse_request(body, e);
      ADD_FAILURE() << "accepted: " << body;
    } catch (const server::ApiError& err) {
      EXPECT_EQ(err.status, 400);
      EXPECT_NE(err.message.find(needle), std::string::npos) << err.message;
    }
  };
  fails(R"({"model": "m", "messages": [{"role": "user", "content": "a"}], "top_logprobs": 2})", Endpoint::Chat, "logprobs");
  fails(R"({"model": "m", "messages": [{"role": "user", "content": "a"}], "top_logprobs": 99, "logprobs": true})", Endpoint::Chat, "top_logprobs");
  fails(R"({"model": "m", "prompt": "a", "stream_options": {"include_usage": true}})", Endpoint::Completion, "stream_options");
  fails(R"({"model": "m", "prompt": "a", "stop": ["a", 3]})", Endpoint::Completion, "stop");
  fails(R"({"model": "m", "prompt": "a", "stop": [""]})", Endpoint::Completion, "empty");
  fails(R"({"model": "m", "prompt": ["a", "b"]})", Endpoint::Completion, "prompt");
  fails(R"({"model": "m", "prompt": "a", "frequency_penalty": -3})", Endpoint::Completion, "frequency_penalty");
  fails(R"({"model": "m", "prompt": "a", "max_tokens": 1e400})", Endpoint::Completion, "");
  fails(R"({"model": 5, "prompt": "a"})", Endpoint::Completion, "model");
}
