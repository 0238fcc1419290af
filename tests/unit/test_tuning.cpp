// Folding fine-tuned parameters into a UPG file: Codec::scale_rows for every codec with per-row
// scales (the scaled tensor decodes to the multipliers times the original rows; codes untouched) and
// apply_tuning (`upg apply-tuning`): row multipliers and new norm values land in a copy of the file,
// everything else is copied unchanged, and bad tuned files are refused without writing anything.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "base/error.h"
#include "base/half.h"
#include "codec_test_util.h"
#include "codecs/codec_registry.h"
#include "convert/tuning.h"
#include "format/upg_container.h"
#include "format/upg_stream_writer.h"
#include "format/upg_writer.h"
#include "upg_test_util.h"

using namespace upg;
using namespace upg::test;

namespace {

std::vector<float> random_multipliers(int64_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  std::vector<float> m(rows);
  for (float& v : m) v = u(rng);
  return m;
}

bool scale_array(const std::string& role) { return role == "scales" || role == "sparse.scales"; }

}  // namespace

TEST(CodecScaleRows, DecodesToTheMultipliersTimesTheRowsEveryCodec) {
  const int64_t rows = 37, cols = 256;
  for (const CodecCase& c : stored_codec_cases()) {
    SCOPED_TRACE(std::string(c.codec) + " " + c.params.dump());
    auto codec = make_codec(c.codec);
    const std::vector<float> W = heavy_tailed_matrix(rows, cols, 5);
    const EncodedTensor enc = codec->encode(W.data(), rows, cols, c.params);
    const std::vector<float> mult = random_multipliers(rows, 11);
    const EncodedTensor scaled = codec->scale_rows(enc.views(), rows, cols, enc.params, mult.data());
    EXPECT_EQ(scaled.codec, enc.codec);
    EXPECT_EQ(scaled.params, enc.params);
    // Codes, tables and indices byte for byte; only the row scales change.
    ASSERT_EQ(scaled.arrays.size(), enc.arrays.size());
    bool any_scale = false;
    for (const auto& [role, a] : enc.arrays) {
      const Array& b = scaled.arrays.at(role);
      EXPECT_EQ(a.dtype, b.dtype) << role;
      EXPECT_EQ(a.shape, b.shape) << role;
      if (scale_array(role)) any_scale = true;
      else EXPECT_EQ(a.bytes, b.bytes) << role << " changed";
    }
    EXPECT_TRUE(any_scale);
    const std::vector<float> before = decode_all(*codec->open(enc.views(), rows, cols, enc.params));
    const std::vector<float> after = decode_all(*codec->open(scaled.views(), rows, cols, scaled.params));
    for (int64_t r = 0; r < rows; ++r) {
      float row_max = 0;
      for (int64_t j = 0; j < cols; ++j) row_max = std::max(row_max, std::fabs(before[r * cols + j] * mult[r]));
      for (int64_t j = 0; j < cols; ++j) {
        const float want = before[r * cols + j] * mult[r];
        // f16 scales round to 11 significant bits (relative 2^-11 of each weight); a rotated codec
        // spreads that over the row.
        ASSERT_NEAR(after[r * cols + j], want, 2e-3f * row_max + 1e-7f) << "row " << r << " column " << j;
      }
    }
  }
}

TEST(CodecScaleRows, RefusesBadMultipliersAndOverflow) {
  const int64_t rows = 8, cols = 64;
  auto codec = make_codec("codebook");
  const std::vector<float> W = gaussian_matrix(rows, cols, 3, 1.0f);
  const EncodedTensor enc = codec->encode(W.data(), rows, cols, {{"bits", 3}, {"group", 64}});
  std::vector<float> m(rows, 1.0f);
  m[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(
      {
        try {
          codec->scale_rows(enc.views(), rows, cols, enc.params, m.data());
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("row multiplier 5 is not finite"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  m[5] = 1e9f;  // |scale| x 1e9 does not fit f16
  EXPECT_THROW(
      {
        try {
          codec->scale_rows(enc.views(), rows, cols, enc.params, m.data());
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("does not fit f16"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
}

namespace {

// A small UPG file: a codebook matrix, a trellis matrix, a bf16 matrix and a bf16 norm.
struct SmallModel {
  std::vector<float> down, up, emb, norm;
  EncodedTensor down_enc, up_enc;
};

SmallModel write_small_model(const std::string& path) {
  SmallModel m;
  m.down = gaussian_matrix(16, 128, 1);
  m.up = gaussian_matrix(24, 64, 2);
  m.emb = gaussian_matrix(10, 64, 3);
  m.norm = gaussian_matrix(1, 64, 4, 1.0f);
  m.down_enc = make_codec("codebook")->encode(m.down.data(), 16, 128, {{"bits", 3}, {"group", 64}, {"rotate", true}});
  m.up_enc = make_codec("trellis")->encode(m.up.data(), 24, 64, {{"bits", 2}, {"group", 32}, {"passes", 1}});
  UpgWriter w(path);
  w.set_text("config.json", "{\"model_type\": \"llama\"}");
  w.set_converter({{"version", "test"}});
  w.add("model.layers.0.mlp.down_proj.weight", {{16, 128}, TensorDType::BF16, 0.1}, m.down_enc);
  w.add("model.layers.0.mlp.up_proj.weight", {{24, 64}, TensorDType::BF16, 0.2}, m.up_enc);
  w.add_f32("model.embed_tokens.weight", {{10, 64}, TensorDType::BF16, std::nullopt}, m.emb.data(), TensorDType::BF16);
  w.add_f32("model.norm.weight", {{64}, TensorDType::BF16, std::nullopt}, m.norm.data(), TensorDType::BF16);
  w.finish();
  return m;
}

void write_tuned(const std::string& path, const std::vector<std::pair<std::string, std::vector<float>>>& tensors,
                 const std::vector<std::vector<int64_t>>& shapes, const std::map<std::string, std::string>& meta = {}) {
  SafetensorsStreamWriter w(path, 8);
  for (size_t i = 0; i < tensors.size(); ++i)
    w.add_array(tensors[i].first, TensorDType::F32, shapes[i], tensors[i].second.data(), tensors[i].second.size() * 4);
  w.finish(meta);
}

std::vector<float> decode(const UpgContainer& c, const std::string& name) { return decode_all(*c.tensor(name).open_matrix()); }

}  // namespace

TEST(ApplyTuning, ScalesRowsReplacesNormsCopiesTheRest) {
  ScratchDir dir("tuning");
  const SmallModel m = write_small_model(dir / "m.upg");
  const std::vector<float> down_mult = random_multipliers(16, 7), emb_mult = random_multipliers(10, 8);
  std::vector<float> new_norm(64);
  for (int i = 0; i < 64; ++i) new_norm[i] = 0.5f + 0.01f * i;
  write_tuned(dir / "t.safetensors",
              {{"model.layers.0.mlp.down_proj.weight.row_scale", down_mult},
               {"model.embed_tokens.weight.row_scale", emb_mult},
               {"model.norm.weight", new_norm}},
              {{16}, {10}, {64}}, {{"upg.tuning", "{\"steps\": 3}"}});
  const TuningReport r = apply_tuning(dir / "m.upg", dir / "t.safetensors", dir / "out.upg");
  EXPECT_EQ(r.tensors, 4u);
  EXPECT_EQ(r.rows_scaled, 2u);
  EXPECT_EQ(r.replaced, 1u);
  EXPECT_EQ(r.out, dir / "out.upg");
  auto a = UpgContainer::open(dir / "m.upg");
  auto b = UpgContainer::open(dir / "out.upg");
  ASSERT_EQ(b->tensors().size(), 4u);
  EXPECT_EQ(b->text("config.json"), a->text("config.json"));
  const auto conv = nlohmann::json::parse(b->metadata().at("converter"));
  EXPECT_EQ(conv.at("version"), "test");
  EXPECT_EQ(conv.at("tuning").at("steps"), 3);
  EXPECT_EQ(conv.at("tuning").at("row_scaled"), 2);
  // Same codecs and sizes: the file keeps its bits per weight.
  for (const UpgTensor* t : a->tensors()) {
    const UpgTensor& u = b->tensor(t->name);
    EXPECT_EQ(u.codec, t->codec) << t->name;
    EXPECT_EQ(u.stored_bytes(), t->stored_bytes()) << t->name;
  }
  // The untouched trellis matrix: identical arrays and checksum; its conversion error kept.
  EXPECT_EQ(b->tensor("model.layers.0.mlp.up_proj.weight").xxh64, a->tensor("model.layers.0.mlp.up_proj.weight").xxh64);
  EXPECT_EQ(b->tensor("model.layers.0.mlp.up_proj.weight").err, a->tensor("model.layers.0.mlp.up_proj.weight").err);
  EXPECT_FALSE(b->tensor("model.layers.0.mlp.down_proj.weight").err.has_value());
  const std::vector<float> d0 = decode(*a, "model.layers.0.mlp.down_proj.weight"),
                           d1 = decode(*b, "model.layers.0.mlp.down_proj.weight");
  for (int64_t r = 0; r < 16; ++r)
    for (int64_t j = 0; j < 128; ++j) ASSERT_NEAR(d1[r * 128 + j], d0[r * 128 + j] * down_mult[r], 2e-3f * 0.1f);
  const std::vector<float> e0 = decode(*a, "model.embed_tokens.weight"), e1 = decode(*b, "model.embed_tokens.weight");
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t j = 0; j < 64; ++j)
      ASSERT_NEAR(e1[r * 64 + j], e0[r * 64 + j] * emb_mult[r], std::fabs(e0[r * 64 + j] * emb_mult[r]) / 128 + 1e-9f);
  const std::vector<float> n1 = decode(*b, "model.norm.weight");
  for (int i = 0; i < 64; ++i) ASSERT_EQ(n1[i], bf16_to_f32(f32_to_bf16(new_norm[i])));
}

TEST(ApplyTuning, RefusesBadTunedFilesAndWritesNothing) {
  ScratchDir dir("tuning_bad");
  write_small_model(dir / "m.upg");
  auto expect_refused = [&](const std::vector<std::pair<std::string, std::vector<float>>>& t,
                            const std::vector<std::vector<int64_t>>& shapes, const std::string& needle) {
    SCOPED_TRACE(needle);
    write_tuned(dir / "t.safetensors", t, shapes);
    try {
      apply_tuning(dir / "m.upg", dir / "t.safetensors", dir / "out.upg");
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(dir.files(), (std::vector<std::string>{"m.upg", "t.safetensors"}));
  };
  expect_refused({{"model.layers.9.mlp.down_proj.weight.row_scale", std::vector<float>(16, 1.f)}}, {{16}},
                 "names no tensor");
  expect_refused({{"model.layers.0.mlp.down_proj.weight.row_scale", std::vector<float>(15, 1.f)}}, {{15}},
                 "expected [16]");
  expect_refused({{"model.norm.weight.row_scale", std::vector<float>(1, 1.f)}}, {{1}}, "only in a 2-D matrix");
  expect_refused({{"model.layers.0.mlp.down_proj.weight", std::vector<float>(16 * 128, 1.f)}}, {{16, 128}},
                 "only dense tensors");
  expect_refused({{"model.norm.weight", std::vector<float>(32, 1.f)}}, {{32}}, "the model's is [64]");
  std::vector<float> bad(16, 1.f);
  bad[3] = std::numeric_limits<float>::infinity();
  expect_refused({{"model.layers.0.mlp.down_proj.weight.row_scale", bad}}, {{16}}, "value 3 is not finite");
  // Not F32.
  {
    SafetensorsStreamWriter w(dir / "t.safetensors", 8);
    std::vector<uint16_t> h(64, 0x3f80);
    w.add_array("model.norm.weight", TensorDType::BF16, {64}, h.data(), h.size() * 2);
    w.finish({});
    EXPECT_THROW(apply_tuning(dir / "m.upg", dir / "t.safetensors", dir / "out.upg"), Error);
    EXPECT_EQ(dir.files(), (std::vector<std::string>{"m.upg", "t.safetensors"}));
  }
  // A truncated tuned file.
  std::vector<uint8_t> bytes = read_bytes(dir / "t.safetensors");
  bytes.resize(bytes.size() / 2);
  write_bytes(dir / "t.safetensors", bytes);
  EXPECT_THROW(apply_tuning(dir / "m.upg", dir / "t.safetensors", dir / "out.upg"), Error);
  EXPECT_EQ(dir.files(), (std::vector<std::string>{"m.upg", "t.safetensors"}));
}
