// The batched engine and the paged KV cache: a batch of sequences (different lengths, prefill and
// decode mixed, sequences starting and ending mid-batch) gives the logits of single-sequence runs,
// for every KV type; paged-cache allocation, sharing and reuse under random arrivals and departures,
// with content checked; the memory cap; prefix sharing; bad batches.
#include <algorithm>
#include <filesystem>
#include <map>
#include <random>

#include "base/cpu_features.h"
#include "base/error.h"
#include "convert/converter.h"
#include "kernels/cpu/attention.h"
#include "runtime/session.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace upg;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Model> tiny_model(const std::string& arch, const std::string& type, const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("upg_engine_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  nlohmann::json c = test::tiny_config(arch, type);
  c["max_position_embeddings"] = 4096;
  test::write_tiny_model(d.string(), c, TensorDType::BF16, 7);
  auto m = Model::load(d.string());
  fs::remove_all(d);
  return m;
}

std::vector<int32_t> random_ids(int n, int vocab, std::mt19937& rng) {
  std::vector<int32_t> v(n);
  for (auto& x : v) x = static_cast<int32_t>(rng() % vocab);
  return v;
}

// Logits of every position of `ids` run alone in a Session, prompt in one forward, then one token at a time.
std::vector<std::vector<float>> single_run(const Model& m, const std::vector<int32_t>& ids, int prompt, KvType kv) {
  Session s(m, 0, kv);
  std::vector<std::vector<float>> out;
  std::vector<float> logits;
  s.forward({ids.data(), static_cast<size_t>(prompt)}, logits, true);
  const int64_t V = m.config().vocab_size;
  for (int t = 0; t < prompt; ++t) out.emplace_back(logits.begin() + t * V, logits.begin() + (t + 1) * V);
  for (size_t t = prompt; t < ids.size(); ++t) {
    s.forward({&ids[t], 1}, logits, false);
    out.push_back(logits);
  }
  return out;
}

double max_abs_diff(const std::vector<float>& a, const float* b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
  return d;
}

struct Stream {
  std::vector<int32_t> ids;
  int prompt;      // tokens fed as prefill (in chunks of `chunk`)
  int start_step;  // the step it joins
  int chunk;
  SeqId seq = -1;
  int done = 0;  // tokens fed so far
};

// Runs the streams through one Engine in mixed steps and compares every position's logits with
// single_run. Returns the largest absolute difference.
double batched_vs_single(const Model& m, KvType kv, uint32_t seed) {
  std::mt19937 rng(seed);
  const int V = static_cast<int>(m.config().vocab_size);
  std::vector<Stream> streams;
  for (int i = 0; i < 5; ++i) {
    Stream st;
    st.prompt = 1 + static_cast<int>(rng() % 20);
    st.ids = random_ids(st.prompt + 3 + static_cast<int>(rng() % 8), V, rng);
    st.start_step = static_cast<int>(rng() % 6);
    st.chunk = 1 + static_cast<int>(rng() % 7);
    streams.push_back(st);
  }
  std::vector<std::vector<std::vector<float>>> ref;
  for (const Stream& st : streams) ref.push_back(single_run(m, st.ids, st.prompt, kv));

  EngineOptions eo;
  eo.kv.type = kv;
  eo.kv.block_size = 4;  // many block boundaries
  Engine e(m, eo);
  std::vector<float> logits;
  double worst = 0;
  size_t finished = 0;
  for (int step = 0; finished < streams.size(); ++step) {
    std::vector<BatchEntry> batch;
    std::vector<std::pair<size_t, int>> who;  // (stream, position) of each logits row
    for (size_t i = 0; i < streams.size(); ++i) {
      Stream& st = streams[i];
      if (step < st.start_step || st.done == static_cast<int>(st.ids.size())) continue;
      if (st.seq < 0) st.seq = e.new_sequence();
      // Prefill: a chunk of the prompt (logits for each, compared too); decode: one token.
      const int n = st.done < st.prompt ? std::min(st.chunk, st.prompt - st.done) : 1;
      for (int k = 0; k < n; ++k, ++st.done) {
        batch.push_back({st.seq, st.ids[st.done], st.done, true});
        who.emplace_back(i, st.done);
      }
    }
    // Interleave the entries of different sequences (the engine must not care about order).
    std::vector<size_t> order(batch.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return batch[a].pos - (batch[a].seq * 7) % 3 < batch[b].pos - (batch[b].seq * 7) % 3;
    });
    std::vector<BatchEntry> shuffled;
    std::vector<std::pair<size_t, int>> who2;
    for (size_t k : order) shuffled.push_back(batch[k]), who2.push_back(who[k]);
    if (shuffled.empty()) continue;
    e.step(shuffled, logits);
    for (size_t r = 0; r < who2.size(); ++r)
      worst = std::max(worst, max_abs_diff(ref[who2[r].first][who2[r].second], logits.data() + r * V));
    for (Stream& st : streams)
      if (st.seq >= 0 && st.done == static_cast<int>(st.ids.size()) && e.cache().contains(st.seq)) {
        e.release(st.seq);  // ends mid-run; its blocks go back to the pool
        ++finished;
      }
  }
  EXPECT_EQ(e.cache().blocks_in_use(), 0);
  return worst;
}

}  // namespace

TEST(Engine, BatchOfSequencesMatchesSingleRunsForEveryKvType) {
  // A token's matmul products do not depend on how many tokens share the step (the one-token kernels
  // sum in the multi-token kernels' order: test_kernels_codecs / test_codec_* "ProductOfAToken..."),
  // nor do attention, norms and the rest, so with an f32 cache the batched logits equal the single
  // runs' exactly. The narrower types keep a tolerance (a key or value rounds to the cache type,
  // which the same projections round the same way today, but the contract is the type's precision).
  const std::map<KvType, double> tol = {
      {KvType::F32, 0.0}, {KvType::F16, 1e-3}, {KvType::BF16, 4e-3}, {KvType::Q8, 1e-2}};
  for (auto [arch, type] : {std::pair{"LlamaForCausalLM", "llama"}, std::pair{"Phi3ForCausalLM", "phi3"}}) {
    auto m = tiny_model(arch, type, type);
    for (KvType kv : {KvType::F32, KvType::BF16, KvType::F16, KvType::Q8}) {
      for (uint32_t seed : {1u, 2u}) {
        const double d = batched_vs_single(*m, kv, seed);
        if (kv == KvType::F32) EXPECT_EQ(d, 0.0) << arch << " kv f32 seed " << seed;
        else EXPECT_LT(d, tol.at(kv)) << arch << " kv " << kv_type_name(kv) << " seed " << seed;
        std::printf("  %s %s seed %u: max |batched - single| logit difference %.3g\n", arch, kv_type_name(kv), seed, d);
      }
    }
  }
}

// The architectures with other blocks, on their transformers goldens' weights: Gemma 2 (sliding
// windows, soft-capping, post-norms) and the mixtures of experts, where a batch routes different
// tokens to different experts and each expert runs once over the rows routed to it, and DeepSeek's
// latent attention, whose cache holds one latent row per position; Grok-1 (its multipliers). With
// an f32 cache the batched logits equal the single runs' exactly, as above.
TEST(Engine, BatchOfSequencesMatchesSingleRunsForOtherBlocks) {
  for (const char* name : {"gemma2_softcap_bf16", "mixtral_moe_bf16", "qwen2_moe_shared_bf16", "deepseek_v3_mla_bf16",
                           "grok1_moe_bf16"}) {
    auto m = Model::load((std::filesystem::path(test::source_dir()) / "tests" / "golden" / name).string());
    for (uint32_t seed : {1u, 2u}) {
      const double d = batched_vs_single(*m, KvType::F32, seed);
      EXPECT_EQ(d, 0.0) << name << " seed " << seed;
      std::printf("  %s seed %u: max |batched - single| logit difference %.3g\n", name, seed, d);
    }
  }
}

// The same for a model converted to each codec (every matrix, embedding and head included): each
// codec's one-token and few-token kernels sum a token in its multi-token kernel's order, with int8
// activations (the codebook's integer paths) and with fp32 ones, so the logits are equal exactly.
TEST(Engine, BatchOfSequencesMatchesSingleRunsForEveryCodec) {
  fs::path d = fs::temp_directory_path() / ("upg_engine_" + std::to_string(::getpid()) + "_codecs");
  fs::remove_all(d);
  test::write_tiny_model(d.string(), test::tiny_config("LlamaForCausalLM", "llama"), TensorDType::BF16, 11);
  for (std::string codec : {"codebook:bits=3,group=64", "codebook:bits=5,group=32", "codebook:bits=4,group=64,rotate=true",
                            "int8:group=64", "int8:group=0", "trellis:bits=3,group=32", "mdcsr:keep_fraction=0.3"}) {
    ConvertOptions o;
    o.codec = codec;
    const std::string file = (d / "m.upg").string();
    convert_model(d.string(), file, o);
    auto m = Model::load(file);
    for (bool int8_act : {true, false}) {
      set_int8_activations(int8_act);
      const double dd = batched_vs_single(*m, KvType::F32, 3);
      EXPECT_EQ(dd, 0.0) << codec << (int8_act ? "" : ", fp32 activations");
      std::printf("  %s%s: max |batched - single| logit difference %.3g\n", codec.c_str(),
                  int8_act ? "" : ", fp32 activations", dd);
    }
    set_int8_activations(true);
  }
  fs::remove_all(d);
}

TEST(Engine, KvTypesStayCloseToF32) {
  auto m = tiny_model("LlamaForCausalLM", "llama", "kvtypes");
  std::mt19937 rng(5);
  const auto ids = random_ids(40, static_cast<int>(m->config().vocab_size), rng);
  const auto exact = single_run(*m, ids, 30, KvType::F32);
  double scale = 0;
  for (const auto& r : exact)
    for (float v : r) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  for (auto [kv, tol] : {std::pair{KvType::BF16, 2e-2}, std::pair{KvType::F16, 2e-3}, std::pair{KvType::Q8, 3e-2}}) {
    const auto got = single_run(*m, ids, 30, kv);
    double d = 0;
    for (size_t p = 0; p < exact.size(); ++p) d = std::max(d, max_abs_diff(exact[p], got[p].data()));
    EXPECT_LT(d / scale, tol) << kv_type_name(kv);
    EXPECT_GT(d, 0.0) << kv_type_name(kv) << " should not be exact";
  }
}

TEST(Engine, PrefixSharingGivesIdenticalLogits) {
  auto m = tiny_model("LlamaForCausalLM", "llama", "prefix");
  std::mt19937 rng(9);
  const int V = static_cast<int>(m->config().vocab_size);
  const auto prefix = random_ids(37, V, rng);
  EngineOptions eo;
  eo.kv.type = KvType::F32;
  eo.kv.block_size = 8;
  Engine e(*m, eo);
  // A runs the shared prefix and registers it.
  const SeqId a = e.new_sequence();
  std::vector<BatchEntry> batch;
  for (int t = 0; t < 37; ++t) batch.push_back({a, prefix[t], t, false});
  std::vector<float> logits;
  e.step(batch, logits);
  e.publish_prefix(a, prefix);
  EXPECT_EQ(e.cache().prefix_blocks(), 4);
  // B's prompt: the prefix and a tail of its own.
  std::vector<int32_t> prompt = prefix;
  for (int32_t t : random_ids(6, V, rng)) prompt.push_back(t);
  const SeqId b = e.new_sequence();
  const int64_t attached = e.attach_prefix(b, prompt);
  EXPECT_EQ(attached, 32);  // 4 full blocks of 8
  const int64_t before = e.cache().blocks_in_use();
  batch.clear();
  for (size_t t = attached; t < prompt.size(); ++t) batch.push_back({b, prompt[t], static_cast<int64_t>(t), true});
  e.step(batch, logits);
  EXPECT_EQ(e.cache().blocks_in_use(), before + 2);  // only B's own blocks (positions 32..42)
  const auto ref = single_run(*m, prompt, static_cast<int>(prompt.size()), KvType::F32);
  for (size_t r = 0; r < batch.size(); ++r)
    EXPECT_LT(max_abs_diff(ref[attached + r], logits.data() + r * V), 2e-5) << "position " << attached + r;
  // A decodes on after B attached: its shared blocks are untouched by B.
  e.release(a);
  e.release(b);
  EXPECT_EQ(e.cache().blocks_in_use(), 4);  // the registry still holds the prefix
  // A prompt no longer than one block past the prefix attaches less than everything: at least one token runs.
  const SeqId c = e.new_sequence();
  EXPECT_EQ(e.attach_prefix(c, std::span<const int32_t>(prefix.data(), 32)), 24);
}

TEST(Engine, CapReachedIsAClearErrorAndChangesNothing) {
  auto m = tiny_model("LlamaForCausalLM", "llama", "cap");
  EngineOptions eo;
  eo.kv.type = KvType::BF16;
  eo.kv.block_size = 16;
  KvCache probe(m->config().num_hidden_layers, m->config().num_key_value_heads, m->config().head_dim, eo.kv);
  eo.kv.max_bytes = 3 * probe.block_bytes();  // 48 positions in all
  Engine e(*m, eo);
  const SeqId a = e.new_sequence(), b = e.new_sequence();
  std::vector<BatchEntry> batch;
  for (int t = 0; t < 40; ++t) batch.push_back({a, 3, t, t == 39});
  std::vector<float> logits;
  e.step(batch, logits);
  batch.clear();
  for (int t = 0; t < 20; ++t) batch.push_back({b, 4, t, false});
  batch.push_back({a, 5, 40, true});
  try {
    e.step(batch, logits);
    FAIL() << "expected KvCacheFull";
  } catch (const KvCacheFull& err) {
    EXPECT_NE(std::string(err.what()).find("KV cache full"), std::string::npos) << err.what();
  }
  EXPECT_EQ(e.length(a), 40);
  EXPECT_EQ(e.length(b), 0);
  // Once A leaves, B fits.
  e.release(a);
  batch.pop_back();
  e.step(batch, logits);
  EXPECT_EQ(e.length(b), 20);
}

TEST(Engine, BadBatchesAreErrorsThatChangeNothing) {
  auto m = tiny_model("LlamaForCausalLM", "llama", "bad");
  Engine e(*m);
  const SeqId a = e.new_sequence();
  std::vector<float> logits;
  std::vector<BatchEntry> ok{{a, 1, 0, true}};
  e.step(ok, logits);
  auto expect_error = [&](std::vector<BatchEntry> b, const char* what) {
    try {
      e.step(b, logits);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find(what), std::string::npos) << err.what();
    }
    EXPECT_EQ(e.length(a), 1);
  };
  expect_error({}, "empty batch");
  expect_error({{a, 1, 5, true}}, "expected 1");
  expect_error({{a, 1, 1, true}, {a, 1, 1, true}}, "expected 2");
  expect_error({{a, -1, 1, true}}, "out of range");
  expect_error({{a, 1, 1, true}, {99, 1, 0, true}}, "does not exist");
}

TEST(Engine, NothingIsReservedForALongContext) {
  auto m = tiny_model("LlamaForCausalLM", "llama", "reserve");
  Session s(*m, 1 << 20, KvType::BF16);  // a million positions allowed
  EXPECT_EQ(s.engine().cache().bytes_allocated(), 0u);
  std::vector<float> logits;
  std::vector<int32_t> ids(20, 3);
  s.forward(ids, logits, false);
  EXPECT_EQ(s.engine().cache().blocks_allocated(), 2);  // 20 positions in blocks of 16
}

TEST(Engine, TrimGivesFreeBlocksBackAndTheyAreReusable) {
  auto m = tiny_model("LlamaForCausalLM", "llama", "trim");
  Engine e(*m, EngineOptions{KvCacheOptions{KvType::F32, 16, 0}, nullptr, 0, nullptr});
  std::vector<float> ref, got;
  std::vector<BatchEntry> batch;
  auto run = [&](SeqId s, std::vector<float>& out) {
    batch.clear();
    for (int i = 0; i < 40; ++i) batch.push_back({s, (i * 7) % 96, i, i == 39});
    e.step(batch, out);
  };
  SeqId a = e.new_sequence();
  run(a, ref);
  const size_t block = e.cache().block_bytes();
  EXPECT_EQ(e.cache().bytes_allocated(), 3 * block);
  e.release(a);
  EXPECT_EQ(e.cache().trim(), 3);
  EXPECT_EQ(e.cache().bytes_allocated(), 0u);
  EXPECT_EQ(e.cache().trim(), 0);
  SeqId b = e.new_sequence();
  run(b, got);  // the blocks come back with fresh memory
  EXPECT_EQ(e.cache().bytes_allocated(), 3 * block);
  EXPECT_EQ(ref, got);
}

// The cache alone: random arrivals, growth, forks, truncations and departures under a cap, every
// row written with a pattern naming (sequence, position) and read back after each operation.
TEST(KvCache, RandomArrivalsAndDeparturesKeepEveryRow) {
  KvCacheOptions o;
  o.type = KvType::F32;
  o.block_size = 4;
  const int64_t L = 2, G = 2, hd = 4;
  KvCache probe(L, G, hd, o);
  o.max_bytes = 40 * probe.block_bytes();
  KvCache c(L, G, hd, o);
  std::mt19937 rng(11);
  std::map<SeqId, std::vector<float>> content;  // expected tag per position
  auto tag_of = [&](SeqId s, int64_t p) { return static_cast<float>(s * 10000 + p); };
  auto write = [&](SeqId s, int64_t from) {
    auto& v = content[s];
    for (int64_t p = from; p < c.length(s); ++p) {
      v.resize(p + 1);
      v[p] = tag_of(s, p);
      for (int64_t l = 0; l < L; ++l) {
        const KvLayerView view = c.view(s, l);
        for (int kv = 0; kv < 2; ++kv)
          for (int64_t g = 0; g < G; ++g) {
            float row[hd] = {v[p], static_cast<float>(l), static_cast<float>(kv), static_cast<float>(g)};
            kernels::kv_store_row(KvType::F32, row, hd, view.row(kv, g, p));
          }
      }
    }
  };
  auto check_all = [&] {
    for (const auto& [s, v] : content) {
      ASSERT_EQ(c.length(s), static_cast<int64_t>(v.size()));
      for (int64_t l = 0; l < L; ++l) {
        const KvLayerView view = c.view(s, l);
        for (int64_t p = 0; p < c.length(s); ++p)
          for (int kv = 0; kv < 2; ++kv)
            for (int64_t g = 0; g < G; ++g) {
              float row[hd];
              kernels::kv_load_row(KvType::F32, view.row(kv, g, p), hd, row);
              ASSERT_EQ(row[0], v[p]) << "seq " << s << " pos " << p;
              ASSERT_EQ(row[1], l);
              ASSERT_EQ(row[2], kv);
              ASSERT_EQ(row[3], g);
            }
      }
    }
  };
  int fulls = 0;
  for (int it = 0; it < 3000; ++it) {
    const int op = static_cast<int>(rng() % 10);
    std::vector<SeqId> live;
    for (const auto& [s, v] : content) live.push_back(s);
    if (op < 2 || live.empty()) {
      const SeqId s = c.create();
      content[s];
    } else {
      const SeqId s = live[rng() % live.size()];
      if (op < 6) {
        const int64_t n = 1 + rng() % 9, len = c.length(s);
        const int64_t in_use = c.blocks_in_use();
        try {
          c.append(s, n);
          write(s, len);
        } catch (const KvCacheFull&) {
          ++fulls;
          ASSERT_EQ(c.length(s), len);
          ASSERT_EQ(c.blocks_in_use(), in_use);
        }
      } else if (op < 7) {
        const int64_t len = rng() % (c.length(s) + 1);
        c.truncate(s, len);
        content[s].resize(len);
      } else if (op < 8) {
        const int64_t len = rng() % (c.length(s) + 1);
        try {
          const SeqId f = c.fork(s, len);
          content[f] = std::vector<float>(content[s].begin(), content[s].begin() + len);
        } catch (const Error&) {
          ++fulls;
        }
      } else {
        c.release(s);
        content.erase(s);
      }
    }
    ASSERT_LE(c.blocks_allocated(), 40);
    if (it % 50 == 0) check_all();
  }
  check_all();
  EXPECT_GT(fulls, 0) << "the cap was never reached: the test does not exercise it";
  for (const auto& [s, v] : content) c.release(s);
  EXPECT_EQ(c.blocks_in_use(), 0);
}

TEST(KvCache, RowTypesRoundTrip) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 2.f);
  const int64_t hd = 64;
  std::vector<float> x(hd), y(hd);
  std::vector<uint8_t> row(kv_row_bytes(KvType::F32, hd));
  for (auto& v : x) v = nd(rng);
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  for (auto [t, tol] : {std::pair{KvType::F32, 0.0}, std::pair{KvType::BF16, 1.0 / 128},
                        std::pair{KvType::F16, 1.0 / 1024}, std::pair{KvType::Q8, 0.0}}) {
    kernels::kv_store_row(t, x.data(), hd, row.data());
    kernels::kv_load_row(t, row.data(), hd, y.data());
    for (int64_t i = 0; i < hd; ++i) {
      const double bound = t == KvType::Q8 ? amax / 127 * 0.5 + 1e-6 : std::fabs(x[i]) * tol;
      ASSERT_LE(std::fabs(x[i] - y[i]), bound) << kv_type_name(t) << " " << i;
    }
  }
  EXPECT_THROW(parse_kv_type("fp8"), Error);
}
