#include "runtime/scheduler.h"

#include <malloc.h>

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "kernels/logit_select.h"
#include "runtime/text_stream.h"

namespace upg {

using Clock = std::chrono::steady_clock;

static double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// ---- RequestHandle ----

bool RequestHandle::wait(GenerationUpdate& out, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  if (!cv_.wait_for(lk, timeout, [&] { return has_news_; })) return false;
  out = std::move(pending_);
  pending_ = GenerationUpdate{};
  has_news_ = false;
  return true;
}

void RequestHandle::cancel() {
  cancelled_.store(true);
  if (wake_scheduler_) wake_scheduler_();
}

void RequestHandle::post(GenerationUpdate&& u) {
  {
    std::lock_guard lk(mu_);
    GenerationUpdate& p = pending_;
    p.text += u.text;
    p.tokens.insert(p.tokens.end(), std::make_move_iterator(u.tokens.begin()), std::make_move_iterator(u.tokens.end()));
    p.prompt.insert(p.prompt.end(), std::make_move_iterator(u.prompt.begin()), std::make_move_iterator(u.prompt.end()));
    p.done = u.done;
    p.finish_reason = u.finish_reason;
    p.error = u.error;
    p.prompt_tokens = u.prompt_tokens;
    p.completion_tokens = u.completion_tokens;
    has_news_ = true;
  }
  cv_.notify_all();
}

// ---- ComputeTurns: a ticket lock ----

void ComputeTurns::lock() {
  std::unique_lock lk(mu_);
  const uint64_t ticket = next_++;
  cv_.wait(lk, [&] { return serving_ == ticket; });
}

void ComputeTurns::unlock() {
  {
    std::lock_guard lk(mu_);
    ++serving_;
  }
  cv_.notify_all();
}

// ---- Scheduler ----

struct Scheduler::Active {
  std::shared_ptr<RequestHandle> handle;
  GenerationRequest req;
  std::vector<int32_t> tokens;  // prompt, then generated
  std::vector<int32_t> generated;
  size_t prompt_len = 0;
  SeqId seq = -1;
  int64_t cached = 0;       // positions of `tokens` in the cache
  int64_t step_n = 0;       // entries in the current step
  bool prompt_lp_done = false;
  int64_t prompt_lp_next = 1;  // the prompt position whose logprob is sent next
  bool finished = false;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TextStream> text;
  GenerationUpdate out;     // news of this step
  Clock::time_point submitted, last_token;
};

Scheduler::Scheduler(const Model& model, const Tokenizer& tok, const SchedulerOptions& o)
    : engine_(make_step_engine(model, EngineOptions{o.kv, nullptr, o.threads, nullptr}, o.tp)), tok_(tok), opt_(o) {
  UPG_CHECK(o.max_batch >= 1, "max batch must be >= 1, got ", o.max_batch);
  UPG_CHECK(o.max_step_tokens >= o.max_batch, "tokens per step (", o.max_step_tokens,
            ") must be at least the max batch (", o.max_batch, ")");
  UPG_CHECK(o.max_queue >= 0, "max queue must be >= 0, got ", o.max_queue);
  const int64_t model_max = model.config().max_position_embeddings;
  max_context_ = o.max_context > 0 ? o.max_context : model_max;
  UPG_CHECK(max_context_ >= 1 && max_context_ <= kMaxModelContext, "the context length must be in [1, ",
            kMaxModelContext, "], got ", max_context_);
  eos_ = tok.eos_ids();
  vocab_ = static_cast<int32_t>(model.config().vocab_size);
  worker_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() { shutdown(std::chrono::milliseconds(0)); }

std::shared_ptr<RequestHandle> Scheduler::submit(GenerationRequest r) {
  UPG_CHECK(!r.prompt.empty(), "the prompt is empty");
  for (int32_t t : r.prompt)
    UPG_CHECK(t >= 0 && t < vocab_, "token id ", t, " is out of range (the vocabulary has ", vocab_, " tokens)");
  UPG_CHECK(static_cast<int64_t>(r.prompt.size()) <= max_context_, "the prompt has ", r.prompt.size(),
            " tokens but the context holds ", max_context_);
  UPG_CHECK(r.max_new_tokens >= 0, "max tokens must be >= 0, got ", r.max_new_tokens);
  UPG_CHECK(r.logprobs >= -1 && r.logprobs <= 20, "logprobs must be between 0 and 20, got ", r.logprobs);
  UPG_CHECK(!r.prompt_logprobs || r.logprobs >= 0, "prompt logprobs need logprobs >= 0");
  r.sampling.validate();
  const KvCache& cache = engine_->cache();
  if (cache.max_blocks() > 0) {
    const int64_t bs = cache.options().block_size;
    const int64_t need = (static_cast<int64_t>(r.prompt.size()) + bs - 1) / bs;
    UPG_CHECK(need <= cache.max_blocks(), "the prompt has ", r.prompt.size(), " tokens: its KV cache needs ",
              need * cache.block_bytes() / (1024 * 1024), " MiB but the cache is capped at ",
              cache.max_blocks() * cache.block_bytes() / (1024 * 1024), " MiB (--kv-memory)");
  }
  auto a = std::make_unique<Active>();
  a->handle = std::make_shared<RequestHandle>();
  a->handle->wake_scheduler_ = [this] {
    std::lock_guard lk(mu_);
    cv_.notify_all();
  };
  a->tokens = r.prompt;
  a->prompt_len = r.prompt.size();
  a->prompt_lp_done = !r.prompt_logprobs;
  a->sampler = std::make_unique<Sampler>(r.sampling);
  a->text = std::make_unique<TextStream>(tok_, r.stop_strings);
  a->req = std::move(r);
  a->submitted = Clock::now();
  auto handle = a->handle;
  {
    std::lock_guard lk(mu_);
    UPG_CHECK(!stopping_, "the server is shutting down");
    if (static_cast<int>(waiting_.size()) >= opt_.max_queue)
      throw QueueFull("the request queue is full (" + std::to_string(opt_.max_queue) + " waiting); try again later");
    waiting_.push_back(std::move(a));
    ++stats_.waiting;
  }
  cv_.notify_all();
  return handle;
}

void Scheduler::shutdown(std::chrono::milliseconds grace) {
  std::unique_lock lk(mu_);
  stopping_ = true;
  cv_.wait_for(lk, grace, [&] { return stats_.waiting == 0 && stats_.running == 0; });
  halt_ = true;
  lk.unlock();
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

GeneratedToken Scheduler::token_logprobs(const float* row, int32_t chosen, int top) const {
  float mx = row[0];
  for (int32_t i = 1; i < vocab_; ++i) mx = std::max(mx, row[i]);
  double sum = 0;
  for (int32_t i = 0; i < vocab_; ++i) sum += std::exp(static_cast<double>(row[i]) - mx);
  const float lse = mx + static_cast<float>(std::log(sum));
  GeneratedToken g{chosen, row[chosen] - lse, {}};
  if (top > 0) {
    std::vector<int32_t> idx;
    const int k = std::min<int>(top, vocab_);
    kernels::largest_first(row, vocab_, k, idx);
    for (int i = 0; i < k; ++i) g.top.push_back({idx[i], row[idx[i]] - lse});
  }
  return g;
}

void Scheduler::finish(Active& a, const std::string& reason, const std::string& error) {
  if (a.finished) return;
  a.finished = true;
  if (reason != "cancelled" && reason != "error") a.out.text += a.text->finish();
  a.out.done = true;
  a.out.finish_reason = reason;
  a.out.error = error;
  if (a.seq >= 0) {
    // Full blocks of what was computed become a shared prefix for later requests.
    engine_->publish_prefix(a.seq, std::span<const int32_t>(a.tokens.data(), static_cast<size_t>(a.cached)));
    engine_->release(a.seq);
    a.seq = -1;
  }
  if (opt_.on_finish) opt_.on_finish(static_cast<int>(a.prompt_len), static_cast<int>(a.generated.size()), reason);
}

void Scheduler::preempt_newest() {
  std::unique_ptr<Active> a = std::move(running_.back());
  running_.pop_back();
  if (a->seq >= 0) engine_->release(a->seq);
  a->seq = -1;
  a->cached = 0;
  std::lock_guard lk(mu_);
  waiting_.push_front(std::move(a));
  ++stats_.waiting;
  --stats_.running;
  ++stats_.preemptions;
}

static void add_entry(std::vector<BatchEntry>& batch, SeqId s, int32_t t, int64_t pos, bool logits) {
  batch.push_back(BatchEntry{s, t, pos, logits});
}

int Scheduler::retire() {
  int finished = 0;
  for (auto& a : running_) {
    if (!a->out.text.empty() || !a->out.tokens.empty() || !a->out.prompt.empty() || a->out.done) {
      a->out.prompt_tokens = static_cast<int>(a->prompt_len);
      a->out.completion_tokens = static_cast<int>(a->generated.size());
      a->handle->post(std::move(a->out));
      a->out = GenerationUpdate{};
    }
    if (a->finished) ++finished;
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& a) { return a->finished; }),
                 running_.end());
  return finished;
}

void Scheduler::process(std::vector<Active*>& order) {
  const auto now = Clock::now();
  // The rows to sample from that need no logprobs are drawn from where the engine kept the logits
  // (a GPU: only the tokens come over); the others come over whole.
  std::vector<StepEngine::KeptSample> kept;
  std::vector<int32_t> drawn;
  std::vector<int32_t> drawn_at(rows_.size(), -1);  // per row: its index in kept, or -1
  for (size_t r = 0; r < rows_.size(); ++r) {
    Active& a = *rows_[r].first;
    if (a.finished || rows_[r].second + 1 < static_cast<int64_t>(a.tokens.size()) || a.req.logprobs >= 0 ||
        static_cast<int>(a.generated.size()) >= a.req.max_new_tokens)
      continue;
    drawn_at[r] = static_cast<int32_t>(kept.size());
    kept.push_back({static_cast<int64_t>(r), a.sampler.get(), a.tokens, a.generated});
  }
  engine_->sample_kept(kept, drawn);
  for (size_t r = 0; r < rows_.size(); ++r) {
    Active& a = *rows_[r].first;
    const int64_t pos = rows_[r].second;
    if (a.finished) continue;
    const float* fetched = nullptr;
    auto row = [&] {  // the whole row, brought over once
      if (!fetched) engine_->kept_logits(static_cast<int64_t>(r), logits_), fetched = logits_.data();
      return fetched;
    };
    if (pos + 1 < static_cast<int64_t>(a.tokens.size())) {  // a prompt position: its next token's logprob
      if (!a.prompt_lp_done && pos + 1 == a.prompt_lp_next) {  // (a re-run after preemption repeats none)
        a.out.prompt.push_back(token_logprobs(row(), a.tokens[pos + 1], a.req.logprobs));
        ++a.prompt_lp_next;
      }
      continue;
    }
    a.prompt_lp_done = true;
    if (static_cast<int>(a.generated.size()) >= a.req.max_new_tokens) {
      finish(a, "length");
      continue;
    }
    int32_t next;
    if (drawn_at[r] >= 0) {
      next = drawn[drawn_at[r]];
    } else {
      std::vector<float> work(row(), row() + vocab_);
      next = a.sampler->sample(work, a.tokens, a.generated);
    }
    if (a.generated.empty()) {
      if (opt_.on_first_token) opt_.on_first_token(seconds_between(a.submitted, now));
    } else if (opt_.on_next_token) {
      opt_.on_next_token(seconds_between(a.last_token, now));
    }
    a.last_token = now;
    if (a.req.stop_at_eos && std::find(eos_.begin(), eos_.end(), next) != eos_.end()) {
      finish(a, "stop");
      continue;
    }
    if (a.req.logprobs >= 0) a.out.tokens.push_back(token_logprobs(row(), next, a.req.logprobs));
    else a.out.tokens.push_back(GeneratedToken{next, 0.0f, {}});
    a.generated.push_back(next);
    a.tokens.push_back(next);
    a.out.text += a.text->push(next);
    if (a.text->stopped()) finish(a, "stop");
    else if (static_cast<int>(a.generated.size()) >= a.req.max_new_tokens) finish(a, "length");
    else if (static_cast<int64_t>(a.tokens.size()) > max_context_) finish(a, "length");
  }
  for (Active* a : order) {
    a->cached += a->step_n;
    a->step_n = 0;
  }
}

void Scheduler::run() noexcept {
  while (true) {
    try {
      run_loop();
      return;
    } catch (const std::exception& e) {
      fail_running(str_cat("internal error: ", e.what()));
    } catch (...) {
      fail_running("internal error");
    }
  }
}

void Scheduler::fail_running(const std::string& error) noexcept {
  for (auto& a : running_) {
    try {
      finish(*a, "error", error);
    } catch (...) {  // at least tell the client
      a->finished = true;
      a->out.done = true;
      a->out.finish_reason = "error";
      a->out.error = error;
      if (a->seq >= 0) {
        try {
          engine_->release(a->seq);
        } catch (...) {
        }
        a->seq = -1;
      }
    }
  }
  try {
    retire();
  } catch (...) {
    running_.clear();
  }
  try {
    std::lock_guard lk(mu_);
    stats_.running = static_cast<int>(running_.size());
    cv_.notify_all();
  } catch (...) {
  }
}

void Scheduler::run_loop() {
  std::vector<Active*> order;
  while (true) {
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return halt_ || !waiting_.empty() || !running_.empty(); });
      if (halt_) break;
      for (auto it = waiting_.begin(); it != waiting_.end();) {
        if ((*it)->handle->cancelled()) {
          if (opt_.on_finish) opt_.on_finish(static_cast<int>((*it)->prompt_len), 0, "cancelled");
          GenerationUpdate u;
          u.done = true;
          u.finish_reason = "cancelled";
          u.prompt_tokens = static_cast<int>((*it)->prompt_len);
          (*it)->handle->post(std::move(u));
          it = waiting_.erase(it);
          --stats_.waiting;
        } else {
          ++it;
        }
      }
      while (static_cast<int>(running_.size()) < opt_.max_batch && !waiting_.empty()) {
        running_.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
        --stats_.waiting;
        ++stats_.running;
      }
    }
    for (auto& a : running_)
      if (a->handle->cancelled()) finish(*a, "cancelled");
    int finished = retire();
    for (auto& a : running_) {
      if (a->finished || a->seq >= 0) continue;
      a->seq = engine_->new_sequence();
      if (a->prompt_lp_done) a->cached = engine_->attach_prefix(a->seq, a->tokens);
    }

    // One step; prompt chunks wait when the cache cannot hold them, and the newest request is
    // preempted when even the decode tokens do not fit.
    bool prefill = true;
    bool ran = false;
    std::string failure;
    while (!ran) {
      batch_.clear();
      rows_.clear();
      order.clear();
      int budget = opt_.max_step_tokens;
      for (auto& up : running_) {
        Active& a = *up;
        if (a.finished || static_cast<int64_t>(a.tokens.size()) - a.cached != 1) continue;
        add_entry(batch_, a.seq, a.tokens[a.cached], a.cached, true);
        rows_.push_back({&a, a.cached});
        a.step_n = 1;
        order.push_back(&a);
        --budget;
      }
      for (auto& up : running_) {
        Active& a = *up;
        const int64_t rem = static_cast<int64_t>(a.tokens.size()) - a.cached;
        if (!prefill || a.finished || rem <= 1 || budget <= 0) continue;
        const int64_t n = std::min<int64_t>(rem, budget);
        for (int64_t i = 0; i < n; ++i) {
          const int64_t pos = a.cached + i;
          const bool last = pos + 1 == static_cast<int64_t>(a.tokens.size());
          const bool want = last || (!a.prompt_lp_done && pos + 1 < static_cast<int64_t>(a.prompt_len));
          add_entry(batch_, a.seq, a.tokens[pos], pos, want);
          if (want) rows_.push_back({&a, pos});
        }
        a.step_n = n;
        order.push_back(&a);
        budget -= static_cast<int>(n);
      }
      if (batch_.empty()) break;
      try {
        if (opt_.turns) opt_.turns->lock();
        try {
          engine_->step_kept(batch_);
        } catch (...) {
          if (opt_.turns) opt_.turns->unlock();
          throw;
        }
        if (opt_.turns) opt_.turns->unlock();
        ran = true;
      } catch (const KvCacheFull&) {
        for (Active* a : order) a->step_n = 0;
        const bool decodes = std::any_of(running_.begin(), running_.end(), [](const auto& a) {
          return !a->finished && static_cast<int64_t>(a->tokens.size()) - a->cached == 1;
        });
        if (prefill && decodes) {
          prefill = false;  // decode tokens first; prompt chunks wait for blocks to free up
        } else if (running_.size() > 1) {
          preempt_newest();
        } else {
          finish(*running_.front(), "length");
          break;
        }
      } catch (const std::exception& e) {
        for (Active* a : order) a->step_n = 0;
        failure = e.what();
        break;
      }
    }
    if (!failure.empty()) {
      for (auto& a : running_) finish(*a, "error", failure);
    } else if (ran) {
      if (opt_.on_step) opt_.on_step(static_cast<int>(batch_.size()), static_cast<int>(order.size()));
      try {
        process(order);  // samples where the engine kept the logits (a device error may come from there)
      } catch (const std::exception& e) {
        for (auto& a : running_) finish(*a, "error", e.what());
      }
    }
    finished += retire();
    if (running_.empty() && finished > 0) {
      // Idle (for now): give the memory of free cache blocks back to the system.
      bool idle;
      {
        std::lock_guard lk(mu_);
        idle = waiting_.empty();
      }
      if (idle && engine_->trim_cache() > 0) malloc_trim(0);
    }
    std::lock_guard lk(mu_);
    stats_.running = static_cast<int>(running_.size());
    stats_.steps += ran ? 1 : 0;
    const KvCache& c = engine_->cache();
    stats_.kv_blocks_in_use = c.blocks_in_use();
    stats_.kv_blocks_cached_prefix = c.prefix_blocks();
    stats_.kv_max_blocks = c.max_blocks();
    stats_.kv_bytes_allocated = c.bytes_allocated();
    stats_.kv_block_bytes = c.block_bytes();
    if (finished > 0) cv_.notify_all();
  }
  // Halted: whatever is left is cancelled.
  std::deque<std::unique_ptr<Active>> left;
  {
    std::lock_guard lk(mu_);
    left.swap(waiting_);
    stats_.waiting = 0;
  }
  for (auto& a : running_) finish(*a, "cancelled");
  retire();
  for (auto& a : left) {
    if (opt_.on_finish) opt_.on_finish(static_cast<int>(a->prompt_len), 0, "cancelled");
    GenerationUpdate u;
    u.done = true;
    u.finish_reason = "cancelled";
    u.prompt_tokens = static_cast<int>(a->prompt_len);
    a->handle->post(std::move(u));
  }
  std::lock_guard lk(mu_);
  stats_.running = 0;
}

}  // namespace upg
