// Models through the UPG container: Hugging Face checkpoint -> UPG (convert_hf_to_upg) -> Model::load.
//  * codec "keep" (the checkpoint's own bf16/f16/f32 bytes): logits bit-identical to the Hugging Face
//    directory's, for every tiny golden architecture, single file and sharded, and for refA.
//  * codec int8: the UPG model's logits equal those of an F32 Hugging Face directory holding the
//    UPG model's decoded weights, to fp32 rounding (max |diff| / max |logit| < 1e-4: the int8 matmul
//    sums q * x per group and then scales, the dense path sums w * x, so the float rounding differs).
//  * the committed fixture tests/data/upg/mistral_gqa_int8.upg (used by tests/scripts/test_upg_cli.sh)
//    still opens and matches a fresh conversion's decoded weights (UPG_REGEN_FIXTURES=1 rewrites it).
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "base/error.h"
#include "base/mapped_file.h"
#include "format/safetensors.h"
#include "format/upg_container.h"
#include "format/upg_format.h"
#include "format/upg_from_hf.h"
#include "runtime/session.h"
#include "logit_compare.h"
#include "upg_test_util.h"

using namespace upg;
using namespace upg::test;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> golden_model_dirs() {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(fs::path(source_dir()) / "tests" / "golden"))
    if (fs::exists(e.path() / "config.json")) v.push_back(e.path().string());
  std::sort(v.begin(), v.end());
  return v;
}

// All-position logits of a fixed pseudo-random prompt (prefill) and two decode steps after it.
std::vector<float> logits_of(const Model& m, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  const int64_t V = m.config().vocab_size;
  std::vector<int32_t> ids(9);
  for (auto& x : ids) x = static_cast<int32_t>(3 + rng() % (V - 3));
  Session s(m, 32);
  std::vector<float> all, step;
  s.forward(ids, all, true);
  for (int k = 0; k < 2; ++k) {
    int32_t next = static_cast<int32_t>(std::max_element(all.end() - V, all.end()) - (all.end() - V));
    s.forward({&next, 1}, step, false);
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  return test::rel_max_error(a.data(), b.data(), static_cast<int64_t>(a.size()));
}

// An F32 Hugging Face directory holding every tensor of the UPG model as it decodes.
void write_decoded_f32(const std::string& upg_path, const std::string& dir) {
  auto c = UpgContainer::open(upg_path);
  fs::create_directories(dir);
  std::string cfg = c->text("config.json").value();
  write_bytes(dir + "/config.json", std::vector<uint8_t>(cfg.begin(), cfg.end()));
  SafetensorsWriter w;
  for (const UpgTensor* t : c->tensors()) {
    std::vector<float> v(static_cast<size_t>(t->numel()));
    t->open_matrix()->decode_rows(0, t->rows(), v.data());
    w.add_f32(t->name, t->shape, v);
  }
  w.write(dir + "/model.safetensors");
}

TEST(UpgModel, KeepCodecGivesBitIdenticalLogitsForEveryGoldenModel) {
  const auto dirs = golden_model_dirs();
  ASSERT_GE(dirs.size(), 5u);
  for (const std::string& hf_dir : dirs) {
    SCOPED_TRACE(hf_dir);
    ScratchDir d("keep");
    auto ck = HfCheckpoint::open(hf_dir);
    convert_hf_to_upg(*ck, d / "m.upg");
    EXPECT_EQ(run_python_checker("--align 64 --upg " + d / "m.upg"), 0);
    auto hf = Model::load(hf_dir);
    auto up = Model::load(d / "m.upg");
    EXPECT_EQ(up->weight_bytes(), hf->weight_bytes());
    const auto a = logits_of(*hf), b = logits_of(*up);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_TRUE(a == b) << "max rel diff " << max_rel_diff(b, a);
    auto c = UpgContainer::open(d / "m.upg");
    for (const UpgTensor* t : c->tensors()) {
      EXPECT_EQ(t->dtype, ck->tensor(t->name).dtype) << t->name;
      if (t->dtype == TensorDType::F8_E4M3) {  // block-scaled fp8, kept as its bf16 dequantization
        ASSERT_TRUE(t->err.has_value()) << t->name;
        EXPECT_LT(*t->err, 4e-3) << t->name;
      } else {
        EXPECT_EQ(t->err, 0.0) << t->name;
      }
    }

    // The same model in shards (about 64 KB each), opened through the directory.
    UpgFromHfOptions o;
    o.shard_bytes = 64 << 10;
    ScratchDir s("keepshard");
    const auto files = convert_hf_to_upg(*ck, s / "model.upg", o);
    EXPECT_GT(files.size(), 2u);
    EXPECT_EQ(files.back(), s / "model.upg.index.json");
    auto sh = Model::load(s.path.string());
    EXPECT_TRUE(logits_of(*sh) == a);
  }
}

TEST(UpgModel, Int8MatchesItsDecodedF32Reference) {
  for (const std::string& hf_dir : golden_model_dirs()) {
    SCOPED_TRACE(hf_dir);
    ScratchDir d("int8");
    UpgFromHfOptions o;
    o.matrix_codec = "int8";
    o.matrix_params = {{"group", 32}};
    convert_hf_to_upg(*HfCheckpoint::open(hf_dir), d / "m.upg", o);
    write_decoded_f32(d / "m.upg", d / "ref");
    auto up = Model::load(d / "m.upg");
    auto ref = Model::load(d / "ref");
    const double e = max_rel_diff(logits_of(*up), logits_of(*ref));
    EXPECT_LT(e, 1e-4);
    // And the compression did change the model (the comparison is not trivially of the same thing).
    EXPECT_GT(max_rel_diff(logits_of(*up), logits_of(*Model::load(hf_dir))), 1e-5);
    auto c = UpgContainer::open(d / "m.upg");
    for (const UpgTensor* t : c->tensors()) {
      EXPECT_EQ(t->codec, t->shape.size() == 2 ? "int8" : upg_dense_codec_name(t->dtype)) << t->name;
      ASSERT_TRUE(t->err.has_value()) << t->name;
      if (t->shape.size() == 2) {
        EXPECT_GT(*t->err, 0.0) << t->name;
        EXPECT_LT(*t->err, 0.02) << t->name;
      }
    }
  }
}

TEST(UpgModel, LoadErrorsNameTheTensor) {
  const std::string hf_dir = source_dir() + "/tests/golden/mistral_gqa_bf16";
  ScratchDir d("loaderr");
  convert_hf_to_upg(*HfCheckpoint::open(hf_dir), d / "m.upg");
  const std::string down = "model.layers.1.mlp.down_proj.weight";
  rewrite_header(d / "m.upg", d / "missing.upg", [&](nlohmann::json& h) {
    auto t = nlohmann::json::parse(h["__metadata__"]["upg.tensors"].get<std::string>());
    t.erase(down);
    h["__metadata__"]["upg.tensors"] = t.dump();
    h.erase(down + ".data");
  });
  try {
    Model::load(d / "missing.upg");
    ADD_FAILURE() << "loaded a model without " << down;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(down), std::string::npos) << e.what();
  }
  rewrite_table(d / "m.upg", d / "shape.upg", [&](nlohmann::json& t) {
    t[down]["shape"] = {256, 128};
    t[down]["codec"] = "bf16";
  });
  try {
    Model::load(d / "shape.upg");
    ADD_FAILURE() << "loaded a model with a transposed " << down;
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(down), std::string::npos) << m;
    EXPECT_NE(m.find("[256, 128]"), std::string::npos) << m;
    EXPECT_NE(m.find("expected [128, 256]"), std::string::npos) << m;
  }
  rewrite_header(d / "m.upg", d / "nocfg.upg", [](nlohmann::json& h) { h["__metadata__"].erase("config.json"); });
  try {
    Model::load(d / "nocfg.upg");
    ADD_FAILURE() << "loaded a model without config.json";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

TEST(UpgModel, RefAThroughUpg) {
  UPG_NEED_SHARED_DATA(shared);
  const std::string hf_dir = shared + "/models/refA-phi3-26m";
  ScratchDir d("refa");
  convert_hf_to_upg(*HfCheckpoint::open(hf_dir), d / "refA.upg");
  auto up = Model::load(d / "refA.upg");
  auto hf = Model::load(hf_dir);
  EXPECT_TRUE(logits_of(*up) == logits_of(*hf));
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"}) {
    SCOPED_TRACE(f);
    ASSERT_TRUE(up->file_text(f).has_value());
    EXPECT_EQ(*up->file_text(f), read_text_file(hf_dir + "/" + f));
  }
  EXPECT_FALSE(up->file_text("model.safetensors").has_value());
}

TEST(UpgModel, CommittedFixtureStillMatches) {
  const std::string hf_dir = source_dir() + "/tests/golden/mistral_gqa_bf16";
  const std::string fixture = source_dir() + "/tests/data/upg/mistral_gqa_int8.upg";
  UpgFromHfOptions o;
  o.matrix_codec = "int8";
  o.matrix_params = {{"group", 32}};
  if (std::getenv("UPG_REGEN_FIXTURES")) {
    fs::create_directories(fs::path(fixture).parent_path());
    convert_hf_to_upg(*HfCheckpoint::open(hf_dir), fixture, o);
  }
  ASSERT_TRUE(fs::exists(fixture)) << "missing " << fixture << " (UPG_REGEN_FIXTURES=1 writes it)";
  ScratchDir d("fixture");
  convert_hf_to_upg(*HfCheckpoint::open(hf_dir), d / "fresh.upg", o);
  auto old_c = UpgContainer::open(fixture);
  auto new_c = UpgContainer::open(d / "fresh.upg");
  ASSERT_EQ(old_c->tensors().size(), new_c->tensors().size());
  for (const UpgTensor* t : old_c->tensors()) {
    SCOPED_TRACE(t->name);
    EXPECT_EQ(t->compute_xxh64(), t->xxh64);
    const UpgTensor& n = new_c->tensor(t->name);
    std::vector<float> a(static_cast<size_t>(t->numel())), b(a.size());
    t->open_matrix()->decode_rows(0, t->rows(), a.data());
    n.open_matrix()->decode_rows(0, n.rows(), b.data());
    EXPECT_LT(relative_frobenius_error(a.data(), b.data(), a.size()), 1e-2)
        << "the int8 codec now encodes differently; rerun with UPG_REGEN_FIXTURES=1 if intended";
  }
  EXPECT_LT(max_rel_diff(logits_of(*Model::load(fixture)), logits_of(*Model::load(hf_dir))), 0.05);
}

}  // namespace
