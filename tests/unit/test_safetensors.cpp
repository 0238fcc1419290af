// Safetensors reader/writer: round trip, and every malformed input yields an Error naming the problem.
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

#include "base/error.h"
#include "base/half.h"
#include "format/safetensors.h"
#include "test_util.h"

using namespace upg;
namespace fs = std::filesystem;

namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("upg_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a file made of an 8-byte length (of `header` unless `len` is given), the header, data.
  std::string raw(const std::string& name, const std::string& header, const std::string& data,
                  std::optional<uint64_t> len = std::nullopt) {
    std::string p = (dir_ / name).string();
    std::ofstream f(p, std::ios::binary);
    uint64_t n = len ? *len : header.size();
    for (int i = 0; i < 8; ++i) f.put(static_cast<char>(n >> (8 * i)));
    f << header << data;
    return p;
  }

  // Expects opening `path` to throw an Error whose message contains every one of `parts`.
  void expect_error(const std::string& path, std::initializer_list<std::string> parts) {
    try {
      SafetensorsFile f = SafetensorsFile::open(path);
      ADD_FAILURE() << "expected an error for " << path;
    } catch (const Error& e) {
      std::string msg = e.what();
      for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
      EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    }
  }

  fs::path dir_;
};

}  // namespace

TEST_F(SafetensorsTest, RoundTripAllDtypesAndMetadata) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-3, 3);
  std::vector<float> f32(6 * 5);
  for (auto& v : f32) v = u(rng);
  std::vector<uint16_t> bf16(7 * 3), f16(11);
  for (auto& v : bf16) v = f32_to_bf16(u(rng));
  for (auto& v : f16) v = f32_to_f16(u(rng));
  std::vector<int32_t> i32 = {1, -2, 3};
  std::vector<int64_t> i64 = {1LL << 40, -5};
  std::vector<uint8_t> u8 = {1, 2, 3, 4, 5};

  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.add("a.u8", TensorDType::U8, {5}, u8.data(), u8.size());
  w.add("b.bf16", TensorDType::BF16, {7, 3}, bf16.data(), bf16.size() * 2);
  w.add_f32("c.f32", {6, 5}, f32);
  w.add_ref("d.f16", TensorDType::F16, {11}, f16.data(), f16.size() * 2);
  w.add_i32("e.i32", {3}, i32);
  w.add("f.i64", TensorDType::I64, {2}, i64.data(), 16);
  w.add("g.empty", TensorDType::F32, {0, 4}, nullptr, 0);
  w.add("h.scalar", TensorDType::F32, {}, f32.data(), 4);
  std::string p = (dir_ / "rt.safetensors").string();
  w.write(p);
  EXPECT_FALSE(fs::exists(p + ".tmp-" + std::to_string(::getpid())));

  SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_EQ(f.tensors().size(), 8u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const TensorView& c = f.get("c.f32");
  EXPECT_EQ(c.dtype, TensorDType::F32);
  EXPECT_EQ(c.shape, (std::vector<int64_t>{6, 5}));
  EXPECT_EQ(0, std::memcmp(c.data, f32.data(), f32.size() * 4));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(c.data) % 4, 0u);  // naturally aligned
  const TensorView& b = f.get("b.bf16");
  EXPECT_EQ(b.dtype, TensorDType::BF16);
  EXPECT_EQ(0, std::memcmp(b.data, bf16.data(), bf16.size() * 2));
  EXPECT_EQ(0, std::memcmp(f.get("d.f16").data, f16.data(), f16.size() * 2));
  EXPECT_EQ(0, std::memcmp(f.get("e.i32").data, i32.data(), 12));
  EXPECT_EQ(0, std::memcmp(f.get("f.i64").data, i64.data(), 16));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.get("f.i64").data) % 8, 0u);
  EXPECT_EQ(0, std::memcmp(f.get("a.u8").data, u8.data(), 5));
  EXPECT_EQ(f.get("g.empty").nbytes, 0u);
  EXPECT_EQ(f.get("h.scalar").numel(), 1);
  EXPECT_EQ(f.find("nope"), nullptr);
  try {
    f.get("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'nope'"), std::string::npos);
  }
  // Tensors are packed without gaps: their sizes add up to the data section, which ends the file.
  size_t total = 0;
  for (const auto& t : f.tensors()) total += t.nbytes;
  const TensorView& last = f.tensors().back();
  EXPECT_EQ(last.data + last.nbytes - f.tensors().front().data, static_cast<ptrdiff_t>(total));
  EXPECT_EQ(static_cast<size_t>(fs::file_size(p)) % 8, total % 8);
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  SafetensorsWriter w;
  std::vector<float> v(4);
  EXPECT_THROW(w.add_f32("x", {3}, v), Error);  // size mismatch
  w.add_f32("x", {4}, v);
  EXPECT_THROW(w.add_f32("x", {4}, v), Error);  // duplicate
  EXPECT_THROW(w.add("y", TensorDType::F32, {-1}, v.data(), 0), Error);
  EXPECT_THROW(w.write((dir_ / "no_such_dir" / "f.safetensors").string()), Error);
}

TEST_F(SafetensorsTest, TruncatedFile) {
  std::string p = (dir_ / "short.safetensors").string();
  std::ofstream(p, std::ios::binary) << "abc";
  expect_error(p, {"truncated"});
}

TEST_F(SafetensorsTest, HeaderLengthLargerThanFile) {
  expect_error(raw("hl.safetensors", "{}", "", 1000), {"header length 1000", "larger"});
  expect_error(raw("hl2.safetensors", "{}", "", ~uint64_t{0} - 1), {"header length", "larger"});
}

TEST_F(SafetensorsTest, MalformedJson) {
  expect_error(raw("bad.safetensors", "{\"a\": [1, 2", ""), {"malformed JSON"});
  expect_error(raw("arr.safetensors", "[1, 2]", ""), {"malformed JSON", "object"});
}

TEST_F(SafetensorsTest, UnknownDtype) {
  expect_error(raw("dt.safetensors", R"({"w": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 2]}})", "xx"),
               {"'w'", "unknown dtype 'Q4_K'"});
}

TEST_F(SafetensorsTest, MissingFields) {
  expect_error(raw("m1.safetensors", R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "xxxx"), {"'w'", "dtype"});
  expect_error(raw("m2.safetensors", R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", "xxxx"), {"'w'", "shape"});
  expect_error(raw("m3.safetensors", R"({"w": {"dtype": "F32", "shape": [1]}})", "xxxx"), {"'w'", "data_offsets"});
  expect_error(raw("m4.safetensors", R"({"w": 5})", ""), {"'w'", "object"});
  expect_error(raw("m5.safetensors", R"({"__metadata__": {"a": 1}})", ""), {"__metadata__", "'a'"});
}

TEST_F(SafetensorsTest, OffsetsOutOfRange) {
  expect_error(raw("o1.safetensors", R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", "xxxx"),
               {"'w'", "out of range", "4 bytes"});
  expect_error(raw("o2.safetensors", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", "xxxx"),
               {"'w'", "begin after end"});
  expect_error(raw("o3.safetensors", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", "xxxx"),
               {"'w'", "negative"});
}

TEST_F(SafetensorsTest, OffsetsNotMatchingShape) {
  expect_error(raw("s.safetensors", R"({"w": {"dtype": "BF16", "shape": [3, 2], "data_offsets": [0, 8]}})",
                   std::string(8, 'x')),
               {"'w'", "span 8 bytes", "[3, 2]", "BF16", "needs 12 bytes"});
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  expect_error(raw("ov.safetensors",
                   R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                   std::string(12, 'x')),
               {"'a'", "'b'", "overlap"});
}

TEST_F(SafetensorsTest, BadShapes) {
  expect_error(raw("neg.safetensors", R"({"w": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 0]}})", ""),
               {"'w'", "negative"});
  expect_error(raw("ovf.safetensors",
                   R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", ""),
               {"'w'", "overflow"});
  expect_error(raw("flt.safetensors", R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 0]}})", ""),
               {"'w'", "integer"});
}

TEST_F(SafetensorsTest, RandomCorruptionNeverCrashes) {
  // Flip random bytes of a valid file; opening must either succeed or throw Error.
  SafetensorsWriter w;
  std::vector<float> v(64, 1.0f);
  w.add_f32("a", {8, 8}, v);
  w.add_f32("b", {4, 16}, v);
  std::string p = (dir_ / "ok.safetensors").string();
  w.write(p);
  std::string bytes;
  {
    std::ifstream f(p, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  std::mt19937 rng(3);
  for (int trial = 0; trial < 300; ++trial) {
    std::string b = bytes;
    int flips = 1 + trial % 4;
    for (int i = 0; i < flips; ++i) b[rng() % std::min<size_t>(b.size(), 200)] = static_cast<char>(rng());
    if (trial % 7 == 0) b.resize(rng() % b.size());
    std::string q = (dir_ / "c.safetensors").string();
    std::ofstream(q, std::ios::binary) << b;
    try {
      SafetensorsFile f = SafetensorsFile::open(q);
      for (const auto& t : f.tensors()) ASSERT_LE(t.data + t.nbytes, reinterpret_cast<const uint8_t*>(0) + SIZE_MAX);
    } catch (const Error&) {
    }
  }
}
