// The continuous-batching scheduler: requests submitted together (more than max_batch, prompts
// chunked across steps) give exactly the tokens generate() gives each one alone; preemption under a
// small cache cap keeps outputs unchanged; cancellation frees cache blocks; the queue bound; stop
// strings; logprobs against a log-softmax of Session logits; validation errors; shutdown.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <thread>

#include "base/error.h"
#include "runtime/generate.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "test_util.h"
#include "tiny_model.h"
#include "tiny_tokenizer.h"

using namespace upg;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  std::unique_ptr<Model> model;
  Tokenizer tok;
};

const Fixture& tiny() {
  static Fixture f{test::tiny_text_model("sched"), test::tiny_text_tokenizer()};
  return f;
}

std::vector<int32_t> prompt_of(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = static_cast<int32_t>(32 + rng() % 90);  // printable bytes
  return v;
}

GenerationRequest greedy(std::vector<int32_t> prompt, int max_new) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_new_tokens = max_new;
  r.sampling.temperature = 0;
  r.stop_at_eos = false;
  return r;
}

struct Reply {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<GeneratedToken> tokens, prompt;
  std::string finish;
  int prompt_tokens = 0, completion_tokens = 0;
};

Reply collect(RequestHandle& h) {
  Reply r;
  GenerationUpdate u;
  for (int i = 0; i < 600; ++i) {
    if (!h.wait(u, 100ms)) continue;
    r.text += u.text;
    for (auto& t : u.tokens) {
      r.ids.push_back(t.id);
      r.tokens.push_back(t);
    }
    r.prompt.insert(r.prompt.end(), u.prompt.begin(), u.prompt.end());
    r.prompt_tokens = u.prompt_tokens;
    r.completion_tokens = u.completion_tokens;
    if (u.done) {
      r.finish = u.finish_reason;
      return r;
    }
  }
  ADD_FAILURE() << "request did not finish within 60 s";
  return r;
}

// generate() on a Session alone, f32 cache: the reference.
std::pair<std::vector<int32_t>, std::string> alone(const GenerationRequest& r) {
  Session s(*tiny().model, 0, KvType::F32);
  GenerateOptions g;
  g.max_new_tokens = r.max_new_tokens;
  g.sampling = r.sampling;
  g.stop_at_eos = r.stop_at_eos;
  g.stop_strings = r.stop_strings;
  std::string text;
  auto ids = generate(s, tiny().tok, r.prompt, g, [&](const std::string& p) {
    text += p;
    return true;
  });
  return {ids, text};
}

// The scheduler's stats once its worker has retired everything (it updates them after posting the
// last update, so a caller that just saw "done" may briefly see the step before).
SchedulerStats idle_stats(const Scheduler& sched) {
  SchedulerStats st;
  for (int i = 0; i < 500; ++i) {
    st = sched.stats();
    if (st.running == 0 && st.waiting == 0 && st.kv_blocks_in_use == st.kv_blocks_cached_prefix) break;
    std::this_thread::sleep_for(10ms);
  }
  return st;
}

SchedulerOptions options(int max_batch, int step_tokens, size_t kv_bytes = 0) {
  SchedulerOptions o;
  o.max_batch = max_batch;
  o.max_step_tokens = step_tokens;
  o.kv.type = KvType::F32;
  o.kv.max_bytes = kv_bytes;
  return o;
}

// One schedule every run: the worker takes request 0 and waits for the turn we hold before its
// first step while the others are queued, so step 1 runs request 0 alone and all the others compete
// for the batch and the cache from step 2 on. (The worker takes what is queued when it wakes, before
// it waits for the turn: without the wait below, its first step held whichever requests had arrived
// by then, and a different schedule could need no preemption at all.)
void expect_all_match_alone(SchedulerOptions o, int requests, SchedulerStats* stats_out = nullptr) {
  ComputeTurns turns;
  o.turns = &turns;
  turns.lock();
  Scheduler sched(*tiny().model, tiny().tok, o);
  std::vector<GenerationRequest> reqs;
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int i = 0; i < requests; ++i) {
    reqs.push_back(greedy(prompt_of(3 + 7 * i % 40, 100 + i), 12 + i % 9));
    hs.push_back(sched.submit(reqs.back()));
    if (i == 0) {
      for (int k = 0; k < 500 && sched.stats().running == 0; ++k) std::this_thread::sleep_for(10ms);
      if (sched.stats().running != 1) {
        turns.unlock();  // (or ~Scheduler would wait for a worker waiting for the turn)
        FAIL() << "the worker did not take request 0 within 5 s";
      }
    }
  }
  turns.unlock();
  for (int i = 0; i < requests; ++i) {
    Reply got = collect(*hs[i]);
    auto [ids, text] = alone(reqs[i]);
    EXPECT_EQ(got.ids, ids) << "request " << i;
    EXPECT_EQ(got.text, text) << "request " << i;
    EXPECT_EQ(got.finish, "length");
    EXPECT_EQ(got.completion_tokens, static_cast<int>(ids.size()));
    EXPECT_EQ(got.prompt_tokens, static_cast<int>(reqs[i].prompt.size()));
  }
  auto st = idle_stats(sched);
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  EXPECT_EQ(st.kv_blocks_in_use, st.kv_blocks_cached_prefix) << "only published prefixes hold blocks";
  EXPECT_EQ(st.kv_bytes_allocated, static_cast<size_t>(st.kv_blocks_cached_prefix) * st.kv_block_bytes)
      << "idle: free blocks' memory is given back";
  if (stats_out) *stats_out = st;
}

}  // namespace

TEST(Scheduler, ConcurrentGreedyEqualsEachRequestAlone) {
  // 10 requests, 4 at a time, 8 tokens per step: prompts arrive in chunks next to decode tokens.
  expect_all_match_alone(options(4, 8), 10);
}

TEST(Scheduler, PreemptionUnderASmallCacheKeepsOutputs) {
  KvCache probe(2, 2, 16, KvCacheOptions{KvType::F32, 16, 0});
  SchedulerStats st;
  // Room for 7 blocks: 6 requests of up to 60 positions (4 blocks each) cannot all run.
  expect_all_match_alone(options(6, 64, 7 * probe.block_bytes()), 6, &st);
  EXPECT_GT(st.preemptions, 0u);
}

TEST(Scheduler, CancelFreesBlocksAndOthersContinue) {
  Scheduler sched(*tiny().model, tiny().tok, options(4, 32));
  auto keep_req = greedy(prompt_of(20, 5), 30);
  auto h_keep = sched.submit(keep_req);
  auto h_cancel = sched.submit(greedy(prompt_of(30, 6), 200));
  GenerationUpdate u;
  ASSERT_TRUE(h_cancel->wait(u, 30s));
  h_cancel->cancel();
  Reply c = collect(*h_cancel);
  EXPECT_EQ(c.finish, "cancelled");
  Reply k = collect(*h_keep);
  EXPECT_EQ(k.ids, alone(keep_req).first);
  auto st = idle_stats(sched);
  EXPECT_EQ(st.kv_blocks_in_use, st.kv_blocks_cached_prefix);
}

TEST(Scheduler, QueueBound) {
  ComputeTurns turns;
  auto o = options(1, 16);
  o.max_queue = 1;
  o.turns = &turns;
  turns.lock();  // the worker cannot run a step until we let it
  Scheduler sched(*tiny().model, tiny().tok, o);
  auto h1 = sched.submit(greedy(prompt_of(5, 1), 4));
  for (int i = 0; i < 500 && sched.stats().running == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(sched.stats().running, 1);
  auto h2 = sched.submit(greedy(prompt_of(5, 2), 4));
  EXPECT_THROW(sched.submit(greedy(prompt_of(5, 3), 4)), QueueFull);
  turns.unlock();
  EXPECT_EQ(collect(*h1).finish, "length");
  EXPECT_EQ(collect(*h2).finish, "length");
}

TEST(Scheduler, StopStringCutsTheText) {
  auto r = greedy(prompt_of(9, 42), 24);
  auto [ids, text] = alone(r);
  ASSERT_GE(text.size(), 8u);
  const std::string stop = text.substr(text.size() / 2, 3);
  r.stop_strings = {stop};
  Scheduler sched(*tiny().model, tiny().tok, options(2, 16));
  Reply got = collect(*sched.submit(r));
  EXPECT_EQ(got.finish, "stop");
  EXPECT_EQ(got.text, text.substr(0, text.find(stop)));
}

TEST(Scheduler, LogprobsMatchALogSoftmaxOfSessionLogits) {
  const auto prompt = prompt_of(12, 9);
  GenerationRequest r = greedy(prompt, 5);
  r.logprobs = 3;
  r.prompt_logprobs = true;
  Scheduler sched(*tiny().model, tiny().tok, options(2, 5));  // the prompt runs in 3 chunks
  Reply got = collect(*sched.submit(r));
  ASSERT_EQ(got.prompt.size(), prompt.size() - 1);
  ASSERT_EQ(got.tokens.size(), 5u);
  // Reference: every position's logits from one Session run of prompt + generated.
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), got.ids.begin(), got.ids.end());
  Session s(*tiny().model, 0, KvType::F32);
  std::vector<float> logits;
  s.forward(all, logits, true);
  const int64_t V = 302;
  auto logprob = [&](size_t pos, int32_t id) {
    const float* row = logits.data() + pos * V;
    double mx = *std::max_element(row, row + V), sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(row[i] - mx);
    return row[id] - mx - std::log(sum);
  };
  for (size_t i = 0; i < got.prompt.size(); ++i) {
    EXPECT_EQ(got.prompt[i].id, prompt[i + 1]);
    EXPECT_NEAR(got.prompt[i].logprob, logprob(i, prompt[i + 1]), 1e-4);
  }
  for (size_t i = 0; i < got.tokens.size(); ++i) {
    const auto& t = got.tokens[i];
    EXPECT_NEAR(t.logprob, logprob(prompt.size() - 1 + i, t.id), 1e-4);
    ASSERT_EQ(t.top.size(), 3u);
    EXPECT_EQ(t.top[0].id, t.id) << "greedy picks the most likely token";
    EXPECT_GE(t.top[0].logprob, t.top[1].logprob);
    EXPECT_GE(t.top[1].logprob, t.top[2].logprob);
    EXPECT_LE(t.top[0].logprob, 0.0f);
  }
  // max_new_tokens = 0: scoring only.
  r.max_new_tokens = 0;
  Reply score = collect(*sched.submit(r));
  EXPECT_EQ(score.finish, "length");
  EXPECT_EQ(score.completion_tokens, 0);
  EXPECT_EQ(score.prompt.size(), prompt.size() - 1);
}

TEST(Scheduler, SampledRequestsAreReproducibleBySeed) {
  Scheduler sched(*tiny().model, tiny().tok, options(4, 16));
  GenerationRequest r = greedy(prompt_of(7, 3), 16);
  r.sampling.temperature = 1.0f;
  r.sampling.top_k = 0;
  r.sampling.top_p = 1.0f;
  r.sampling.min_p = 0.0f;
  r.sampling.presence_penalty = 0.5f;
  r.sampling.frequency_penalty = 0.25f;
  r.sampling.seed = 1234;
  auto a = sched.submit(r);
  auto b = sched.submit(r);
  Reply ra = collect(*a), rb = collect(*b);
  EXPECT_EQ(ra.ids, rb.ids);
  EXPECT_EQ(ra.ids, alone(r).first);
}

TEST(Scheduler, BadRequestsNameTheProblem) {
  Scheduler sched(*tiny().model, tiny().tok, options(2, 16));
  test::expect_error([&] { sched.submit(greedy({}, 4)); }, "prompt is empty");
  test::expect_error([&] { sched.submit(greedy({1, 302}, 4)); }, "out of range");
  test::expect_error([&] { sched.submit(greedy(prompt_of(257, 1), 4)); }, "context holds 256");
  auto r = greedy(prompt_of(4, 1), 4);
  r.logprobs = 21;
  test::expect_error([&] { sched.submit(r); }, "logprobs");
  r.logprobs = -1;
  r.sampling.presence_penalty = 3;
  test::expect_error([&] { sched.submit(r); }, "presence penalty");
  // A prompt larger than the whole cache cap is refused up front.
  KvCache probe(2, 2, 16, KvCacheOptions{KvType::F32, 16, 0});
  Scheduler small(*tiny().model, tiny().tok, options(2, 16, 2 * probe.block_bytes()));
  test::expect_error([&] { small.submit(greedy(prompt_of(40, 1), 4)); }, "--kv-memory");
}

TEST(Scheduler, ShutdownCancelsWhatIsLeftAfterTheGrace) {
  auto o = options(2, 16);
  o.max_context = 1'000'000;  // the slow request cannot end by itself within the grace
  auto sched = std::make_unique<Scheduler>(*tiny().model, tiny().tok, o);
  auto fast = sched->submit(greedy(prompt_of(5, 1), 2));
  auto slow = sched->submit(greedy(prompt_of(5, 2), 100000));
  EXPECT_EQ(collect(*fast).finish, "length");
  sched->shutdown(50ms);
  EXPECT_EQ(collect(*slow).finish, "cancelled");
  test::expect_error([&] { sched->submit(greedy(prompt_of(5, 3), 2)); }, "shutting down");
}

// The scheduler over a model split between two ranks (threads with host collectives,
// runtime/tensor_parallel.h; what `upg serve --tp 2` runs): the same tokens as each request alone on
// the whole model, with prompts chunked beside decode tokens and prefixes published on every rank.
TEST(Scheduler, TensorParallelRanksServeTheSameTokens) {
  SchedulerOptions o = options(4, 8);
  o.tp = TensorParallelOptions{2, {}, "host"};
  expect_all_match_alone(o, 6);
}
