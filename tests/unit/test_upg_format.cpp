// The UPG container: writer -> reader round trips, alignment and safetensors validity (checked by
// the numpy-only reader tests/scripts/check_safetensors.py), sharding, atomic output, and every kind
// of bad input -> upg::Error naming the problem (never a crash; these run under ASan in CI).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "base/error.h"
#include "base/half.h"
#include "codecs/codec_registry.h"
#include "format/upg_checksum.h"
#include "format/upg_container.h"
#include "format/upg_file.h"
#include "format/upg_format.h"
#include "format/upg_writer.h"
#include "upg_test_util.h"

using namespace upg;
using namespace upg::test;
using nlohmann::json;

namespace {

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Expects `fn` to throw upg::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  }
}

const char* kInt8 = "model.layers.0.mlp.down_proj.weight";
const char* kBf16 = "model.embed_tokens.weight";
const char* kNorm = "model.norm.weight";

struct Sample {
  std::vector<float> W, E, norm;
  EncodedTensor enc;
};

// Writes a small file: an int8 matrix (40 x 96, group 32), a bf16 matrix (17 x 24), an f32 vector (24).
Sample write_sample(const std::string& path, UpgWriterOptions opt = {}) {
  Sample s;
  s.W = random_values(40 * 96, 1);
  s.E = random_values(17 * 24, 2);
  s.norm = random_values(24, 3);
  s.enc = make_codec("int8")->encode(s.W.data(), 40, 96, {{"group", 32}});
  UpgWriter w(path, opt);
  w.set_text("config.json", R"({"architectures": ["Phi3ForCausalLM"]})");
  w.set_text("tokenizer.json", "{\"model\": {\"type\": \"BPE\"}, \"note\": \"quotes \\\" and \\n newlines\"}");
  w.set_converter({{"version", "test"}});
  w.add(kInt8, {{40, 96}, TensorDType::BF16, 0.0123}, s.enc);
  w.add_f32(kBf16, {{17, 24}, TensorDType::F32, std::nullopt}, s.E.data(), TensorDType::BF16);
  w.add_f32(kNorm, {{24}, TensorDType::F32, std::nullopt}, s.norm.data(), TensorDType::F32);
  auto files = w.finish();
  EXPECT_EQ(files.size(), opt.shard_bytes ? files.size() : 1u);
  return s;
}

TEST(UpgFormat, RoundTripSingleFile) {
  ScratchDir d("rt");
  const std::string p = d / "m.upg";
  Sample s = write_sample(p);
  EXPECT_EQ(d.files(), std::vector<std::string>{"m.upg"});  // no temporary files left

  auto f = UpgFile::open(p);
  EXPECT_EQ(f->format_version(), "2.0");
  EXPECT_EQ(f->text("config.json").value(), R"({"architectures": ["Phi3ForCausalLM"]})");
  EXPECT_NE(f->text("tokenizer.json").value().find("quotes \\\" and"), std::string::npos);
  EXPECT_FALSE(f->text("generation_config.json").has_value());
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->metadata().at("converter"), R"({"version":"test"})");

  const UpgTensor& a = *f->find(kInt8);
  EXPECT_EQ(a.codec, "int8");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{40, 96}));
  EXPECT_EQ(a.dtype, TensorDType::BF16);
  ASSERT_TRUE(a.err.has_value());
  EXPECT_DOUBLE_EQ(*a.err, 0.0123);
  EXPECT_EQ(a.params, s.enc.params);
  ASSERT_EQ(a.arrays.size(), 2u);
  EXPECT_EQ(a.arrays[0].role, "qweight");
  EXPECT_EQ(a.arrays[0].view->name, std::string(kInt8) + ".qweight");
  EXPECT_EQ(a.arrays[1].view->name, std::string(kInt8) + ".scales");
  EXPECT_EQ(a.stored_bytes(), s.enc.total_bytes());
  EXPECT_EQ(a.compute_xxh64(), a.xxh64);
  // The checksum is XXH64 over the arrays in role order.
  UpgHasher h;
  h.update(s.enc.arrays.at("qweight").bytes.data(), s.enc.arrays.at("qweight").bytes.size());
  h.update(s.enc.arrays.at("scales").bytes.data(), s.enc.arrays.at("scales").bytes.size());
  EXPECT_EQ(a.xxh64, h.hex());

  // Arrays are used in place and decode exactly as the encoder's own arrays do.
  auto m = a.open_matrix();
  auto ref = make_codec("int8")->open(s.enc.views(), 40, 96, s.enc.params);
  std::vector<float> x(40 * 96), y(40 * 96);
  m->decode_rows(0, 40, x.data());
  ref->decode_rows(0, 40, y.data());
  EXPECT_EQ(x, y);

  const UpgTensor& e = *f->find(kBf16);
  EXPECT_EQ(e.codec, "bf16");
  EXPECT_EQ(e.dtype, TensorDType::F32);
  EXPECT_FALSE(e.err.has_value());
  std::vector<float> ev(17 * 24);
  e.open_matrix()->decode_rows(0, 17, ev.data());
  for (size_t i = 0; i < ev.size(); ++i) EXPECT_EQ(ev[i], bf16_to_f32(f32_to_bf16(s.E[i])));
  const UpgTensor& n = *f->find(kNorm);
  EXPECT_EQ(n.codec, "f32");
  std::vector<float> nv(24);
  n.open_matrix()->decode_rows(0, 1, nv.data());
  EXPECT_EQ(nv, s.norm);

  // Every stored array starts 64-byte aligned in the file (mappings are page-aligned); padding
  // arrays fill the gaps, so the data section is covered contiguously.
  int pads = 0;
  for (const TensorView& t : f->safetensors().tensors())
    if (t.name.rfind(kUpgPadPrefix, 0) == 0)
      ++pads;
    else
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % kUpgAlign, 0u) << t.name;
  EXPECT_GT(pads, 0);
  EXPECT_EQ(run_python_checker("--align 64 --upg " + p), 0);
}

TEST(UpgFormat, EmptyModelAndDenseCodecThroughEncodedTensor) {
  ScratchDir d("empty");
  {
    UpgWriter w(d / "e.upg");
    w.finish();
  }
  auto f = UpgFile::open(d / "e.upg");
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_EQ(run_python_checker("--align 64 --upg " + d / "e.upg"), 0);

  // A bf16 tensor given as an EncodedTensor lands as codec "bf16".
  EncodedTensor t;
  t.codec = "bf16";
  Array a;
  a.dtype = DType::F16;  // codecs' DType has no BF16: a mismatching dtype is rejected
  a.shape = {4};
  a.bytes.resize(8);
  t.arrays["data"] = a;
  UpgWriter w(d / "f.upg");
  expect_error([&] { w.add("v", {{4}, TensorDType::BF16, {}}, t); }, {"'v'", "BF16"});
}

TEST(UpgFormat, ShardedOutputAndIndex) {
  ScratchDir d("shard");
  UpgWriterOptions opt;
  opt.shard_bytes = 500;  // int8 4080 bytes, bf16 816, f32 96 (+64 slack each): three shards
  Sample s = write_sample(d / "model.upg", opt);
  EXPECT_EQ(d.files(), (std::vector<std::string>{"model-00001-of-00003.upg", "model-00002-of-00003.upg",
                                                  "model-00003-of-00003.upg", "model.upg.index.json"}));
  json idx = json::parse(read_bytes(d / "model.upg.index.json"));
  EXPECT_EQ(idx["weight_map"][kInt8], "model-00001-of-00003.upg");
  EXPECT_EQ(idx["metadata"]["format"], "upg");
  EXPECT_TRUE(idx["metadata"].contains("config.json"));
  for (int i = 1; i <= 3; ++i) {
    const std::string shard = d / upg_shard_name("model", i, 3);
    EXPECT_EQ(run_python_checker("--align 64 --upg " + shard), 0);
    auto f = UpgFile::open(shard);
    EXPECT_EQ(f->tensors().size(), 1u);
    EXPECT_FALSE(f->text("config.json").has_value());  // texts live in the index
  }
  // Opened by index path, by directory, and by the .upg name given to the writer.
  for (const std::string& p : {d / "model.upg.index.json", d.path.string(), d / "model.upg"}) {
    SCOPED_TRACE(p);
    EXPECT_TRUE(is_upg_path(p));
    auto c = UpgContainer::open(p);
    EXPECT_TRUE(c->sharded());
    EXPECT_EQ(c->tensors().size(), 3u);
    EXPECT_EQ(c->text("config.json").value(), R"({"architectures": ["Phi3ForCausalLM"]})");
    std::vector<float> nv(24);
    c->tensor(kNorm).open_matrix()->decode_rows(0, 1, nv.data());
    EXPECT_EQ(nv, s.norm);
  }
}

TEST(UpgFormat, WriterLeavesNothingBehindOnError) {
  ScratchDir d("atomic");
  const std::string p = d / "m.upg";
  write_sample(p);
  const std::vector<uint8_t> before = read_bytes(p);
  {
    UpgWriter w(p);
    std::vector<float> v(8, 1.0f);
    w.add_f32("a", {{8}, TensorDType::F32, {}}, v.data(), TensorDType::F32);
    expect_error([&] { w.add_raw("b", {{8}, TensorDType::F32, {}}, TensorDType::F32, v.data(), 7); },
                 {"'b'", "needs 32 bytes", "given 7"});
    expect_error([&] { w.add_f32("a", {{8}, TensorDType::F32, {}}, v.data(), TensorDType::F32); }, {"'a'", "twice"});
    EncodedTensor bad = make_codec("int8")->encode(v.data(), 1, 8, {});
    bad.arrays["scales"].bytes.pop_back();
    expect_error([&] { w.add("c", {{1, 8}, TensorDType::F32, {}}, bad); }, {"'c'", "scales"});
    bad = make_codec("int8")->encode(v.data(), 1, 8, {});
    bad.codec = "int3000";
    expect_error([&] { w.add("c", {{1, 8}, TensorDType::F32, {}}, bad); }, {"'c'", "unknown codec 'int3000'"});
    bad = make_codec("int8")->encode(v.data(), 1, 8, {});
    expect_error([&] { w.add("c", {{2, 4}, TensorDType::F32, {}}, bad); }, {"'c'", "do not open"});
    // Abandoned without finish(): the old file stays, no temporary file remains.
  }
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_EQ(d.files(), std::vector<std::string>{"m.upg"});
  {
    UpgWriterOptions opt;
    opt.shard_bytes = 100;
    UpgWriter w(d / "s.upg", opt);
    std::vector<float> v(64, 1.0f);
    for (int i = 0; i < 4; ++i) w.add_f32("t" + std::to_string(i), {{64}, TensorDType::F32, {}}, v.data(), TensorDType::F32);
  }
  EXPECT_EQ(d.files(), std::vector<std::string>{"m.upg"});
}

// ---------------------------------------------------------------------------------------------
// Bad inputs.

class UpgBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    good = dir / "good.upg";
    write_sample(good);
    bytes = read_bytes(good);
  }
  std::string variant(const std::string& name, const std::vector<uint8_t>& b) {
    const std::string p = dir / name;
    write_bytes(p, b);
    return p;
  }
  ScratchDir dir{"bad"};
  std::string good;
  std::vector<uint8_t> bytes;
};

TEST_F(UpgBadInput, Truncated) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | bytes[i];
  for (size_t cut : {size_t{0}, size_t{5}, size_t{8}, size_t{8 + n / 2}, size_t{8 + n}, size_t{8 + n + 100},
                     bytes.size() / 2, bytes.size() - 1}) {
    SCOPED_TRACE(cut);
    const std::string p = variant("cut.upg", std::vector<uint8_t>(bytes.begin(), bytes.begin() + cut));
    try {
      UpgFile::open(p);
      ADD_FAILURE() << "truncated file accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      EXPECT_TRUE(msg.find("truncated") != std::string::npos || msg.find("out of range") != std::string::npos ||
                  msg.find("header") != std::string::npos || msg.find("empty") != std::string::npos)
          << msg;
    }
  }
}

TEST_F(UpgBadInput, CorruptedArrayByteFailsItsChecksumOnly) {
  auto f0 = UpgFile::open(good);
  const TensorView* q = f0->safetensors().find(std::string(kInt8) + ".qweight");
  const size_t pos = static_cast<size_t>(q->data - f0->safetensors().tensors()[0].data);  // relative to data start
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | bytes[i];
  std::vector<uint8_t> b = bytes;
  b[8 + n + pos + 17] ^= 0x40;
  auto f = UpgFile::open(variant("flip.upg", b));  // opening does not read the arrays
  for (const UpgTensor& t : f->tensors()) {
    if (t.name == kInt8)
      EXPECT_NE(t.compute_xxh64(), t.xxh64);
    else
      EXPECT_EQ(t.compute_xxh64(), t.xxh64) << t.name;
  }
}

TEST_F(UpgBadInput, HeaderLyingAboutSizesAndOffsets) {
  const std::string q = std::string(kInt8) + ".qweight";
  rewrite_header(good, dir / "a.upg", [&](json& h) { h[q]["data_offsets"][1] = h[q]["data_offsets"][1].get<int64_t>() + 1; });
  expect_error([&] { UpgFile::open(dir / "a.upg"); }, {"a.upg", q, "span"});
  rewrite_header(good, dir / "b.upg", [&](json& h) { h[q]["data_offsets"] = {1u << 30, (1u << 30) + 40 * 96}; });
  expect_error([&] { UpgFile::open(dir / "b.upg"); }, {q, "out of range"});
  rewrite_header(good, dir / "c.upg", [&](json& h) { h[q]["shape"] = {40, 97}; });
  expect_error([&] { UpgFile::open(dir / "c.upg"); }, {q, "[40, 97]"});
  rewrite_header(good, dir / "d.upg", [&](json& h) { h[q]["shape"] = {-1, 96}; });
  expect_error([&] { UpgFile::open(dir / "d.upg"); }, {q, "negative"});
  rewrite_header(good, dir / "e.upg", [&](json& h) { h[q]["dtype"] = "Q4"; });
  expect_error([&] { UpgFile::open(dir / "e.upg"); }, {q, "unknown dtype 'Q4'"});
  // Header length larger than the file.
  std::vector<uint8_t> b = bytes;
  b[6] = 0x7f;
  expect_error([&] { UpgFile::open(variant("f.upg", b)); }, {"header length", "truncated"});
  // Not JSON.
  b = bytes;
  b[8] = 'X';
  expect_error([&] { UpgFile::open(variant("g.upg", b)); }, {"malformed JSON"});
}

TEST_F(UpgBadInput, OverlappingOffsets) {
  const std::string q = std::string(kInt8) + ".qweight", s = std::string(kInt8) + ".scales";
  rewrite_header(good, dir / "o.upg", [&](json& h) {
    // scales (40 x 3 f16 = 240 bytes) moved to start inside qweight.
    int64_t b = h[q]["data_offsets"][0].get<int64_t>() + 64;
    h[s]["data_offsets"] = {b, b + 240};
  });
  expect_error([&] { UpgFile::open(dir / "o.upg"); }, {"overlap", q, s});
}

TEST_F(UpgBadInput, MetadataProblems) {
  auto edit_meta = [&](const std::string& name, const std::function<void(json&)>& fn) {
    rewrite_header(good, dir / name, [&](json& h) { fn(h["__metadata__"]); });
    return dir / name;
  };
  expect_error([&] { UpgFile::open(edit_meta("v3.upg", [](json& m) { m["format_version"] = "3.0"; })); },
               {"v3.upg", "format version 3.0 is not supported", "2.x"});
  expect_error([&] { UpgFile::open(edit_meta("v1.upg", [](json& m) { m["format_version"] = "1.7"; })); },
               {"format version 1.7 is not supported"});
  expect_error([&] { UpgFile::open(edit_meta("vx.upg", [](json& m) { m["format_version"] = "two"; })); },
               {"malformed 'format_version' \"two\""});
  // A newer minor version is accepted (minor versions only add optional fields).
  EXPECT_EQ(UpgFile::open(edit_meta("v29.upg", [](json& m) { m["format_version"] = "2.9"; }))->format_version(), "2.9");
  expect_error([&] { UpgFile::open(edit_meta("fmt.upg", [](json& m) { m["format"] = "gguf"; })); },
               {"not a UPG file", "\"gguf\""});
  expect_error([&] { UpgFile::open(edit_meta("nofmt.upg", [](json& m) { m.erase("format"); })); },
               {"not a UPG file", "no 'format'"});
  expect_error([&] { UpgFile::open(edit_meta("notab.upg", [](json& m) { m.erase("upg.tensors"); })); },
               {"no 'upg.tensors'"});
  expect_error([&] { UpgFile::open(edit_meta("badtab.upg", [](json& m) { m["upg.tensors"] = "{oops"; })); },
               {"'upg.tensors' is not valid JSON"});
  // A plain safetensors file (no metadata at all).
  rewrite_header(good, dir / "plain.safetensors", [](json& h) { h.erase("__metadata__"); });
  expect_error([&] { UpgFile::open(dir / "plain.safetensors"); }, {"not a UPG file"});
}

TEST_F(UpgBadInput, TensorTableProblems) {
  auto bad = [&](const std::string& name, const std::function<void(json&)>& fn,
                 std::initializer_list<std::string> parts) {
    SCOPED_TRACE(name);
    rewrite_table(good, dir / name, fn);
    expect_error([&] { UpgFile::open(dir / name); }, parts);
  };
  bad("codec.upg", [](json& t) { t[kInt8]["codec"] = "quantum9"; }, {kInt8, "unknown codec 'quantum9'", "int8"});
  bad("missing.upg", [](json& t) { t[kInt8]["arrays"]["scales"] = "no.such.array"; },
      {kInt8, "'no.such.array', which is not in the file"});
  bad("twice.upg", [](json& t) { t[kNorm]["arrays"]["data"] = std::string(kBf16) + ".data"; },
      {kNorm, "already used"});
  bad("noarrays.upg", [](json& t) { t[kNorm].erase("arrays"); }, {kNorm, "'arrays'"});
  bad("hash.upg", [](json& t) { t[kNorm]["xxh64"] = "XYZ"; }, {kNorm, "xxh64"});
  bad("shape.upg", [](json& t) { t[kNorm]["shape"] = {25}; }, {kNorm, "[25]"});
  bad("shape2.upg", [](json& t) { t[kNorm]["shape"] = {"a"}; }, {kNorm, "shape dimension"});
  bad("dense.upg", [](json& t) { t[kNorm]["codec"] = "bf16"; }, {kNorm, "has dtype F32", "needs BF16"});
  bad("dtype.upg", [](json& t) { t[kNorm]["dtype"] = "F99"; }, {kNorm, "unknown dtype 'F99'"});
  bad("params.upg", [](json& t) { t[kInt8]["params"] = "group=32"; }, {kInt8, "'params' must be an object"});
  bad("rank.upg", [](json& t) { t[kInt8]["shape"] = {2, 20, 96}; }, {kInt8, "1-D or 2-D"});
  bad("orphan.upg", [](json& t) { t.erase(kNorm); }, {"'model.norm.weight.data'", "belongs to no tensor"});
  bad("entry.upg", [](json& t) { t["x"] = 5; }, {"'x'", "must be an object"});
}

TEST_F(UpgBadInput, CodecRejectsInconsistentArrays) {
  // The table says 40 x 96, but the stored arrays are consistent with each other and with the
  // safetensors header only: the codec's open() must reject them, naming the array.
  rewrite_table(good, dir / "dims.upg", [](json& t) { t[kInt8]["shape"] = {40, 64}; });
  auto f = UpgFile::open(dir / "dims.upg");
  expect_error([&] { f->find(kInt8)->open_matrix(); }, {"dims.upg", kInt8, "qweight"});
  rewrite_table(good, dir / "grp.upg", [](json& t) { t[kInt8]["params"]["group"] = 16; });
  f = UpgFile::open(dir / "grp.upg");
  expect_error([&] { f->find(kInt8)->open_matrix(); }, {kInt8, "scales"});
  rewrite_table(good, dir / "role.upg", [](json& t) {
    t[kInt8]["arrays"]["weights"] = t[kInt8]["arrays"]["qweight"];
    t[kInt8]["arrays"].erase("qweight");
  });
  f = UpgFile::open(dir / "role.upg");
  expect_error([&] { f->find(kInt8)->open_matrix(); }, {kInt8, "qweight"});
}

TEST(UpgIndexParse, Problems) {
  const std::string meta = R"("metadata": {"format": "upg", "format_version": "2.0"})";
  EXPECT_EQ(parse_upg_index("{" + meta + R"(, "weight_map": {"a": "x.upg"}})", "i").weight_map.at("a"), "x.upg");
  expect_error([&] { parse_upg_index("[1]", "idx.json"); }, {"idx.json", "JSON object"});
  expect_error([&] { parse_upg_index("{", "idx.json"); }, {"idx.json", "not valid JSON"});
  expect_error([&] { parse_upg_index(R"({"weight_map": {}})", "i"); }, {"'metadata'"});
  expect_error([&] { parse_upg_index("{" + meta + "}", "i"); }, {"'weight_map'"});
  expect_error([&] { parse_upg_index("{" + meta + R"(, "weight_map": {"a": "../etc/passwd"}})", "i"); },
               {"'a'", "not a plain file name"});
  expect_error([&] { parse_upg_index("{" + meta + R"(, "weight_map": {"a": 3}})", "i"); }, {"'a'"});
  expect_error([&] { parse_upg_index(R"({"metadata": {"format": "upg", "format_version": "9.1"}, "weight_map": {}})", "i"); },
               {"9.1 is not supported"});
}

TEST(UpgIndexOpen, InconsistentShards) {
  ScratchDir d("idx");
  UpgWriterOptions opt;
  opt.shard_bytes = 500;
  write_sample(d / "model.upg", opt);
  const std::string idx_path = d / "model.upg.index.json";
  const json idx = json::parse(read_bytes(idx_path));
  auto with = [&](const std::function<void(json&)>& fn) {
    json j = idx;
    fn(j);
    const std::string s = j.dump();
    write_bytes(idx_path, std::vector<uint8_t>(s.begin(), s.end()));
  };
  with([](json& j) { j["weight_map"][kNorm] = "model-00001-of-00003.upg"; });
  expect_error([&] { UpgContainer::open(idx_path); }, {kNorm, "does not contain it"});
  // The index is authoritative (as Hugging Face's): a shard it does not name is not opened.
  with([](json& j) { j["weight_map"].erase(kNorm); });
  EXPECT_EQ(UpgContainer::open(idx_path)->find(kNorm), nullptr);
  with([](json& j) { j["metadata"]["format_version"] = "3.1"; });
  expect_error([&] { UpgContainer::open(idx_path); }, {"model.upg.index.json", "3.1 is not supported"});
  with([](json& j) { j["weight_map"][kNorm] = "gone.upg"; });
  expect_error([&] { UpgContainer::open(idx_path); }, {"'gone.upg'", "missing"});
  with([](json&) {});
  EXPECT_EQ(UpgContainer::open(idx_path)->tensors().size(), 3u);
  std::filesystem::remove(d / "model-00002-of-00003.upg");
  expect_error([&] { UpgContainer::open(idx_path); }, {"model-00002-of-00003.upg", "missing"});
}

TEST(UpgFormat, VersionAndNames) {
  EXPECT_EQ(parse_upg_version("2.0"), std::make_pair(2, 0));
  EXPECT_EQ(parse_upg_version("10.12"), std::make_pair(10, 12));
  for (const char* bad : {"", "2", "2.", ".1", "a.b", "2.0.1", "-2.0", "2.0x"}) EXPECT_FALSE(parse_upg_version(bad)) << bad;
  EXPECT_EQ(upg_shard_name("model", 2, 13), "model-00002-of-00013.upg");
  EXPECT_EQ(upg_hash_hex(0x1234), "0000000000001234");
  EXPECT_TRUE(is_upg_hash_hex("0123456789abcdef"));
  EXPECT_FALSE(is_upg_hash_hex("0123456789ABCDEF"));
}

}  // namespace
