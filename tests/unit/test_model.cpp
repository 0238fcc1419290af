// The decoder forward pass: every architecture and rope variant on tiny random models against a
// naive double-precision reference; KV-cache consistency (prefill == prefill + decode == chunks);
// context and token errors; the real refA checkpoint (shared data).
#include <algorithm>
#include <cstring>
#include <filesystem>

#include <map>
#include <set>

#include <fstream>

#include "base/error.h"
#include "base/mapped_file.h"
#include "convert/converter.h"
#include "format/hf_checkpoint.h"
#include "format/safetensors.h"
#include "runtime/session.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace upg;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("upg_model_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  return d;
}

double rel_err(const std::vector<float>& got, const std::vector<double>& ref) {
  double md = 0, mr = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    md = std::max(md, std::fabs(got[i] - ref[i]));
    mr = std::max(mr, std::fabs(ref[i]));
  }
  return md / mr;
}

std::vector<int32_t> random_ids(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = static_cast<int32_t>(rng() % vocab);
  return v;
}

struct Case {
  std::string name;
  json cfg;
  TensorDType dtype;
  std::vector<int> lengths;
};

std::vector<Case> cases() {
  std::vector<Case> v;
  json c;
  c = test::tiny_config("Phi3ForCausalLM", "phi3");
  c.erase("rope_theta");
  c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 250000.0}, {"partial_rotary_factor", 1.0}};
  c["dtype"] = "bfloat16";
  v.push_back({"phi3_new_style", c, TensorDType::BF16, {1, 9, 33}});
  c = test::tiny_config("Phi3ForCausalLM", "phi3");
  c["partial_rotary_factor"] = 0.75;
  c["original_max_position_embeddings"] = 16;
  std::vector<double> sf, lf;
  for (int i = 0; i < 6; ++i) sf.push_back(1.0 + 0.05 * i), lf.push_back(1.0 + 0.9 * i);
  c["rope_scaling"] = {{"type", "su"}, {"short_factor", sf}, {"long_factor", lf}};
  v.push_back({"phi3_longrope_partial", c, TensorDType::F16, {10, 24}});  // short and long factors
  c = test::tiny_config("Phi3ForCausalLM", "phi3");
  c["sliding_window"] = 5;
  v.push_back({"phi3_sliding", c, TensorDType::BF16, {12}});
  c = test::tiny_config("LlamaForCausalLM", "llama");
  c["tie_word_embeddings"] = true;
  c.erase("rope_theta");
  c["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 32.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 64}};
  v.push_back({"llama3_tied_f32", c, TensorDType::F32, {11, 3}});
  c = test::tiny_config("LlamaForCausalLM", "llama");
  c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  c["attention_bias"] = true;
  c["num_key_value_heads"] = 4;
  v.push_back({"llama_linear_bias", c, TensorDType::BF16, {13}});
  c = test::tiny_config("LlamaForCausalLM", "llama");
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32}};
  v.push_back({"llama_yarn", c, TensorDType::BF16, {17}});
  c = test::tiny_config("LlamaForCausalLM", "llama");
  c["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  c["max_position_embeddings"] = 8;  // the prompt is longer: frequencies rescale
  v.push_back({"llama_dynamic", c, TensorDType::BF16, {6, 14}});
  c = test::tiny_config("MistralForCausalLM", "mistral");
  c["head_dim"] = 24;  // explicit head_dim != hidden / heads
  c["sliding_window"] = 4;
  v.push_back({"mistral_window_headdim", c, TensorDType::F16, {10}});
  c = test::tiny_config("Qwen2ForCausalLM", "qwen2");
  c["tie_word_embeddings"] = true;
  c["use_sliding_window"] = false;
  c["sliding_window"] = 3;
  v.push_back({"qwen2_bias_tied", c, TensorDType::BF16, {8, 21}});
  return v;
}

}  // namespace

TEST(Model, AllArchitecturesMatchNaiveReference) {
  for (const Case& cs : cases()) {
    SCOPED_TRACE(cs.name);
    fs::path d = temp_dir(cs.name);
    auto w = test::write_tiny_model(d.string(), cs.cfg, cs.dtype, 11);
    auto model = Model::load(d.string());
    const ModelConfig& c = model->config();
    for (int len : cs.lengths) {
      auto ids = random_ids(len, static_cast<int>(c.vocab_size), len);
      Session s(*model, 64);
      std::vector<float> logits;
      s.forward(ids, logits, true);
      ASSERT_EQ(logits.size(), static_cast<size_t>(len * c.vocab_size));
      EXPECT_EQ(s.position(), len);
      auto ref = test::reference_logits(c, w, ids);
      EXPECT_LT(rel_err(logits, ref), 2e-5) << "length " << len;
    }
    fs::remove_all(d);
  }
}

TEST(Model, KvCacheIsConsistentWithPrefill) {
  for (const Case& cs : cases()) {
    if (cs.name == "llama_dynamic" || cs.name == "phi3_longrope_partial") continue;  // length-dependent rope
    SCOPED_TRACE(cs.name);
    fs::path d = temp_dir(cs.name + "_kv");
    test::write_tiny_model(d.string(), cs.cfg, cs.dtype, 5);
    auto model = Model::load(d.string());
    const int64_t V = model->config().vocab_size;
    auto ids = random_ids(20, static_cast<int>(V), 99);
    Session full(*model, 32);
    std::vector<float> all, step, last;
    full.forward(ids, all, true);
    // Token by token.
    Session inc(*model, 32);
    for (size_t t = 0; t < ids.size(); ++t) {
      inc.forward({&ids[t], 1}, step, false);
      ASSERT_EQ(step.size(), static_cast<size_t>(V));
      for (int64_t j = 0; j < V; ++j) ASSERT_NEAR(step[j], all[t * V + j], 1e-5 * (1 + std::fabs(all[t * V + j])));
    }
    // Prefill N-1 then decode 1, and uneven chunks, equal the full prefill's last row.
    Session two(*model, 32);
    two.forward(std::span<const int32_t>(ids).first(19), step, false);
    two.forward(std::span<const int32_t>(ids).subspan(19), last, false);
    for (int64_t j = 0; j < V; ++j) EXPECT_NEAR(last[j], all[19 * V + j], 1e-5 * (1 + std::fabs(last[j])));
    Session chunks(*model, 32);
    chunks.forward(std::span<const int32_t>(ids).first(7), step, false);
    chunks.forward(std::span<const int32_t>(ids).subspan(7, 8), step, true);
    chunks.forward(std::span<const int32_t>(ids).subspan(15), last, false);
    for (int64_t j = 0; j < V; ++j) EXPECT_NEAR(last[j], all[19 * V + j], 1e-5 * (1 + std::fabs(last[j])));
    // truncate + re-run reproduces; reset starts over.
    chunks.truncate(10);
    EXPECT_EQ(chunks.position(), 10);
    chunks.forward(std::span<const int32_t>(ids).subspan(10), last, false);
    for (int64_t j = 0; j < V; ++j) EXPECT_NEAR(last[j], all[19 * V + j], 1e-5 * (1 + std::fabs(last[j])));
    chunks.reset();
    chunks.forward(ids, last, false);
    for (int64_t j = 0; j < V; ++j) EXPECT_NEAR(last[j], all[19 * V + j], 1e-5 * (1 + std::fabs(last[j])));
    fs::remove_all(d);
  }
}

TEST(Model, ContextAndTokenErrors) {
  fs::path d = temp_dir("errors");
  test::write_tiny_model(d.string(), test::tiny_config("LlamaForCausalLM", "llama"), TensorDType::BF16);
  auto model = Model::load(d.string());
  Session s(*model, 8);
  EXPECT_EQ(s.max_context(), 8);
  std::vector<float> logits;
  std::vector<int32_t> nine(9, 3), bad = {3, 96}, neg = {-1};
  try {
    s.forward(nine, logits, false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context of 8"), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.position(), 0);
  try {
    s.forward(bad, logits, false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 96"), std::string::npos) << e.what();
  }
  EXPECT_THROW(s.forward(neg, logits, false), Error);
  EXPECT_THROW(s.forward({}, logits, false), Error);
  std::vector<int32_t> five(5, 4), four(4, 4);
  s.forward(five, logits, false);
  EXPECT_THROW(s.forward(four, logits, false), Error);  // 5 + 4 > 8
  EXPECT_EQ(s.position(), 5);
  EXPECT_THROW(s.truncate(6), Error);
  EXPECT_THROW(s.truncate(-1), Error);
  Session dflt(*model);
  EXPECT_EQ(dflt.max_context(), 128);  // max_position_embeddings
  fs::remove_all(d);
}

TEST(Model, RefALoadsAndIsCausallyConsistent) {
  UPG_NEED_SHARED_DATA(shared);
  auto model = Model::load(shared + "/models/refA-phi3-26m");
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.architecture, "Phi3ForCausalLM");
  EXPECT_EQ(c.hidden_size, 512);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(model->weight_bytes(), static_cast<size_t>(26483200 - 512 * 13) * 2);  // all but norms, bf16
  EXPECT_TRUE(model->file_text("tokenizer.json").has_value());
  auto ids = random_ids(40, 8192, 5);
  Session s(*model, 64);
  std::vector<float> all, a, b;
  s.forward(ids, all, true);
  Session t(*model, 64);
  t.forward(std::span<const int32_t>(ids).first(39), a, false);
  t.forward(std::span<const int32_t>(ids).subspan(39), b, false);
  double md = 0, mx = 0;
  for (int j = 0; j < 8192; ++j) {
    md = std::max<double>(md, std::fabs(b[j] - all[39 * 8192 + j]));
    mx = std::max<double>(mx, std::fabs(all[39 * 8192 + j]));
  }
  EXPECT_LT(md, 1e-5 * mx) << "max diff " << md;
  // Logits of a real model are finite and not degenerate.
  for (float v : all) ASSERT_TRUE(std::isfinite(v));
  EXPECT_GT(mx, 1.0);
}

// The fused-experts layout (mlp.experts.gate_up_proj [E, 2F, H] = each expert's [gate; up],
// mlp.experts.down_proj [E, H, F], Mixtral's router as mlp.gate): the goldens' per-expert
// checkpoints rewritten that way load to the same weights, bit for bit, so the logits are identical;
// the converter reads them too. A fused tensor of the wrong shape is an error naming it.
TEST(Model, FusedExpertLayoutGivesTheSameModel) {
  const fs::path root = fs::path(test::source_dir()) / "tests" / "golden";
  for (const char* name : {"mixtral_moe_bf16", "qwen2_moe_shared_bf16", "deepseek_v3_mla_bf16"}) {
    SCOPED_TRACE(name);
    const fs::path src = root / name;
    auto orig = Model::load(src.string());
    const ModelConfig& c = orig->config();
    auto ck = HfCheckpoint::open(src.string());
    const fs::path dir = fs::temp_directory_path() / ("upg_fused_" + std::string(name) + "_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(src / "config.json", dir / "config.json");
    SafetensorsWriter w;
    std::map<std::string, std::vector<uint8_t>> fused;  // fused name -> bytes
    std::map<std::string, std::vector<int64_t>> fused_shape;
    std::set<std::string> expert_names;
    for (const ModelTensor& t : orig->tensors())
      if (t.expert >= 0) expert_names.insert(t.name);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      if (!c.moe.layers[static_cast<size_t>(l)]) continue;
      const std::string p = "model.layers." + std::to_string(l) + ".";
      std::vector<uint8_t> gu, down;
      TensorDType dt = TensorDType::BF16;
      for (int64_t e = 0; e < c.moe.num_experts; ++e) {
        std::string g, u, d;
        for (const ModelTensor& t : orig->tensors())
          if (t.layer == l && t.expert == e) {
            if (t.part == Part::ExpertGate) g = t.name;
            if (t.part == Part::ExpertUp) u = t.name;
            if (t.part == Part::ExpertDown) d = t.name;
          }
        for (const std::string& n : {g, u}) {
          const TensorView& tv = ck->tensor(n);
          dt = tv.dtype;
          gu.insert(gu.end(), tv.data, tv.data + tv.nbytes);
        }
        const TensorView& tv = ck->tensor(d);
        down.insert(down.end(), tv.data, tv.data + tv.nbytes);
      }
      const int64_t F = c.moe.intermediate_size, H = c.hidden_size, E = c.moe.num_experts;
      w.add(p + "mlp.experts.gate_up_proj", dt, {E, 2 * F, H}, gu.data(), gu.size());
      w.add(p + "mlp.experts.down_proj", dt, {E, H, F}, down.data(), down.size());
    }
    for (const std::string& n : ck->names()) {
      if (expert_names.count(n)) continue;
      const TensorView& tv = ck->tensor(n);
      std::string out = n;
      const size_t at = out.find("block_sparse_moe.gate.weight");
      if (at != std::string::npos) out.replace(at, std::string("block_sparse_moe.gate.weight").size(), "mlp.gate.weight");
      w.add(out, tv.dtype, tv.shape, tv.data, tv.nbytes);
    }
    w.write((dir / "model.safetensors").string());

    auto m = Model::load(dir.string());
    Session a(*orig, 32), b(*m, 32);
    const std::vector<int32_t> ids = {5, 17, 99, 3, 250, 7, 42, 11, 301};
    std::vector<float> la, lb;
    a.forward(ids, la, true);
    b.forward(ids, lb, true);
    ASSERT_EQ(la.size(), lb.size());
    EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0) << "logits differ";

    ConvertOptions o;
    o.codec = "int8:group=64";
    const ConvertReport r = convert_model(dir.string(), (dir / "m.upg").string(), o);
    EXPECT_GT(r.file_bytes, 0u);
    auto q = Model::load((dir / "m.upg").string());
    EXPECT_EQ(q->layers()[static_cast<size_t>(c.num_hidden_layers - 1)].experts.size(),
              static_cast<size_t>(c.moe.num_experts));
    fs::remove_all(dir);
  }
  // A fused tensor of the wrong shape names itself.
  auto ck = HfCheckpoint::open((root / "mixtral_moe_bf16").string());
  EXPECT_THROW(ck->add_alias("x", "model.layers.0.block_sparse_moe.gate.weight", 0, 0, 4), Error);
}

// Bad mixture-of-experts input: a missing expert tensor, a config whose expert count does not match
// the checkpoint, an impossible top-k, an unknown routing function: each an error naming it.
TEST(Model, MixtureOfExpertsErrorsNameTheTensorOrField) {
  const fs::path src = fs::path(test::source_dir()) / "tests" / "golden" / "mixtral_moe_bf16";
  const fs::path dir = fs::temp_directory_path() / ("upg_moe_bad_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  nlohmann::json cfg = nlohmann::json::parse(read_text_file((src / "config.json").string()));
  auto write_config = [&](const nlohmann::json& j) {
    std::ofstream(dir / "config.json") << j.dump(2);
  };
  auto expect_load_error = [&](const std::vector<std::string>& parts) {
    try {
      Model::load(dir.string());
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  // A checkpoint without expert 3's down projection of layer 1.
  {
    auto ck = HfCheckpoint::open(src.string());
    SafetensorsWriter w;
    for (const std::string& n : ck->names())
      if (n != "model.layers.1.block_sparse_moe.experts.3.w2.weight") {
        const TensorView& t = ck->tensor(n);
        w.add(n, t.dtype, t.shape, t.data, t.nbytes);
      }
    w.write((dir / "model.safetensors").string());
  }
  write_config(cfg);
  expect_load_error({"model.layers.1.block_sparse_moe.experts.3.w2.weight", "not found"});
  fs::copy_file(src / "model.safetensors", dir / "model.safetensors", fs::copy_options::overwrite_existing);
  auto j = cfg;
  j["num_local_experts"] = 5;  // the checkpoint has 4
  write_config(j);
  expect_load_error({"model.layers.0.block_sparse_moe.gate.weight", "[4, 128]", "[5, 128]"});
  j = cfg;
  j["num_experts_per_tok"] = 9;
  write_config(j);
  expect_load_error({"num_experts_per_tok", "[1, 4]", "9"});
  write_config(cfg);
  EXPECT_NO_THROW(Model::load(dir.string()));
  fs::remove_all(dir);

  // DeepSeek's routing functions: only sigmoid / noaux_tc.
  nlohmann::json ds = nlohmann::json::parse(
      read_text_file((fs::path(test::source_dir()) / "tests" / "golden" / "deepseek_v3_mla_bf16" / "config.json").string()));
  for (auto [key, value] : {std::pair{"scoring_func", "softmax"}, std::pair{"topk_method", "greedy"}}) {
    auto d = ds;
    d[key] = value;
    try {
      parse_model_config(d, "cfg.json");
      ADD_FAILURE() << key;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(value), std::string::npos) << e.what();
    }
  }
  auto d = ds;
  d["n_group"] = 3;  // 8 experts do not split into 3 groups
  EXPECT_THROW(parse_model_config(d, "cfg.json"), Error);
}
