// upg merge (src/convert/merge.h): recipe validation, refusals (architecture, names, shapes,
// existing output), and small cases computed by hand for each method. The comparison with an
// independent numpy implementation on random tensors is tests/scripts/test_merge_numpy.sh.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/half.h"
#include "convert/merge.h"
#include "format/hf_checkpoint.h"
#include "format/safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace upg {
namespace {

struct T {
  std::vector<int64_t> shape;
  std::vector<float> v;
};

class MergeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("upg_test_merge_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // A checkpoint directory with config.json and model.safetensors (F32 unless dtype says otherwise).
  std::string model(const std::string& name, const std::map<std::string, T>& tensors,
                    const std::string& arch = "LlamaForCausalLM", const std::string& type = "llama",
                    TensorDType dtype = TensorDType::F32) {
    const fs::path d = root_ / name;
    fs::create_directories(d);
    json cfg = {{"architectures", {arch}}, {"model_type", type}, {"hidden_size", 4}, {"torch_dtype", "float32"}};
    std::ofstream(d / "config.json") << cfg.dump(2);
    std::ofstream(d / "tokenizer.json") << "{\"model\": \"" << name << "\"}";
    SafetensorsWriter w;
    for (const auto& [n, t] : tensors) {
      if (dtype == TensorDType::F32) {
        w.add_f32(n, t.shape, t.v);
      } else {
        std::vector<uint16_t> h(t.v.size());
        for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_bf16(t.v[i]);
        w.add(n, TensorDType::BF16, t.shape, h.data(), h.size() * 2);
      }
    }
    w.write((d / "model.safetensors").string());
    return d.string();
  }

  std::string out(const std::string& name = "out") const { return (root_ / name).string(); }

  static std::vector<float> read(const std::string& dir, const std::string& name) {
    auto ck = HfCheckpoint::open(dir);
    const TensorView& t = ck->tensor(name);
    std::vector<float> v(static_cast<size_t>(t.numel()));
    if (t.dtype == TensorDType::F32) {
      std::memcpy(v.data(), t.data, v.size() * 4);
    } else {
      for (size_t i = 0; i < v.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        v[i] = t.dtype == TensorDType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
    }
    return v;
  }

  static MergeRecipe recipe(const json& j) { return MergeRecipe::parse(j.dump(), "test recipe"); }

  fs::path root_;
};

// Expects `f` to throw an upg::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nlacks: " << p;
  }
}

void expect_near(const std::vector<float>& got, const std::vector<double>& want, double tol = 1e-6) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

TEST_F(MergeTest, RecipeParseErrors) {
  auto parse = [](const std::string& s) { return MergeRecipe::parse(s, "r.json"); };
  expect_error([&] { parse("{\"method\": \"linear\", "); }, {"r.json", "not valid JSON"});
  expect_error([&] { parse("[1, 2]"); }, {"r.json", "JSON object"});
  expect_error([&] { parse(R"({"models": [{"model": "a", "weight": 1}]})"); }, {"\"method\" is missing"});
  expect_error([&] { parse(R"({"method": "dare_ties", "models": [{"model": "a", "weight": 1}]})"); },
               {"unknown merge method \"dare_ties\"", "linear, slerp, task_arithmetic, ties"});
  expect_error([&] { parse(R"({"method": "ties", "models": [{"model": "a", "weight": 1}]})"); },
               {"ties needs \"base_model\""});
  expect_error([&] { parse(R"({"method": "task_arithmetic", "models": [{"model": "a", "weight": 1}]})"); },
               {"task_arithmetic needs \"base_model\""});
  expect_error([&] { parse(R"({"method": "ties", "base_model": "b", "models": [{"model": "b"}]})"); },
               {"at least one model besides base_model"});
  // Weights: one per model where the method needs them; slerp has exactly two endpoints.
  expect_error([&] { parse(R"({"method": "linear", "models": [{"model": "a", "weight": 1}, {"model": "c"}]})"); },
               {"models[1] (c) has no \"weight\""});
  expect_error([&] { parse(R"({"method": "ties", "base_model": "b", "models": [{"model": "a"}]})"); },
               {"models[0] (a) has no \"weight\""});
  expect_error([&] { parse(R"({"method": "slerp", "models": [{"model": "a"}, {"model": "b"}, {"model": "c"}]})"); },
               {"slerp merges exactly two models", "has 3"});
  expect_error([&] { parse(R"({"method": "slerp", "base_model": "a", "models": [{"model": "b"}, {"model": "c"}]})"); },
               {"slerp merges exactly two models", "has 2 besides the base"});
  expect_error([&] { parse(R"({"method": "slerp", "models": [{"model": "a", "weight": 1}, {"model": "b"}]})"); },
               {"models[0]", "\"weight\" does not apply to slerp"});
  // Density in (0, 1], ties only.
  for (const char* d : {"0", "-0.5", "1.5"})
    expect_error([&] {
      parse(std::string(R"({"method": "ties", "base_model": "b", "models": [{"model": "a", "weight": 1, "density": )") + d +
            "}]}");
    }, {"models[0].density must be in (0, 1]"});
  expect_error([&] { parse(R"({"method": "linear", "models": [{"model": "a", "weight": 1, "density": 0.5}]})"); },
               {"\"density\" applies to ties only"});
  // Other fields.
  expect_error([&] { parse(R"({"method": "linear", "models": [{"model": "a", "weight": 1}], "t": 0.5})"); },
               {"\"t\" applies to slerp only"});
  expect_error([&] { parse(R"({"method": "linear", "models": [{"model": "a", "weight": 1}], "lambda": 2})"); },
               {"\"lambda\" applies to task_arithmetic and ties only"});
  expect_error([&] { parse(R"({"method": "linear", "models": [{"model": "a", "weight": 1, "wieght": 2}]})"); },
               {"models[0]: unknown key \"wieght\""});
  expect_error([&] { parse(R"({"method": "linear", "models": [{"model": "a", "weight": 1}], "slices": []})"); },
               {"unknown key \"slices\""});
  expect_error([&] { parse(R"({"method": "linear", "models": [{"model": "a", "weight": "1"}]})"); },
               {"models[0].weight must be a number"});
  expect_error([&] { parse(R"({"method": "linear", "models": [{"model": "a", "weight": 1}, {"model": "c", "weight": -1}]})"); },
               {"weights sum to 0"});
  expect_error([&] { parse(R"({"method": "linear", "models": [{"model": "a", "weight": 1}], "dtype": "int8"})"); },
               {"unknown \"dtype\""});
  expect_error([&] { parse(R"({"method": "linear", "models": []})"); }, {"non-empty array"});
  expect_error([&] { MergeRecipe::load((root_ / "missing.json").string()); }, {"missing.json"});
}

TEST_F(MergeTest, RecipeDefaultsAndMergekitSpelling) {
  // mergekit's layout: merge_method and nested "parameters" objects.
  MergeRecipe r = recipe({{"merge_method", "ties"},
                          {"base_model", "b"},
                          {"models", {{{"model", "b"}}, {{"model", "a"}, {"parameters", {{"weight", 0.7}, {"density", 0.4}}}}}},
                          {"parameters", {{"lambda", 0.9}}},
                          {"dtype", "bfloat16"}});
  EXPECT_EQ(r.method, MergeMethod::Ties);
  EXPECT_TRUE(r.normalize);  // mergekit's default for ties
  EXPECT_DOUBLE_EQ(r.lambda, 0.9);
  ASSERT_EQ(r.models.size(), 2u);
  EXPECT_FALSE(r.models[0].weight.has_value());
  EXPECT_DOUBLE_EQ(*r.models[1].weight, 0.7);
  EXPECT_DOUBLE_EQ(r.models[1].density, 0.4);
  EXPECT_EQ(*r.dtype, TensorDType::BF16);
  EXPECT_EQ(r.reference_model(), "b");
  EXPECT_EQ(r.to_json()["method"], "ties");
  EXPECT_FALSE(recipe({{"method", "task_arithmetic"}, {"base_model", "b"}, {"models", {{{"model", "a"}, {"weight", 1}}}}})
                   .normalize);  // mergekit's default for task arithmetic
  EXPECT_TRUE(recipe({{"method", "linear"}, {"models", {{{"model", "a"}, {"weight", 1}}}}}).normalize);
  EXPECT_DOUBLE_EQ(recipe({{"method", "slerp"}, {"models", {{{"model", "a"}}, {{"model", "b"}}}}}).t, 0.5);
  expect_error([&] {
    recipe({{"method", "linear"}, {"models", {{{"model", "a"}, {"weight", 1}, {"parameters", {{"weight", 2}}}}}}});
  }, {"\"weight\" is given both directly and under \"parameters\""});
}

TEST_F(MergeTest, LinearByHand) {
  const std::string a = model("a", {{"w", {{2, 2}, {1, 2, 3, 4}}}, {"n", {{2}, {1, 1}}}});
  const std::string b = model("b", {{"w", {{2, 2}, {3, 2, 1, 0}}}, {"n", {{2}, {0, 4}}}});
  auto r = recipe({{"method", "linear"}, {"models", {{{"model", a}, {"weight", 1}}, {{"model", b}, {"weight", 3}}}}});
  MergeReport rep = merge_checkpoints(r, out());
  EXPECT_EQ(rep.tensors, 2u);
  expect_near(read(out(), "w"), {2.5, 2, 1.5, 1});  // (1 a + 3 b) / 4
  expect_near(read(out(), "n"), {0.25, 3.25});
  // Not normalized: 1 a + 3 b.
  r.normalize = false;
  merge_checkpoints(r, out("raw"));
  expect_near(read(out("raw"), "w"), {10, 8, 6, 4});
  // Output files: config.json of the first model, its tokenizer, the recipe.
  EXPECT_TRUE(fs::exists(out() + "/config.json"));
  EXPECT_TRUE(fs::exists(out() + "/tokenizer.json"));
  auto rec = json::parse(std::ifstream(out() + "/merge_recipe.json"));
  EXPECT_EQ(rec["method"], "linear");
  EXPECT_EQ(rec["models"][1]["weight"], 3.0);
  // Progress: one call per tensor.
  std::vector<std::string> seen;
  merge_checkpoints(r, out("p"), [&](size_t done, size_t total, uint64_t, uint64_t, const std::string& n) {
    EXPECT_EQ(total, 2u);
    EXPECT_EQ(done, seen.size() + 1);
    seen.push_back(n);
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"n", "w"}));
}

TEST_F(MergeTest, SlerpByHand) {
  // Orthogonal directions of different lengths: angle pi/2, both coefficients sin(pi/4)/1.
  // Parallel ones: the near-parallel fallback, plain linear interpolation.
  const std::string a = model("a", {{"o", {{2}, {2, 0}}}, {"p", {{2}, {1, 2}}}});
  const std::string b = model("b", {{"o", {{2}, {0, 1}}}, {"p", {{2}, {2, 4}}}});
  const double s = std::sin(M_PI / 4);
  merge_checkpoints(recipe({{"method", "slerp"}, {"models", {{{"model", a}}, {{"model", b}}}}}), out());
  expect_near(read(out(), "o"), {2 * s, s});
  expect_near(read(out(), "p"), {1.5, 3});
  // t = 0.25 with a as base_model (mergekit lists the base among the models as well).
  merge_checkpoints(recipe({{"method", "slerp"}, {"base_model", a}, {"models", {{{"model", a}}, {{"model", b}}}}, {"t", 0.25}}),
                    out("q"));
  expect_near(read(out("q"), "o"), {2 * std::sin(0.75 * M_PI / 2), std::sin(0.25 * M_PI / 2)});
  expect_near(read(out("q"), "p"), {1.25, 2.5});
}

TEST_F(MergeTest, TaskArithmeticByHand) {
  const std::string base = model("base", {{"w", {{4}, {1, 1, 1, 1}}}});
  const std::string m1 = model("m1", {{"w", {{4}, {2, 1, 1, 0}}}});  // delta 1, 0, 0, -1
  const std::string m2 = model("m2", {{"w", {{4}, {1, 3, 1, 1}}}});  // delta 0, 2, 0, 0
  json j = {{"method", "task_arithmetic"},
            {"base_model", base},
            {"models", {{{"model", m1}, {"weight", 1}}, {{"model", m2}, {"weight", 1}}}},
            {"lambda", 0.5}};
  merge_checkpoints(recipe(j), out());
  expect_near(read(out(), "w"), {1.5, 2, 1, 0.5});
  j["normalize"] = true;  // divided by the weight sum 2
  merge_checkpoints(recipe(j), out("n"));
  expect_near(read(out("n"), "w"), {1.25, 1.5, 1, 0.75});
}

TEST_F(MergeTest, TiesByHand) {
  const std::string base = model("base", {{"w", {{4}, {0, 0, 0, 0}}}, {"e", {{4}, {1, 1, 1, 1}}}});
  const std::string m1 = model("m1", {{"w", {{4}, {3, -1, 0.5, 2}}}, {"e", {{4}, {2, 2, 2, 2}}}});
  const std::string m2 = model("m2", {{"w", {{4}, {-1, -2, 1, -4}}}, {"e", {{4}, {1, 1, 1, 1}}}});
  // density 0.5: m1 keeps 3 and 2, m2 keeps -2 and -4. Equal weights: sign sum (3, -2, 0, -2) elects
  // (+, -, +, -); element 3 keeps only m2's -4, element 2 nothing (divisor 0 -> 1).
  json j = {{"method", "ties"},
            {"base_model", base},
            {"models", {{{"model", m1}, {"weight", 1}, {"density", 0.5}}, {{"model", m2}, {"weight", 1}, {"density", 0.5}}}}};
  merge_checkpoints(recipe(j), out());
  expect_near(read(out(), "w"), {3, -2, 0, -4});
  // Tensor "e": m1's delta is 1 everywhere (equal magnitudes: the first two indices are kept),
  // m2's is 0 everywhere (never agrees with a sign).
  expect_near(read(out(), "e"), {2, 2, 1, 1});
  // Weights 2 and 1: weighted deltas (6, 0, 0, 4) and (0, -2, 0, -4); sums (6, -2, 0, 0) elect
  // (+, -, +, +) (a zero sum counts as +); weighted mean of the agreeing entries.
  j["models"][0]["weight"] = 2;
  merge_checkpoints(recipe(j), out("w"));
  expect_near(read(out("w"), "w"), {3, -2, 0, 2});
  // lambda 0.5, not normalized: sums of the agreeing weighted deltas, halved.
  j["lambda"] = 0.5;
  j["normalize"] = false;
  merge_checkpoints(recipe(j), out("l"));
  expect_near(read(out("l"), "w"), {3, -1, 0, 2});
  // A density that keeps nothing of a 4-element tensor is refused (as mergekit does).
  j["models"][0]["density"] = 0.1;
  expect_error([&] { merge_checkpoints(recipe(j), out("z")); }, {"keeps no element", "tensor '"});
  EXPECT_FALSE(fs::exists(out("z")));
}

TEST_F(MergeTest, OutputDtypeAndConfig) {
  const std::string a = model("a", {{"w", {{3}, {1.0f, 1.0078125f, -2}}}}, "LlamaForCausalLM", "llama", TensorDType::BF16);
  const std::string b = model("b", {{"w", {{3}, {3.0f, 1.0078125f, 2}}}}, "LlamaForCausalLM", "llama", TensorDType::BF16);
  json j = {{"method", "linear"}, {"models", {{{"model", a}, {"weight", 1}}, {{"model", b}, {"weight", 1}}}}};
  merge_checkpoints(recipe(j), out());  // default: the first model's dtype (BF16)
  EXPECT_EQ(HfCheckpoint::open(out())->tensor("w").dtype, TensorDType::BF16);
  expect_near(read(out(), "w"), {2, 1.0078125, 0}, 0);
  j["dtype"] = "float32";
  merge_checkpoints(recipe(j), out("f"));
  EXPECT_EQ(HfCheckpoint::open(out("f"))->tensor("w").dtype, TensorDType::F32);
  auto cfg = json::parse(std::ifstream(out("f") + "/config.json"));
  EXPECT_EQ(cfg["torch_dtype"], "float32");
  EXPECT_EQ(cfg["architectures"][0], "LlamaForCausalLM");
}

TEST_F(MergeTest, ArchitectureMismatchRefused) {
  const std::string a = model("a", {{"w", {{2}, {1, 2}}}});
  const std::string b = model("b", {{"w", {{2}, {1, 2}}}}, "Phi3ForCausalLM", "phi3");
  auto r = recipe({{"method", "linear"}, {"models", {{{"model", a}, {"weight", 1}}, {{"model", b}, {"weight", 1}}}}});
  expect_error([&] { merge_checkpoints(r, out()); },
               {"cannot merge '" + a + "' and '" + b + "'", "\"architectures\"", "LlamaForCausalLM", "Phi3ForCausalLM",
                "side by side"});
  const std::string c = model("c", {{"w", {{2}, {1, 2}}}}, "LlamaForCausalLM", "mistral");
  auto r2 = recipe({{"method", "slerp"}, {"models", {{{"model", a}}, {{"model", c}}}}});
  expect_error([&] { merge_checkpoints(r2, out()); }, {"\"model_type\"", "\"llama\"", "\"mistral\""});
  EXPECT_FALSE(fs::exists(out()));
}

TEST_F(MergeTest, ShapeAndNameMismatchRefused) {
  const std::string base = model("base", {{"w", {{2, 2}, {1, 2, 3, 4}}}, {"n", {{2}, {1, 1}}}});
  const std::string wide = model("wide", {{"w", {{2, 3}, {1, 2, 3, 4, 5, 6}}}, {"n", {{2}, {1, 1}}}});
  const std::string fewer = model("fewer", {{"w", {{2, 2}, {1, 2, 3, 4}}}});
  auto r = recipe({{"method", "ties"}, {"base_model", base}, {"models", {{{"model", wide}, {"weight", 1}}}}});
  expect_error([&] { merge_checkpoints(r, out()); },
               {"cannot merge '" + base + "' and '" + wide + "'", "tensor 'w' has shape [2, 2]", "[2, 3]"});
  auto r2 = recipe({{"method", "task_arithmetic"}, {"base_model", base}, {"models", {{{"model", fewer}, {"weight", 1}}}}});
  expect_error([&] { merge_checkpoints(r2, out()); }, {"tensor 'n' is in '" + base + "' but not in '" + fewer + "'"});
  EXPECT_FALSE(fs::exists(out()));
  for (const auto& e : fs::directory_iterator(root_))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST_F(MergeTest, ExistingOutputRefusedUnlessForced) {
  const std::string a = model("a", {{"w", {{2}, {1, 2}}}});
  const std::string b = model("b", {{"w", {{2}, {3, 4}}}});
  auto r = recipe({{"method", "linear"}, {"models", {{{"model", a}, {"weight", 1}}, {{"model", b}, {"weight", 1}}}}});
  fs::create_directories(out());
  std::ofstream(out() + "/keep.txt") << "x";
  expect_error([&] { merge_checkpoints(r, out()); }, {"already exists", "--force"});
  EXPECT_TRUE(fs::exists(out() + "/keep.txt"));
  MergeOutputOptions force;
  force.force = true;
  merge_checkpoints(r, out(), {}, force);
  EXPECT_FALSE(fs::exists(out() + "/keep.txt"));
  expect_near(read(out(), "w"), {2, 3});
  // Never onto an input model, even with --force.
  expect_error([&] { merge_checkpoints(r, a, {}, force); }, {"is the input model"});
  EXPECT_TRUE(fs::exists(a + "/model.safetensors"));
  // An empty directory is fine.
  fs::create_directories(out("empty"));
  merge_checkpoints(r, out("empty"));
  expect_near(read(out("empty"), "w"), {2, 3});
}

TEST_F(MergeTest, ShardedOutput) {
  const std::string a = model("a", {{"w1", {{4}, {1, 2, 3, 4}}}, {"w2", {{4}, {5, 6, 7, 8}}}});
  auto r = recipe({{"method", "linear"}, {"models", {{{"model", a}, {"weight", 1}}, {{"model", a}, {"weight", 1}}}}});
  MergeOutputOptions o;
  o.shard_bytes = 16;
  MergeReport rep = merge_checkpoints(r, out(), {}, o);
  EXPECT_EQ(rep.files, 2);
  EXPECT_TRUE(fs::exists(out() + "/model.safetensors.index.json"));
  expect_near(read(out(), "w2"), {5, 6, 7, 8}, 0);
}

}  // namespace
}  // namespace upg
