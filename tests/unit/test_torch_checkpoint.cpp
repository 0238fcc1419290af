// Legacy PyTorch checkpoints (pytorch_model.bin, zip format of torch.save >= 1.6), read without
// executing anything: format/zip_archive.h, format/torch_pickle.h, format/torch_checkpoint.h, the
// HfCheckpoint fallback to pytorch_model.bin(.index.json) and the safetensors export of
// `upg convert --to safetensors` (format/hf_export.h).
//
// Inputs come from tests/scripts/make_torch_fixtures.py (Python's own pickle + a zip writer with
// torch.save's layout; no torch needed): f32/f16/bf16/i64 tensors, shared storages with offsets,
// a tensor referenced twice, non-contiguous views, a Parameter, protocol 4, zip64, Python's zipfile
// writer, shards; each compared bit for bit with the row-major bytes the script computed. Malicious
// and damaged files (os.system / builtins.eval / exec via __reduce__, other globals, a huge string,
// deep nesting, truncation, missing or short storages, views out of bounds, compression, overlapping
// entries, CRC damage, key traversal, the pre-1.6 format) must each fail with a message naming the
// problem, and the marker file the code-running ones would create must never appear. Tiny golden
// models (tests/golden) rewritten as pytorch_model.bin (one file, shards with shared storages,
// transposed storages) must give bit-identical tensors and identical logits to their safetensors.
// Pickle-level cases that need no Python are built here byte by byte.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/half.h"
#include "format/hf_checkpoint.h"
#include "format/hf_export.h"
#include "format/torch_checkpoint.h"
#include "format/torch_pickle.h"
#include "format/zip_archive.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "test_util.h"

using namespace upg;
namespace fs = std::filesystem;

namespace {

const char* kPython = "/usr/bin/python3";

std::string script() { return (fs::path(test::source_dir()) / "tests/scripts/make_torch_fixtures.py").string(); }

int run(const std::string& cmd) { return std::system(cmd.c_str()); }

template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected an Error mentioning '" << *parts.begin() << "'";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "message: " << e.what() << "\nmissing: " << p;
  }
}

// Every tensor of `a` equals the same-named tensor of `b`: names, dtype, shape and bytes.
void expect_same_tensors(const HfCheckpoint& a, const HfCheckpoint& b) {
  ASSERT_EQ(a.names(), b.names());
  for (const std::string& n : a.names()) {
    const TensorView& x = a.tensor(n);
    const TensorView& y = b.tensor(n);
    EXPECT_EQ(x.dtype, y.dtype) << n;
    EXPECT_EQ(x.shape, y.shape) << n;
    ASSERT_EQ(x.nbytes, y.nbytes) << n;
    EXPECT_TRUE(x.nbytes == 0 || std::memcmp(x.data, y.data, x.nbytes) == 0) << n << ": bytes differ";
  }
}

class TorchFixtures : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("upg_torch_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    if (::access(kPython, X_OK) != 0) return;
    made_ = run(str_cat(kPython, " ", script(), " fixtures ", root_.string(), " ", marker().string())) == 0;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  void SetUp() override {
    if (::access(kPython, X_OK) != 0) GTEST_SKIP() << kPython << " not found: the fixtures need it";
    ASSERT_TRUE(made_) << "make_torch_fixtures.py failed";
  }
  static fs::path marker() { return root_ / "MARKER"; }
  static fs::path good(const std::string& c) { return root_ / "good" / c; }
  static fs::path bad(const std::string& c) { return root_ / "bad" / (c + ".bin"); }
  static inline fs::path root_;
  static inline bool made_ = false;
};

}  // namespace

TEST_F(TorchFixtures, EveryLayoutGivesTheExpectedTensorsBitExactly) {
  for (const char* c : {"basic", "zip64", "proto4", "unaligned", "pyzipfile", "sharded"}) {
    SCOPED_TRACE(c);
    auto ck = HfCheckpoint::open(good(c).string());
    EXPECT_EQ(ck->format(), "pytorch");
    const SafetensorsFile exp = SafetensorsFile::open(good(c).string() + ".expected.safetensors");
    std::vector<std::string> names;
    for (const TensorView& t : exp.tensors()) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    EXPECT_EQ(ck->names(), names);
    for (const TensorView& e : exp.tensors()) {
      const TensorView* t = ck->find(e.name);
      ASSERT_TRUE(t) << e.name;
      EXPECT_EQ(t->dtype, e.dtype) << e.name;
      EXPECT_EQ(t->shape, e.shape) << e.name;
      ASSERT_EQ(t->nbytes, e.nbytes) << e.name;
      EXPECT_TRUE(e.nbytes == 0 || std::memcmp(t->data, e.data, e.nbytes) == 0) << e.name << ": bytes differ";
    }
    std::string text;
    EXPECT_TRUE(ck->read_file("tokenizer_config.json", text));
  }
  // Spot values (independent of the script's expected file).
  auto ck = HfCheckpoint::open(good("basic").string());
  const TensorView& e = ck->tensor("model.embed.weight", {3, 4});
  EXPECT_EQ(e.dtype, TensorDType::F32);
  float v;
  std::memcpy(&v, e.data + 4 * 5, 4);
  EXPECT_EQ(v, 1.5f);  // element 5: 5 * 0.5 - 1
  EXPECT_EQ(ck->tensor("model.layer.bf16").dtype, TensorDType::BF16);
  EXPECT_EQ(ck->tensor("model.norm.weight").dtype, TensorDType::F16);
  EXPECT_EQ(ck->tensor("ids").dtype, TensorDType::I64);
  EXPECT_EQ(ck->tensor("scalar").shape, std::vector<int64_t>{});
  EXPECT_EQ(ck->tensor("empty").nbytes, 0u);
  // Shared storage: in place, the second view 8 floats further; the same tensor under two names.
  EXPECT_EQ(ck->tensor("tied.b").data, ck->tensor("tied.a").data + 32);
  EXPECT_EQ(ck->tensor("tied.c").data, ck->tensor("tied.a").data);
  // The transposed view [3, 2] stride [1, 3] of storage 1..6 is [[1, 4], [2, 5], [3, 6]].
  float tr[6];
  std::memcpy(tr, ck->tensor("transposed", {3, 2}).data, sizeof tr);
  EXPECT_EQ(std::vector<float>(tr, tr + 6), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  // Storages stored aligned to 64 bytes are used in place at their alignment.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ck->tensor("model.embed.weight").data) % 64, 0u);
}

TEST_F(TorchFixtures, MaliciousAndDamagedFilesAreRefusedWithoutRunningAnything) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"os_system", {"refuses to load", "posix.system", "not allowed in a state dict"}},
      {"builtins_eval", {"refuses to load", "__builtin__.eval"}},  // protocol 2 spells builtins so
      {"exec_proto4", {"refuses to load", "builtins.exec"}},
      {"subprocess", {"refuses to load", "subprocess.Popen"}},
      {"huge_string", {"string of 2147483647 bytes"}},
      {"deep_marks", {"MARKs nested deeper than 64"}},
      {"deep_tuples", {"nested deeper than 32"}},
      {"truncated", {"truncated"}},
      {"missing_storage", {"storage '0' is missing", "archive/data/0"}},
      {"view_out_of_bounds", {"reaches element 2", "storage '0'", "only 2 elements", "out of its storage's bounds"}},
      {"storage_size", {"archive/data/0", "has 8 bytes", "declares 4 elements"}},
      {"deflated", {"archive/data.pkl", "compressed (zip method 8)"}},
      {"overlap", {"overlap"}},
      {"crc", {"CRC-32"}},
      {"key_traversal", {"../data.pkl", "not a plain name"}},
      {"legacy", {"legacy torch.save format"}},
      {"big_endian", {"byte order 'big' is not supported"}},
  };
  for (const auto& [name, parts] : cases) {
    SCOPED_TRACE(name);
    const std::string p = bad(name).string();
    try {
      TorchCheckpointFile::open(p);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;  // names the file
      for (const auto& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << msg << "\nmissing: " << part;
    }
  }
  // Through the model directory paths too (what `upg run` / `upg convert` open).
  const fs::path d = root_ / "evil_dir";
  fs::create_directories(d);
  std::ofstream(d / "config.json") << R"({"architectures": ["LlamaForCausalLM"]})";
  fs::copy_file(bad("os_system"), d / "pytorch_model.bin", fs::copy_options::overwrite_existing);
  expect_error([&] { HfCheckpoint::open(d.string()); }, {"pytorch_model.bin", "posix.system"});
  expect_error([&] { Model::load(d.string()); }, {"pytorch_model.bin", "posix.system"});
  EXPECT_FALSE(fs::exists(marker())) << "a malicious pickle ran code";
}

TEST_F(TorchFixtures, ShardIndexErrors) {
  const fs::path d = root_ / "shard_errors";
  fs::remove_all(d);
  fs::copy(good("sharded"), d);
  std::ofstream(d / "pytorch_model.bin.index.json")
      << R"({"weight_map": {"tied.a": "pytorch_model-00003-of-00003.bin"}})";
  expect_error([&] { HfCheckpoint::open(d.string()); }, {"pytorch_model.bin.index.json", "00003", "missing"});
  std::ofstream(d / "pytorch_model.bin.index.json") << R"({"weight_map": {"nope": "pytorch_model-00001-of-00002.bin"}})";
  expect_error([&] { HfCheckpoint::open(d.string()); }, {"'nope'", "does not contain"});
  // Safetensors files win over pytorch_model.bin when both exist.
  fs::copy_file(good("basic").string() + ".expected.safetensors", d / "model.safetensors");
  EXPECT_EQ(HfCheckpoint::open(d.string())->format(), "safetensors");
}

TEST_F(TorchFixtures, ExportToSafetensorsIsBitExactAndAtomic) {
  for (const char* c : {"basic", "sharded"}) {
    SCOPED_TRACE(c);
    auto ck = HfCheckpoint::open(good(c).string());
    const fs::path out = root_ / (std::string("export_") + c);
    HfExportOptions o;
    o.shard_bytes = std::string(c) == "sharded" ? 64 : 0;  // several shards + index for the sharded case
    size_t calls = 0;
    o.progress = [&](size_t, size_t, uint64_t, uint64_t, const std::string&) { ++calls; };
    const HfExportReport r = write_hf_safetensors_dir(*ck, out.string(), o);
    EXPECT_EQ(calls, ck->names().size());
    EXPECT_TRUE(fs::exists(out / "config.json"));
    EXPECT_TRUE(fs::exists(out / "tokenizer_config.json"));
    EXPECT_FALSE(fs::exists(out / "pytorch_model.bin"));
    EXPECT_FALSE(fs::exists(out / "pytorch_model.bin.index.json"));
    auto back = HfCheckpoint::open(out.string());
    EXPECT_EQ(back->format(), "safetensors");
    expect_same_tensors(*ck, *back);
    if (std::string(c) == "sharded") {
      EXPECT_TRUE(fs::exists(out / "model.safetensors.index.json"));
      EXPECT_GT(r.weight_files.size(), 2u);
    } else {
      EXPECT_EQ(r.weight_files, std::vector<std::string>{"model.safetensors"});
    }
    // An existing non-empty output is refused and left alone; no temporary directory remains.
    expect_error([&] { write_hf_safetensors_dir(*ck, out.string()); }, {"already exists"});
    expect_error([&] { write_hf_safetensors_dir(*ck, good(c).string()); }, {"is the input directory"});
    for (const auto& e : fs::directory_iterator(root_))
      EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  }
}

// Tiny golden models rewritten as pytorch_model.bin give the same tensors and the same logits.
TEST_F(TorchFixtures, GoldenModelsFromBinMatchSafetensors) {
  const fs::path golden = fs::path(test::source_dir()) / "tests/golden";
  int checked = 0;
  for (const char* model : {"qwen2_bias_tied_bf16", "llama32_tied_sharded_f32", "llama2_linear_f16"}) {
    const fs::path src = golden / model;
    if (!fs::exists(src / "config.json")) continue;
    const std::vector<std::pair<std::string, std::string>> variants = {
        {"single", ""}, {"shards_shared", " --shards 3 --shared-storage"}, {"transposed", " --transpose"}};
    auto ref = HfCheckpoint::open(src.string());
    auto ref_model = Model::load(src.string());
    const std::vector<int32_t> prompt = {1, 17, 42, 99, 3, 250, 7};
    std::vector<float> want;
    Session(*ref_model, 16).forward(prompt, want, true);
    for (const auto& [vname, flags] : variants) {
      SCOPED_TRACE(std::string(model) + " " + vname);
      const fs::path dst = root_ / (std::string(model) + "_" + vname);
      ASSERT_EQ(run(str_cat(kPython, " ", script(), " from-safetensors ", src.string(), " ", dst.string(), flags)), 0);
      auto ck = HfCheckpoint::open(dst.string());
      EXPECT_EQ(ck->format(), "pytorch");
      expect_same_tensors(*ref, *ck);
      auto m = Model::load(dst.string());
      std::vector<float> got;
      Session(*m, 16).forward(prompt, got, true);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << "logits differ";
      ++checked;
    }
  }
  EXPECT_GT(checked, 0) << "no tests/golden model found";
}

// Real torch.save outputs (tools/make_goldens.py, torch 2.x on the GPU machine): tests/golden/torch_legacy/
// holds a tiny tied-embedding Llama as model.safetensors, the same state dict (plus lm_head.weight
// sharing the embedding's storage) saved with torch.save in single/ and, split in two, in sharded/,
// and dtypes.bin with f32/f16/bf16/i64 tensors and a view at an offset into a larger storage.
TEST(TorchGolden, RealTorchSaveOutputsMatchTheirSafetensors) {
  const fs::path d = fs::path(test::source_dir()) / "tests/golden/torch_legacy";
  if (!fs::is_directory(d)) GTEST_SKIP() << d << " not present (real torch.save fixtures)";
  auto ref = HfCheckpoint::open(d.string());
  ASSERT_EQ(ref->format(), "safetensors");
  auto ref_model = Model::load(d.string());
  const std::vector<int32_t> prompt = {1, 17, 42, 99, 3, 250, 7, 11};
  std::vector<float> want;
  Session(*ref_model, 16).forward(prompt, want, true);
  for (const char* sub : {"single", "sharded"}) {
    SCOPED_TRACE(sub);
    auto ck = HfCheckpoint::open((d / sub).string());
    EXPECT_EQ(ck->format(), "pytorch");
    std::vector<std::string> names = ref->names();
    names.push_back("lm_head.weight");
    std::sort(names.begin(), names.end());
    EXPECT_EQ(ck->names(), names);
    for (const std::string& n : ref->names()) {
      const TensorView& x = ref->tensor(n);
      const TensorView& y = ck->tensor(n);
      EXPECT_EQ(x.dtype, y.dtype) << n;
      EXPECT_EQ(x.shape, y.shape) << n;
      ASSERT_EQ(x.nbytes, y.nbytes) << n;
      EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes), 0) << n << ": bytes differ";
    }
    const TensorView& lm = ck->tensor("lm_head.weight");
    const TensorView& emb = ck->tensor("model.embed_tokens.weight");
    ASSERT_EQ(lm.nbytes, emb.nbytes);
    EXPECT_EQ(std::memcmp(lm.data, emb.data, lm.nbytes), 0);
    if (std::string(sub) == "single") {
      EXPECT_EQ(lm.data, emb.data);  // one storage, used in place
    }
    auto m = Model::load((d / sub).string());
    std::vector<float> got;
    Session(*m, 16).forward(prompt, got, true);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << "logits differ";
  }
  // dtypes.bin: values as torch made them.
  auto f = TorchCheckpointFile::open((d / "dtypes.bin").string());
  ASSERT_EQ(f->tensors().size(), 5u);
  auto floats = [](const TensorView& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) {
      if (t.dtype == TensorDType::F32) std::memcpy(&v[i], t.data + 4 * i, 4);
      uint16_t h;
      if (t.dtype != TensorDType::F32) std::memcpy(&h, t.data + 2 * i, 2);
      if (t.dtype == TensorDType::BF16) v[i] = bf16_to_f32(h);
      if (t.dtype == TensorDType::F16) v[i] = f16_to_f32(h);
    }
    return v;
  };
  const TensorView* a = f->find("a.f32");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(floats(*a), (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  const TensorView* b = f->find("b.f16");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->dtype, TensorDType::F16);
  EXPECT_EQ(floats(*b), (std::vector<float>{0, 0.25f, 0.5f, 0.75f, 1, 1.25f}));
  const TensorView* c = f->find("c.bf16");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->dtype, TensorDType::BF16);
  EXPECT_EQ(floats(*c), (std::vector<float>{0, 0.125f, 0.25f, 0.375f, 0.5f, 0.625f, 0.75f, 0.875f}));
  const TensorView* i64 = f->find("d.i64");
  ASSERT_TRUE(i64);
  EXPECT_EQ(i64->dtype, TensorDType::I64);
  std::vector<int64_t> iv(5);
  std::memcpy(iv.data(), i64->data, 40);
  EXPECT_EQ(iv, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  const TensorView* e = f->find("e.view");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(floats(*e), (std::vector<float>{4, 5, 6, 7, 8, 9, 10, 11, 12, 13}));
}

// ---------------------------------------------------------------------------------------------
// Pickle and zip cases built byte by byte (no Python).

namespace {

std::string P(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

TorchStateDict parse(const std::string& s) {
  return parse_torch_pickle(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "t.bin");
}

std::string binunicode(const std::string& s) {
  std::string o = "X";
  for (int i = 0; i < 4; ++i) o.push_back(static_cast<char>(s.size() >> (8 * i)));
  return o + s;
}

// _rebuild_tensor_v2(storage '0' of `numel` floats, offset, size, stride, False, OrderedDict()).
std::string tensor_expr(int numel, int offset, std::vector<int> size, std::vector<int> stride) {
  std::string s = "ctorch._utils\n_rebuild_tensor_v2\n(";
  s += '(';
  s += binunicode("storage");
  s += "ctorch\nFloatStorage\n";
  s += binunicode("0");
  s += binunicode("cpu");
  s += 'J';
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(numel >> (8 * i)));
  s += "tQ";
  s += P({'K', offset});
  s += "(";
  for (int d : size) s += P({'K', d});
  s += "t(";
  for (int d : stride) s += P({'K', d});
  s += "t";
  s += P({0x89}) + "ccollections\nOrderedDict\n)Rt" + "R";
  return s;
}

// A protocol-2 pickle of {name: tensor_expr(...)}.
std::string one_tensor(const std::string& name, int numel, int offset, std::vector<int> size, std::vector<int> stride) {
  return P({0x80, 2}) + "}" + binunicode(name) + tensor_expr(numel, offset, size, stride) + "s.";
}

}  // namespace

// Real torch.save of non-contiguous views (tools/make_goldens.py --only torch_strided; views/): a transposed
// tensor, strided and offset slices sharing one f32 storage, a strided bf16 view at an offset and
// every other row of an f16 tensor; strided_expected.safetensors holds torch's .contiguous() of each.
TEST(TorchGolden, RealNonContiguousViewsMatchTorch) {
  const fs::path d = fs::path(test::source_dir()) / "tests/golden/torch_legacy";
  auto f = TorchCheckpointFile::open((d / "views" / "strided.bin").string());
  SafetensorsFile want = SafetensorsFile::open((d / "views" / "strided_expected.safetensors").string());
  ASSERT_EQ(f->tensors().size(), want.tensors().size());
  for (const TensorView& w : want.tensors()) {
    SCOPED_TRACE(w.name);
    const TensorView* g = f->find(w.name);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->dtype, w.dtype);
    EXPECT_EQ(g->shape, w.shape);
    ASSERT_EQ(g->nbytes, w.nbytes);
    EXPECT_EQ(std::memcmp(g->data, w.data, w.nbytes), 0) << "values differ from torch's";
  }
}

TEST(TorchPickle, ParsesAStateDictAndChecksViews) {
  TorchStateDict sd = parse(one_tensor("w", 6, 0, {2, 3}, {3, 1}));
  ASSERT_EQ(sd.tensors.size(), 1u);
  EXPECT_EQ(sd.tensors[0].name, "w");
  EXPECT_EQ(sd.tensors[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(sd.tensors[0].stride, (std::vector<int64_t>{3, 1}));
  ASSERT_EQ(sd.storages.size(), 1u);
  EXPECT_EQ(sd.storages[0].numel, 6u);
  EXPECT_EQ(sd.storages[0].dtype, TensorDType::F32);
  EXPECT_EQ(sd.storages[0].location, "cpu");
  // Last element 1 + 1*3 + 2*1 = 6 is past a storage of 6.
  expect_error([] { parse(one_tensor("w", 6, 1, {2, 3}, {3, 1})); }, {"t.bin", "reaches element 6", "only 6"});
  // A huge stride: 255 * 255 far outside.
  expect_error([] { parse(one_tensor("w", 6, 0, {2, 2}, {255, 1})); }, {"out of its storage's bounds"});
  // Sizes and strides of different lengths.
  expect_error([] { parse(one_tensor("w", 6, 0, {2, 3}, {1})); }, {"size has 2 dimensions but stride has 1"});
}

TEST(TorchPickle, RefusesWhatAStateDictNeverHolds) {
  // GLOBAL of a disallowed name, whether or not it is called; also via STACK_GLOBAL.
  expect_error([] { parse(P({0x80, 2}) + "cos\nsystem\n."); }, {"refuses to load", "'os.system'"});
  expect_error([] { parse(P({0x80, 4}) + binunicode("builtins") + binunicode("getattr") + P({0x93}) + "."); },
               {"'builtins.getattr'"});
  // An allowed global that is not a callable a state dict uses.
  expect_error([] { parse(P({0x80, 2}) + "ctorch\nFloatStorage\n)R."); }, {"calls 'torch.FloatStorage'"});
  // Unsupported opcodes (INST 'i', OBJ 'o', NEWOBJ 0x81, EXT1 0x82).
  expect_error([] { parse(P({0x80, 2}) + "(i__builtin__\nlist\n."); }, {"opcode 0x69 ('i') is not supported"});
  expect_error([] { parse(P({0x80, 2, 0x82, 1, '.'})); }, {"opcode 0x82"});
  // Memo read before write; stack underflow; STOP without a dict; missing STOP.
  expect_error([] { parse(P({0x80, 2, 'h', 5, '.'})); }, {"memo entry 5 is read before it was written"});
  expect_error([] { parse(P({0x80, 2, 's', '.'})); }, {"stack underflow"});
  expect_error([] { parse(P({0x80, 2, 'N', '.'})); }, {"holds a None, not a state dict"});
  expect_error([] { parse(P({0x80, 2, '}'})); }, {"ends without STOP"});
  // A list that contains itself (a reference cycle) and a container changed after being used.
  expect_error([] { parse(P({0x80, 2, ']', 'q', 0, 'h', 0, 'a', '.'})); }, {"contains itself"});
  expect_error([] { parse(P({0x80, 2, ']', 'q', 0, 0x85, 'h', 0, 'N', 'a', '.'})); },
               {"APPEND modifies a list after it was placed inside another object"});
  // Integers wider than 64 bits; values that are not tensors; a name twice.
  expect_error([] { parse(P({0x80, 2, 0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, '.'})); }, {"LONG1 integer of 9 bytes"});
  expect_error([] { parse(P({0x80, 2, '}'}) + binunicode("w") + P({'K', 1, 's', '.'})); },
               {"state dict entry 'w' is a int, not a tensor"});
  const std::string twice = P({0x80, 2}) + "}" + binunicode("w") + tensor_expr(6, 0, {6}, {1}) + P({'q', 1}) + "s" +
                            binunicode("w") + P({'h', 1}) + "s.";
  expect_error([&] { parse(twice); }, {"tensor 'w' appears twice"});
  // The same tensor under two names is fine (tied weights).
  const std::string tied = P({0x80, 2}) + "}" + binunicode("a") + tensor_expr(6, 0, {6}, {1}) + P({'q', 1}) + "s" +
                           binunicode("b") + P({'h', 1}) + "s.";
  EXPECT_EQ(parse(tied).tensors.size(), 2u);
  // Truncated in the middle of an opcode; a pickle protocol from the future.
  expect_error([] { parse(P({0x80, 2, 'J', 1})); }, {"truncated"});
  expect_error([] { parse(P({0x80, 9, '.'})); }, {"protocol 9"});
  // A persistent id that is not a storage.
  expect_error([] { parse(P({0x80, 2}) + binunicode("x") + "Q."); }, {"persistent id is not ('storage'"});
}

TEST(TorchPickle, LimitsAreEnforced) {
  TorchPickleLimits lim;
  lim.max_bytes = 16;
  const std::string s = one_tensor("w", 6, 0, {6}, {1});
  expect_error([&] { parse_torch_pickle(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "t.bin", lim); },
               {"more than the 16 allowed"});
  TorchPickleLimits lim2;
  lim2.max_rank = 1;
  const std::string s2 = one_tensor("w", 6, 0, {2, 3}, {3, 1});
  expect_error([&] { parse_torch_pickle(reinterpret_cast<const uint8_t*>(s2.data()), s2.size(), "t.bin", lim2); },
               {"2 dimensions, more than 1"});
  expect_error([] { parse(P({0x80, 2}) + std::string(100, ']') + "."); }, {"STOP with unfinished objects"});
  TorchPickleLimits lim3;
  lim3.max_stack = 10;
  const std::string s3 = P({0x80, 2}) + std::string(20, 'N') + ".";
  expect_error([&] { parse_torch_pickle(reinterpret_cast<const uint8_t*>(s3.data()), s3.size(), "t.bin", lim3); },
               {"more than 10 objects on the stack"});
}

TEST(ZipArchive, RefusesWhatIsNotAZipAndFindsEntries) {
  const std::string junk(100, 'x');
  expect_error([&] { ZipArchive(reinterpret_cast<const uint8_t*>(junk.data()), junk.size(), "j.bin"); },
               {"j.bin", "no end of central directory record"});
  expect_error([&] { ZipArchive(reinterpret_cast<const uint8_t*>(junk.data()), 10, "j.bin"); }, {"smaller than"});
  // An empty archive: just the EOCD.
  const std::string empty = P({0x50, 0x4b, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  ZipArchive z(reinterpret_cast<const uint8_t*>(empty.data()), empty.size(), "e.zip");
  EXPECT_TRUE(z.entries().empty());
  EXPECT_EQ(z.find("a"), nullptr);
  // An EOCD claiming a central directory beyond the file.
  std::string bad = empty;
  bad[12] = 100;
  expect_error([&] { ZipArchive(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), "b.zip"); },
               {"central directory"});
  EXPECT_EQ(zip_crc32(reinterpret_cast<const uint8_t*>("123456789"), 9), 0xCBF43926u);
}
