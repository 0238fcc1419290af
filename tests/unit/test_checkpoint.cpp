// Hugging Face model directories: single file and shards; every user error is an Error naming
// the directory/file/tensor (missing directory, config.json, safetensors, shard, tensor; wrong shape
// with expected and found; unsupported dtype).
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "format/hf_checkpoint.h"
#include "runtime/model.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace upg;
namespace fs = std::filesystem;

namespace {

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("upg_ck_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  template <class F>
  void expect_error(F&& f, std::initializer_list<std::string> parts) {
    try {
      f();
      ADD_FAILURE() << "expected an Error";
    } catch (const Error& e) {
      for (const auto& p : parts)
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "message: " << e.what() << "\nmissing: " << p;
    }
  }
  std::string d() const { return dir_.string(); }
  fs::path dir_;
};

}  // namespace

TEST_F(CheckpointTest, MissingDirectoryConfigAndWeights) {
  expect_error([&] { HfCheckpoint::open(d() + "/nope"); }, {"nope", "does not exist"});
  expect_error([&] { Model::load(d() + "/nope"); }, {"nope", "does not exist"});
  expect_error([&] { HfCheckpoint::open(d()); }, {"config.json"});
  std::ofstream(d() + "/config.json") << "{not json";
  expect_error([&] { HfCheckpoint::open(d()); }, {"config.json", "malformed JSON"});
  std::ofstream(d() + "/config.json") << "{}";
  expect_error([&] { HfCheckpoint::open(d()); }, {"no model.safetensors"});
  std::ofstream(d() + "/file.txt") << "x";
  expect_error([&] { HfCheckpoint::open(d() + "/file.txt"); }, {"not a directory"});
}

TEST_F(CheckpointTest, ShardedIndex) {
  SafetensorsWriter a, b;
  std::vector<float> v1 = {1, 2, 3, 4}, v2 = {5, 6};
  a.add_f32("x", {2, 2}, v1);
  b.add_f32("y", {2}, v2);
  a.write(d() + "/model-00001-of-00002.safetensors");
  b.write(d() + "/model-00002-of-00002.safetensors");
  std::ofstream(d() + "/config.json") << "{}";
  std::ofstream(d() + "/model.safetensors.index.json")
      << R"({"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}})";
  auto ck = HfCheckpoint::open(d());
  EXPECT_EQ(ck->names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(ck->tensor("y", {2}).numel(), 2);
  EXPECT_EQ(reinterpret_cast<const float*>(ck->tensor("x").data)[3], 4.0f);
  expect_error([&] { ck->tensor("z"); }, {"'z'", "not found"});
  expect_error([&] { ck->tensor("x", {4}); }, {"'x'", "[2, 2]", "expected [4]"});
  std::string text;
  EXPECT_TRUE(ck->read_file("config.json", text));
  EXPECT_FALSE(ck->read_file("tokenizer.json", text));
  // The index maps a tensor to the wrong shard; then names a missing shard.
  std::ofstream(d() + "/model.safetensors.index.json")
      << R"({"weight_map": {"x": "model-00002-of-00002.safetensors"}})";
  expect_error([&] { HfCheckpoint::open(d()); }, {"'x'", "does not contain"});
  std::ofstream(d() + "/model.safetensors.index.json")
      << R"({"weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00003-of-00003.safetensors"}})";
  expect_error([&] { HfCheckpoint::open(d()); }, {"model-00003-of-00003.safetensors", "missing"});
  std::ofstream(d() + "/model.safetensors.index.json") << R"({"nothing": 1})";
  expect_error([&] { HfCheckpoint::open(d()); }, {"weight_map"});
}

TEST_F(CheckpointTest, ModelLoadNamesMissingMisshapedAndBadDtypeTensors) {
  auto cfg = test::tiny_config("LlamaForCausalLM", "llama");
  test::write_tiny_model(d(), cfg, TensorDType::BF16);
  // Rewrite the weights without one tensor / with a wrong shape / with an int dtype.
  SafetensorsFile orig = SafetensorsFile::open(d() + "/model.safetensors");
  auto rewrite = [&](const std::string& drop, const std::string& reshape, bool int_dtype) {
    SafetensorsWriter w;
    for (const TensorView& t : orig.tensors()) {
      if (t.name == drop) continue;
      std::vector<int64_t> shape = t.shape;
      if (t.name == reshape) std::swap(shape[0], shape[1]);
      TensorDType dt = int_dtype && t.name == reshape ? TensorDType::I16 : t.dtype;
      w.add(t.name, dt, shape, t.data, t.nbytes);
    }
    w.write(d() + "/model2.safetensors");
  };
  fs::create_directories(dir_ / "m");
  fs::copy_file(dir_ / "config.json", dir_ / "m" / "config.json");
  rewrite("model.layers.1.mlp.up_proj.weight", "", false);
  fs::rename(dir_ / "model2.safetensors", dir_ / "m" / "model.safetensors");
  expect_error([&] { Model::load(d() + "/m"); }, {"model.layers.1.mlp.up_proj.weight", "not found"});
  rewrite("", "model.layers.0.self_attn.k_proj.weight", false);
  fs::rename(dir_ / "model2.safetensors", dir_ / "m" / "model.safetensors");
  expect_error([&] { Model::load(d() + "/m"); }, {"model.layers.0.self_attn.k_proj.weight", "[64, 32]", "expected [32, 64]"});
  rewrite("", "model.layers.0.mlp.down_proj.weight", false);
  fs::rename(dir_ / "model2.safetensors", dir_ / "m" / "model.safetensors");
  expect_error([&] { Model::load(d() + "/m"); }, {"model.layers.0.mlp.down_proj.weight", "[96, 64]", "expected [64, 96]"});
  SafetensorsWriter w;
  for (const TensorView& t : orig.tensors())
    w.add(t.name, t.name == "model.norm.weight" ? TensorDType::I16 : t.dtype, t.shape, t.data, t.nbytes);
  w.write(d() + "/m/model.safetensors");
  expect_error([&] { Model::load(d() + "/m"); }, {"model.norm.weight", "unsupported dtype I16"});
  // And the intact directory loads.
  EXPECT_NO_THROW(Model::load(d()));
}
