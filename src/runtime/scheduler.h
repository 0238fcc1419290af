// Continuous batching over one Engine (or a tensor-parallel group: SchedulerOptions::tp): requests
// from any number of callers join and leave the running batch at every step. A worker thread
// repeats: drop cancelled requests, admit waiting ones (up to max_batch running), build one step
// from one decode token per running request plus chunks of waiting prompts (up to max_step_tokens
// in all, so a long prompt does not stall the streams), run it, sample each request's next token
// and send it to the request's handle.
//
// The KV cache is paged and capped (KvCacheOptions::max_bytes). Finished sequences publish their
// full blocks as shared prefixes, so a follow-up with the same start (a chat's next turn, a common
// system prompt) reuses them. When a step does not fit, prompt chunks wait; when even the decode
// tokens do not fit, the newest request is preempted: its blocks are freed and it is re-run later
// from its tokens so far (its output continues unchanged).
//
// Thread-safe: submit(), cancel and stats may be called from any thread.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "runtime/tensor_parallel.h"
#include "tokenizer/tokenizer.h"

namespace upg {

struct TokenLogprob {
  int32_t id;
  float logprob;  // log-softmax of the model's logits (before penalties and temperature)
};

struct GeneratedToken {
  int32_t id;
  float logprob;
  std::vector<TokenLogprob> top;  // the most likely tokens at this position, descending
};

struct GenerationRequest {
  std::vector<int32_t> prompt;  // at least one token
  int max_new_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;
  bool stop_at_eos = true;
  int logprobs = -1;             // -1: none; else each token's logprob and this many alternatives (0..20)
  bool prompt_logprobs = false;  // also for prompt tokens 1.. (needs logprobs >= 0)
};

// What a request's owner receives; updates not yet taken are merged (text and tokens appended).
struct GenerationUpdate {
  std::string text;                     // new text (valid UTF-8, stop strings cut off)
  std::vector<GeneratedToken> tokens;   // new generated tokens (logprob fields set when asked for)
  std::vector<GeneratedToken> prompt;   // prompt_logprobs: entries for prompt tokens 1..n-1
  bool done = false;
  std::string finish_reason;  // when done: "stop" (end of sequence or a stop string), "length", "cancelled", "error"
  std::string error;          // finish_reason "error": why
  int prompt_tokens = 0;      // set in every update
  int completion_tokens = 0;  // generated so far
};

class RequestHandle {
 public:
  // Waits up to `timeout` for news; false when none came. After the update with done = true,
  // nothing more arrives.
  bool wait(GenerationUpdate& out, std::chrono::milliseconds timeout);
  // Asks the scheduler to stop this request and free its cache blocks (at its next step).
  void cancel();
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Scheduler;
  void post(GenerationUpdate&& u);
  std::mutex mu_;
  std::condition_variable cv_;
  GenerationUpdate pending_;
  bool has_news_ = false;
  std::atomic<bool> cancelled_{false};
  std::function<void()> wake_scheduler_;
};

// The scheduler's queue is full: the caller should answer "try again later".
class QueueFull : public Error {
 public:
  using Error::Error;
};

// Steps of several schedulers (several models in one process) take turns, first come first served.
class ComputeTurns {
 public:
  void lock();
  void unlock();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_ = 0, serving_ = 0;
};

struct SchedulerOptions {
  int max_batch = 16;          // requests running at once
  int max_step_tokens = 256;   // tokens per step (decode tokens + prompt chunks)
  int max_queue = 64;          // requests waiting to start; submit() beyond it throws QueueFull
  int64_t max_context = 0;     // positions per sequence; <= 0: the model's max_position_embeddings
  KvCacheOptions kv;
  int threads = 0;             // the engine's thread pool (EngineOptions::threads; 0: the current pool's count)
  TensorParallelOptions tp;    // tensor parallelism (make_step_engine; the default is one Engine)
  ComputeTurns* turns = nullptr;  // shared by the schedulers of one process (optional)
  // Observers for metrics (called on the worker thread; keep them cheap).
  std::function<void(double seconds)> on_first_token;  // from submit() to the first generated token
  std::function<void(double seconds)> on_next_token;   // between consecutive tokens of a request
  std::function<void(int entries, int sequences)> on_step;
  std::function<void(int prompt_tokens, int completion_tokens, const std::string& finish)> on_finish;
};

struct SchedulerStats {
  int waiting = 0, running = 0;
  int64_t kv_blocks_in_use = 0, kv_blocks_cached_prefix = 0, kv_max_blocks = 0;
  size_t kv_bytes_allocated = 0, kv_block_bytes = 0;
  uint64_t steps = 0, preemptions = 0;
};

class Scheduler {
 public:
  Scheduler(const Model& model, const Tokenizer& tok, const SchedulerOptions& o);
  ~Scheduler();  // cancels what is left and stops the worker
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. Throws Error (400-class: names the limit) when the prompt is empty, a token id
  // is out of range, the prompt does not fit the context or the cache cap, or a parameter is bad;
  // QueueFull when max_queue requests wait; Error when shutting down.
  std::shared_ptr<RequestHandle> submit(GenerationRequest r);

  // Stops accepting requests, lets the running and waiting ones finish for up to `grace`, then
  // cancels the rest and stops the worker.
  void shutdown(std::chrono::milliseconds grace);

  int64_t max_context() const { return max_context_; }
  const Model& model() const { return engine_->model(); }
  SchedulerStats stats() const;

 private:
  struct Active;
  // The worker thread: run_loop() until halted. An exception escaping it (it must not reach
  // std::terminate) fails the running requests with its message, and the loop goes on.
  void run() noexcept;
  void run_loop();
  void fail_running(const std::string& error) noexcept;
  int retire();  // posts each running request's news; removes the finished ones
  void process(std::vector<Active*>& order);
  void finish(Active& a, const std::string& reason, const std::string& error = {});
  void preempt_newest();
  GeneratedToken token_logprobs(const float* row, int32_t chosen, int top) const;

  std::unique_ptr<StepEngine> engine_;
  const Tokenizer& tok_;
  SchedulerOptions opt_;
  int64_t max_context_;
  std::vector<int32_t> eos_;
  int32_t vocab_;

  mutable std::mutex mu_;  // guards waiting_, stopping_, the stats copies
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Active>> waiting_;
  bool stopping_ = false, halt_ = false;
  SchedulerStats stats_;

  // Worker-only state.
  std::vector<std::unique_ptr<Active>> running_;
  std::vector<BatchEntry> batch_;
  std::vector<std::pair<Active*, int64_t>> rows_;  // per logits row: request and position
  std::vector<float> logits_;
  std::thread worker_;
};

}  // namespace upg
