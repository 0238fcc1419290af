// Tensor parallelism with simulated ranks (threads of this process on the CPU, runtime/tensor_parallel.h):
// a model split over N ranks gives the logits of the whole model (TP = 1) on the same batches, for
// every architecture with golden outputs (mixtures of experts: whole experts per rank; multi-head
// latent attention: heads per rank), refA, and files of every codec, with o and
// down split by columns (all-reduce) and gathered; a rank that fails stops the group without a hang;
// a Session over ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "backend/communicator.h"
#include "base/cpu_features.h"
#include "base/error.h"
#include "convert/converter.h"
#include "engine_schedule.h"
#include "logit_compare.h"
#include "runtime/engine.h"
#include "runtime/session.h"
#include "runtime/tensor_parallel.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace upg;
namespace fs = std::filesystem;

namespace {

// TP = `ranks` against one Engine on the schedule: every step's logits within `tol` (relative to
// the step's largest logit), and the same greedy token wherever the top two are not a near tie.
void expect_tp_matches(const Model& m, int ranks, KvType kv, double tol, const std::string& what) {
  SCOPED_TRACE(what + ", " + std::to_string(ranks) + " ranks");
  EngineOptions o;
  o.kv.type = kv;
  o.threads = 1;
  Engine whole(m, o);
  TensorParallelEngine tp(m, ranks, o);
  const int64_t V = m.config().vocab_size;
  test::expect_same_schedule_logits(test::run_schedule(tp, V, 3), test::run_schedule(whole, V, 3), V, tol);
}

nlohmann::json wide_tiny_config() {
  nlohmann::json c = test::tiny_config("LlamaForCausalLM", "llama");
  c["hidden_size"] = 128;
  c["num_attention_heads"] = 8;
  c["num_key_value_heads"] = 4;
  c["intermediate_size"] = 192;
  c["vocab_size"] = 101;  // splits unevenly
  return c;
}

struct TempDir {
  fs::path p = fs::temp_directory_path() / ("upg_tp_" + std::to_string(::getpid()) + "_" +
                                           std::to_string(std::random_device{}()));
  ~TempDir() { fs::remove_all(p); }
};

}  // namespace

TEST(TensorParallel, HostCommunicatorsSumAndGatherInRankOrder) {
  for (int n : {1, 2, 3, 5}) {
    auto comms = make_host_communicators(n);
    std::vector<std::vector<float>> sums(n), gathered(n);
    std::vector<std::jthread> threads;
    for (int r = 0; r < n; ++r)
      threads.emplace_back([&, r] {
        std::vector<float> v{1.0f * r, 0.5f, 1e8f * (r == 0 ? 1 : 0), 1.0f};
        comms[r]->all_reduce_sum(v.data(), 4);
        sums[r] = v;
        std::vector<int64_t> counts;
        for (int k = 0; k < n; ++k) counts.push_back(k + 1);
        std::vector<float> mine(r + 1, static_cast<float>(r)), out(n * (n + 1) / 2);
        comms[r]->all_gather(mine.data(), counts, out.data());
        gathered[r] = out;
      });
    threads.clear();
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(sums[r], sums[0]);  // the same bits everywhere
      EXPECT_EQ(sums[r][0], n * (n - 1) / 2.0f);
      EXPECT_EQ(sums[r][1], 0.5f * n);
      std::vector<float> want;
      for (int k = 0; k < n; ++k) want.insert(want.end(), k + 1, static_cast<float>(k));
      EXPECT_EQ(gathered[r], want);
    }
  }
  // A rank that fails wakes the others with its reason instead of leaving them waiting.
  auto comms = make_host_communicators(3);
  std::vector<std::string> errors(3);
  std::vector<std::jthread> threads;
  for (int r = 1; r < 3; ++r)
    threads.emplace_back([&, r] {
      float v = 1;
      try {
        comms[r]->all_reduce_sum(&v, 1);
      } catch (const Error& e) {
        errors[r] = e.what();
      }
    });
  comms[0]->abort("rank 0: out of memory");
  threads.clear();
  for (int r = 1; r < 3; ++r) EXPECT_NE(errors[r].find("rank 0: out of memory"), std::string::npos) << errors[r];
  float v = 1;
  test::expect_error([&] { comms[1]->all_reduce_sum(&v, 1); }, "out of memory");
}

TEST(TensorParallel, DenseModelEqualsTheWholeModel) {
  TempDir dir;
  test::write_tiny_model(dir.p.string(), wide_tiny_config(), TensorDType::BF16, 7);
  auto m = Model::load(dir.p.string());
  // 8 query heads in 4 groups: 8 ranks replicate each kv head on 2 ranks, each with one query head.
  for (int ranks : {1, 2, 3, 4, 8}) {
    const TensorParallelPlan p = plan_tensor_parallel(*m, ranks);
    EXPECT_TRUE(p.o_by_columns && p.down_by_columns);  // dense matrices cut anywhere
    EXPECT_EQ(p.q_heads.back(), 8);
    EXPECT_EQ(p.kv_end.back(), 4);
    if (ranks == 8) {
      for (int r = 0; r < 8; ++r) EXPECT_EQ(p.kv_begin[r], r / 2) << "rank " << r;
    }
    expect_tp_matches(*m, ranks, KvType::F32, 1e-5, "bf16 weights, f32 cache");
  }
  expect_tp_matches(*m, 2, KvType::BF16, 2e-2, "bf16 weights, bf16 cache");
  test::expect_error([&] { plan_tensor_parallel(*m, 5); }, "must be a multiple of the kv heads");
  test::expect_error([&] { plan_tensor_parallel(*m, 16); }, "must divide a kv head's query heads");
}

TEST(TensorParallel, EveryCodecEqualsTheWholeModel) {
  TempDir dir;
  test::write_tiny_model(dir.p.string(), wide_tiny_config(), TensorDType::BF16, 9);
  struct Case {
    std::string codec;
    bool o_cols_2, down_cols_2;  // the plan at 2 ranks
  };
  // Rotation blocks: o (128 columns) one block of 128: no column cut between heads at 2 ranks
  // (gathered); down (192 columns, blocks of 64): 64 | 128 is over 1.25x an even share (gathered),
  // as are int8's groups of 64 there.
  const Case cases[] = {{"codebook:bits=4,group=32", true, true},
                        {"codebook:bits=3,group=64,rotate=true", false, false},
                        {"int8:group=64", true, false},
                        {"trellis:bits=3,group=32,rotate=true", false, false}};
  for (const Case& c : cases) {
    ConvertOptions o;
    o.codec = c.codec;
    const std::string file = (dir.p / "m.upg").string();
    convert_model(dir.p.string(), file, o);
    auto m = Model::load(file);
    const TensorParallelPlan p2 = plan_tensor_parallel(*m, 2);
    EXPECT_EQ(p2.o_by_columns, c.o_cols_2) << c.codec;
    EXPECT_EQ(p2.down_by_columns, c.down_cols_2) << c.codec;
    // The codebook's int8 activations are quantized per shard of a column-split product (other
    // scales than the whole row's), so the strict check runs with fp32 activations.
    set_int8_activations(false);
    for (int ranks : {2, 3, 4}) expect_tp_matches(*m, ranks, KvType::F32, 1e-4, c.codec);
    set_int8_activations(true);
    expect_tp_matches(*m, 2, KvType::F32, 5e-2, c.codec + ", int8 activations");
  }
}

TEST(TensorParallel, GoldenArchitecturesEqualTheWholeModel) {
  const fs::path root = fs::path(test::source_dir()) / "tests" / "golden";
  int dense = 0, moe = 0, mla = 0, replicated = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    if (!fs::exists(e.path() / "config.json")) continue;
    auto m = Model::load(e.path().string());
    const ModelConfig& c = m->config();
    (c.moe.num_experts > 0 ? moe : dense) += 1;
    mla += c.mla.enabled();
    // Mixture-of-experts models: whole experts per rank (3 ranks: an uneven share of 8 experts);
    // latent attention: heads per rank, the latent cache on every rank.
    for (int ranks : {2, static_cast<int>(std::min<int64_t>(c.num_key_value_heads, 3))})
      if (ranks >= 2) expect_tp_matches(*m, ranks, KvType::F32, 1e-4, e.path().filename().string());
    // Twice as many ranks as kv heads where a group's query heads halve: each kv head on two ranks.
    const int64_t nkv = c.num_key_value_heads, group = c.num_attention_heads / nkv;
    if (nkv <= 4 && group % 2 == 0 && (c.moe.num_experts == 0 || c.moe.num_experts >= 2 * nkv)) {
      expect_tp_matches(*m, static_cast<int>(2 * nkv), KvType::F32, 1e-4, e.path().filename().string() + ", kv heads replicated");
      ++replicated;
    }
  }
  EXPECT_GE(replicated, 3);
  EXPECT_GE(dense, 9);
  EXPECT_GE(moe, 6);  // Mixtral, Qwen2-MoE (two), Grok-1, DeepSeek V3 (two)
  EXPECT_GE(mla, 2);  // DeepSeek V3 in bf16 and fp8
}

TEST(TensorParallel, RefAEqualsTheWholeModel) {
  UPG_NEED_SHARED_DATA(data);
  auto m = Model::load(data + "/models/refA-phi3-26m");
  expect_tp_matches(*m, 2, KvType::F32, 1e-4, "refA");
  expect_tp_matches(*m, 2, KvType::BF16, 2e-2, "refA, bf16 cache");
}

TEST(TensorParallel, AFailingRankStopsTheGroupAndChangesNothing) {
  TempDir dir;
  test::write_tiny_model(dir.p.string(), wide_tiny_config(), TensorDType::BF16, 5);
  auto m = Model::load(dir.p.string());
  EngineOptions o;
  o.kv.type = KvType::F32;
  o.threads = 1;
  // 3 ranks over 4 key-value heads: one rank holds 2 heads and fills its capped cache first, while
  // the others pass their checks and wait for it in a collective.
  TensorParallelEngine tp(*m, 3, [&] {
    EngineOptions c = o;
    c.kv.max_bytes = 2 * 16 * 16 * 4 * 2 * 2 * 4;  // 4 blocks of 16 positions for 2 heads (f32, 2 layers, k and v)
    return c;
  }());
  int two_head_ranks = 0;
  for (int r = 0; r < 3; ++r) two_head_ranks += tp.shard(r).config().num_key_value_heads == 2;
  ASSERT_EQ(two_head_ranks, 1);
  const SeqId s = tp.new_sequence();
  std::vector<BatchEntry> big;
  for (int i = 0; i < 100; ++i) big.push_back({s, i % 50, i, i == 99});
  std::vector<float> logits;
  EXPECT_THROW(tp.step(big, logits), KvCacheFull);
  EXPECT_EQ(tp.length(s), 0);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(tp.engine(r).length(s), 0);
  // The group works again, and as the whole model does.
  std::vector<BatchEntry> small(big.begin(), big.begin() + 20);
  small.back().logits = true;
  tp.step(small, logits);
  Engine whole(*m, o);
  const SeqId w = whole.new_sequence();
  std::vector<BatchEntry> ws = small;
  for (auto& e : ws) e.seq = w;
  std::vector<float> ref;
  whole.step(ws, ref);
  EXPECT_LE(test::rel_max_error(logits.data(), ref.data(), static_cast<int64_t>(ref.size())), 1e-5);
}

TEST(TensorParallel, BadOptionsAreClearErrors) {
  TempDir dir;
  test::write_tiny_model(dir.p.string(), wide_tiny_config(), TensorDType::BF16, 5);
  auto m = Model::load(dir.p.string());
  test::expect_error([&] { TensorParallelEngine e(*m, {2, {"cpu"}, "host"}); }, "one device per rank");
  test::expect_error([&] { TensorParallelEngine e(*m, {2, {}, "mpi"}); }, "unknown collectives 'mpi'");
  test::expect_error([&] { TensorParallelEngine e(*m, {2, {}, "nccl"}); }, "NCCL communicators");
  test::expect_error([&] { TensorParallelEngine e(*m, {0, {}, "host"}); }, "at least 1 rank");
  // A shard needs its rank's communicator, and a whole model takes none of several ranks.
  auto plan = std::make_shared<const TensorParallelPlan>(plan_tensor_parallel(*m, 2));
  auto shard = Model::shard(*m, plan, 1);
  test::expect_error([&] { Engine e(*shard); }, "needs that rank's communicator");
  EngineOptions o;
  o.comm = make_host_communicators(2)[0];
  test::expect_error([&] { Engine e(*shard, o); }, "needs that rank's communicator");
  test::expect_error([&] { Engine e(*m, o); }, "needs a tensor-parallel shard");
  test::expect_error([&] { plan_tensor_parallel(*shard, 2); }, "already a tensor-parallel shard");
}

// The single-sequence Session (what `upg run`, `chat` and the evaluations drive) over two ranks: a
// prompt's logits, greedy steps, a truncation and more steps equal one Engine's to fp32 rounding;
// the interface both implement (StepEngine) refuses what a split model cannot do.
TEST(TensorParallel, SessionOverRanksEqualsTheWholeModel) {
  TempDir dir;
  test::write_tiny_model(dir.p.string(), wide_tiny_config(), TensorDType::BF16, 9);
  auto m = Model::load(dir.p.string());
  Session whole(*m, 64, KvType::F32, 0, 1);
  Session split(*m, 64, KvType::F32, 0, 1, TensorParallelOptions{2, {}, "host"});
  EXPECT_NE(dynamic_cast<TensorParallelEngine*>(&split.engine()), nullptr);
  EXPECT_NE(dynamic_cast<Engine*>(&whole.engine()), nullptr);
  EXPECT_EQ(&split.model(), m.get());
  const int64_t V = m->config().vocab_size;
  std::vector<float> a, b;
  auto expect_close = [&](const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    EXPECT_LE(test::rel_max_error(b.data(), a.data(), static_cast<int64_t>(a.size())), 1e-5) << what;
  };
  const std::vector<int32_t> prompt = {3, 14, 15, 92, 65, 35, 89, 79, 32};
  whole.forward(prompt, a, true);
  split.forward(prompt, b, true);
  expect_close("prompt");
  auto greedy_steps = [&](int steps, const std::string& what) {
    for (int i = 0; i < steps; ++i) {
      const int32_t next = static_cast<int32_t>(std::max_element(a.end() - V, a.end()) - (a.end() - V));
      whole.forward({&next, 1}, a, false);
      split.forward({&next, 1}, b, false);
      expect_close(what + " step " + std::to_string(i));
    }
  };
  greedy_steps(6, "decode");
  EXPECT_EQ(split.position(), whole.position());
  whole.truncate(4);
  split.truncate(4);
  whole.forward({prompt.data() + 4, 3}, a, false);
  split.forward({prompt.data() + 4, 3}, b, false);
  expect_close("after truncate");
  greedy_steps(3, "after truncate");
  split.reset();
  EXPECT_EQ(split.position(), 0);
  EXPECT_EQ(split.engine().cache().blocks_in_use(), 0);
  test::expect_error([&] { split.set_observer([](const std::string&, const float*, int64_t, int64_t) {}); },
                     "does not run with tensor parallelism");
  // make_step_engine: one Engine unless ranks or devices ask for the group.
  EXPECT_NE(dynamic_cast<Engine*>(make_step_engine(*m, {}, {}).get()), nullptr);
  EXPECT_NE(dynamic_cast<TensorParallelEngine*>(make_step_engine(*m, {}, {1, {"cpu"}, "host"}).get()), nullptr);
  test::expect_error([&] { make_step_engine(*m, {}, {0, {}, "host"}); }, "at least one rank");
}
