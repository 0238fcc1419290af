// upg convert / upg synth (src/convert/):
//  * GPTQ onto the codebook grid beats the codec's own importance-weighted rounding (same grid) in
//    output error tr(dW H dW^T) on a random matrix with a correlated (non-diagonal) H;
//  * the bit allocator meets its budget and gives more bits where damage is larger;
//  * a tiny golden model converted at a few bpw loads through Model::load(.upg), stays at or under
//    its budget (whole file), and its logits stay close to the original's;
//  * bad input (missing dir, unknown architecture, --bpw out of range, unwritable output) -> Error
//    and no output file;
//  * synth writes a loadable random model of the requested shape.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "base/error.h"
#include "codecs/codec_registry.h"
#include "codecs/compose.h"
#include "convert/allocate.h"
#include "convert/calibration.h"
#include "convert/converter.h"
#include "convert/gptq.h"
#include "convert/sensitivity.h"
#include "convert/synth.h"
#include "runtime/session.h"
#include "test_util.h"

using namespace upg;
namespace fs = std::filesystem;

namespace {

std::string golden(const std::string& name) { return (fs::path(test::source_dir()) / "tests" / "golden" / name).string(); }

fs::path temp_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("upg_test_convert_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = d(rng);
  return t;
}

std::vector<float> all_logits(const Model& m, const std::vector<int32_t>& toks) {
  Session s(m, static_cast<int>(toks.size()));
  std::vector<float> out;
  s.forward(toks, out, true);
  return out;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// n x cols inputs x = z A + noise (z: `rank` standard normals; A fixed, drawn first from rng):
// dominated by a rank-`rank` subspace, strongly correlated like real activations. Every
// `heavy_every`-th column's noise is 4x larger (0: none), for uneven column energies.
std::vector<float> correlated_inputs(int64_t n, int64_t cols, int64_t rank, int64_t heavy_every, std::mt19937& rng) {
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<float> A(rank * cols), X(n * cols), z(rank);
  for (auto& a : A) a = N(rng);
  for (int64_t t = 0; t < n; ++t) {
    for (auto& v : z) v = N(rng);
    for (int64_t j = 0; j < cols; ++j) {
      float s = 0.3f * N(rng) * (heavy_every > 0 && j % heavy_every == 0 ? 4.f : 1.f);
      for (int64_t i = 0; i < rank; ++i) s += z[i] * A[i * cols + j];
      X[t * cols + j] = s;
    }
  }
  return X;
}

}  // namespace

TEST(Gptq, BeatsRoundingOnCorrelatedInputs) {
  const int64_t rows = 64, cols = 128, n = 4096;
  std::mt19937 rng(1);
  std::normal_distribution<float> N(0.f, 1.f);
  const std::vector<float> X = correlated_inputs(n, cols, /*rank=*/16, /*heavy_every=*/0, rng);
  std::vector<float> W(rows * cols);
  for (auto& w : W) w = 0.02f * N(rng);
  InputStats h(cols, true);
  h.add(X.data(), n);
  EXPECT_EQ(h.tokens(), n);
  for (int bits : {2, 3, 4}) {
    const CodecParams p = {{"bits", bits}, {"group", 32}};
    const EncodedTensor rtn = make_codec("codebook")->encode(W.data(), rows, cols, p, h.diag().data());
    const std::vector<float> Qr = decode_encoded(rtn, rows, cols);
    std::vector<float> Qg_direct;
    const EncodedTensor g = gptq_codebook(W.data(), rows, cols, h, p, {}, &Qg_direct);
    const std::vector<float> Qg = decode_encoded(g, rows, cols);
    EXPECT_EQ(Qg, Qg_direct) << "GPTQ's result must be exactly the codec's arrays";
    EXPECT_EQ(g.total_bytes(), rtn.total_bytes());
    const double e_rtn = output_error(W.data(), Qr.data(), rows, cols, h);
    const double e_gptq = output_error(W.data(), Qg.data(), rows, cols, h);
    EXPECT_LT(e_gptq, 0.85 * e_rtn) << bits << " bits: GPTQ " << e_gptq << " vs rounding " << e_rtn;
  }
}

// LDLQ with the trellis codec: the codec's own arrays, far below the codec's importance-weighted
// search, with and without rotation; a factor made with act-order is refused. (On these rank-16
// inputs GPTQ onto the scalar codebook, whose feedback reaches every next column, is as good or
// better: 0.35-0.9x LDLQ's output error in blocks of 64 columns, 0.8-1.2x in blocks of 1; printed,
// not asserted. Real layers are measured by KL divergence in docs/CODECS.md.)
TEST(Ldlq, TrellisBeatsItsOwnSearchAndScalarGptq) {
  const int64_t rows = 48, cols = 256, n = 4096;
  std::mt19937 rng(7);
  std::normal_distribution<float> N(0.f, 1.f);
  const std::vector<float> X = correlated_inputs(n, cols, /*rank=*/16, /*heavy_every=*/5, rng);
  std::vector<float> W(rows * cols);
  for (auto& w : W) w = 0.02f * N(rng);
  InputStats h(cols, true);
  h.add(X.data(), n);
  for (bool rotate : {false, true})
    for (int bits : {2, 3}) {
      CodecParams p = {{"bits", bits}, {"group", 64}};
      if (rotate) p["rotate"] = true;
      const EncodedTensor own = make_codec("trellis")->encode(W.data(), rows, cols, p, h.diag().data());
      std::vector<float> Ql;
      const EncodedTensor l = ldlq_trellis(W.data(), rows, cols, h, p, {}, &Ql);
      EXPECT_EQ(decode_encoded(l, rows, cols), Ql) << "LDLQ's result must be exactly the codec's arrays";
      EXPECT_EQ(l.total_bytes(), own.total_bytes());
      CodecParams pc = {{"bits", bits}, {"group", 64}, {"levels", "gaussian"}};
      if (rotate) pc["rotate"] = true;
      std::vector<float> Qg;
      gptq_codebook(W.data(), rows, cols, h, pc, {}, &Qg);
      const double e_own = output_error(W.data(), decode_encoded(own, rows, cols).data(), rows, cols, h);
      const double e_ldlq = output_error(W.data(), Ql.data(), rows, cols, h);
      const double e_gptq = output_error(W.data(), Qg.data(), rows, cols, h);
      EXPECT_LT(e_ldlq, 0.5 * e_own) << bits << " bits, rotate " << rotate << ": LDLQ " << e_ldlq << " vs search " << e_own;
      std::printf("trellis %d bits, rotate %d: output error LDLQ %.4g, own search %.4g, codebook GPTQ %.4g\n", bits,
                  int(rotate), e_ldlq, e_own, e_gptq);
    }
  GptqOptions act;
  act.act_order = true;
  const GptqFactor f = make_gptq_factor(h, RotateOpt{}, act);
  bool natural = true;
  for (int64_t j = 0; j < cols; ++j) natural = natural && f.perm[j] == j;
  if (!natural) {
    EXPECT_THROW(ldlq_trellis(W.data(), rows, cols, h, {{"bits", 3}}, {}, nullptr, &f), Error);
  }
}

// Rotation and act-order variants: each is exactly the codec's arrays, each beats the codec's own
// rounding with the same options, and R^T H R equals the statistics of rotated inputs.
TEST(Gptq, RotationAndActOrderVariants) {
  const int64_t rows = 48, cols = 128, n = 2048, rank = 12;
  std::mt19937 rng(7);
  std::normal_distribution<float> N(0.f, 1.f);
  const std::vector<float> X = correlated_inputs(n, cols, rank, /*heavy_every=*/7, rng);
  std::vector<float> W(rows * cols);
  for (auto& w : W) w = 0.02f * N(rng);
  InputStats h(cols, true);
  h.add(X.data(), n);

  const RotateOpt rot{true, 5, 128};
  const std::vector<float> Hr = rotated_statistics(h, rot);
  std::vector<float> Xr = X;
  const std::vector<float> signs = rotation_signs(rot.seed, cols);
  for (int64_t t = 0; t < n; ++t) rotate_row(Xr.data() + t * cols, cols, signs.data(), rot.block);
  InputStats hr(cols, true);
  hr.add(Xr.data(), n);
  double max_rel = 0, scale = 0;
  for (size_t i = 0; i < Hr.size(); ++i) scale = std::max(scale, std::fabs(double(hr.matrix()[i])));
  for (size_t i = 0; i < Hr.size(); ++i) max_rel = std::max(max_rel, std::fabs(double(Hr[i]) - hr.matrix()[i]) / scale);
  EXPECT_LT(max_rel, 1e-4);

  for (bool rotate : {false, true})
    for (bool act : {false, true}) {
      CodecParams p = {{"bits", 3}, {"group", 32}, {"levels", "gaussian"}};
      if (rotate) p["rotate"] = {{"seed", 5}, {"block", 128}};
      const EncodedTensor rtn = make_codec("codebook")->encode(W.data(), rows, cols, p, h.diag().data());
      const double e_rtn = output_error(W.data(), decode_encoded(rtn, rows, cols).data(), rows, cols, h);
      GptqOptions o;
      o.act_order = act;
      std::vector<float> Qd;
      const EncodedTensor g = gptq_codebook(W.data(), rows, cols, h, p, o, &Qd);
      EXPECT_EQ(decode_encoded(g, rows, cols), Qd);
      EXPECT_EQ(g.params.contains("rotate"), rotate);
      const double e = output_error(W.data(), Qd.data(), rows, cols, h);
      EXPECT_LT(e, 0.85 * e_rtn) << "rotate " << rotate << " act-order " << act << ": " << e << " vs " << e_rtn;
      // Re-solving the scales for the chosen codes never makes the output error worse.
      GptqOptions no_refit = o;
      no_refit.refit_scales = false;
      std::vector<float> Qn;
      gptq_codebook(W.data(), rows, cols, h, p, no_refit, &Qn);
      EXPECT_LE(e, 1.001 * output_error(W.data(), Qn.data(), rows, cols, h)) << "rotate " << rotate << " act " << act;
      // A factor made once and shared gives the same result.
      const GptqFactor f = make_gptq_factor(h, read_rotate(p, "codebook", cols, true), o);
      std::vector<float> Qf;
      gptq_codebook(W.data(), rows, cols, h, p, o, &Qf, &f);
      EXPECT_EQ(Qf, Qd);
    }
}

TEST(Gptq, InverseFactorIsCholeskyOfInverse) {
  const int64_t c = 24;
  std::mt19937 rng(3);
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<float> X(200 * c);
  for (auto& v : X) v = N(rng);
  InputStats h(c, true);
  h.add(X.data(), 200);
  const std::vector<float> U = gptq_inverse_factor(h, 0.01);
  // (U^T U) (H + damp I) = I
  double mean = 0;
  for (int64_t i = 0; i < c; ++i) mean += h.diag()[i] / c;
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < c; ++j) {
      double s = 0;
      for (int64_t k = 0; k < c; ++k) {
        double p = 0;
        for (int64_t m = 0; m <= std::min(i, k); ++m) p += double(U[m * c + i]) * U[m * c + k];
        s += p * (h.at(k, j) + (k == j ? 0.01 * mean : 0.0));
      }
      EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 1e-3) << i << "," << j;
    }
}

TEST(Allocate, MeetsBudgetAndFavoursDamagedTensors) {
  // Two tensors of equal size; tensor 1's damage is 10x tensor 0's at every bit width.
  std::vector<std::vector<AllocOption>> items(2);
  for (int bits = 2; bits <= 8; ++bits) {
    const double d = std::pow(4.0, -bits);
    items[0].push_back({1000.0 * bits, d});
    items[1].push_back({1000.0 * bits, 10 * d});
  }
  for (double budget : {4000.0, 7000.0, 9000.0, 12000.0}) {
    const auto pick = allocate_bits(items, budget);
    const double used = items[0][pick[0]].bytes + items[1][pick[1]].bytes;
    EXPECT_LE(used, budget);
    EXPECT_GE(pick[1], pick[0]) << "the more damaged tensor gets at least as many bits";
    EXPECT_GT(used, budget - 2000) << "budget left unused";
  }
  EXPECT_THROW(allocate_bits(items, 3000), Error);
}

TEST(Calibration, ObservesEveryProjection) {
  auto m = Model::load(golden("phi4_gqa_bf16"));
  CalibrationOptions co;
  co.window = 32;
  co.max_windows = 3;
  const CalibrationStats st = collect_calibration(*m, random_tokens(100, m->config().vocab_size, 5), co);
  EXPECT_EQ(st.tokens, 96);
  const int64_t L = m->config().num_hidden_layers;
  // per layer: qkv, o, gate_up, down; plus the lm_head
  EXPECT_EQ(st.inputs.size(), static_cast<size_t>(4 * L + 1));
  for (const auto& [name, h] : st.inputs) {
    EXPECT_EQ(h->tokens(), 96) << name;
    EXPECT_TRUE(h->full());
    double tr = 0;
    for (float d : h->diag()) tr += d;
    EXPECT_GT(tr, 0) << name;
  }
}

// A mixture of experts: the observer reports each routed expert's own rows under its names (the
// rows of all experts together are the tokens times experts_per_token), the shared expert and the
// dense layer see every token; converted under a budget, the model stays close to the original.
TEST(Calibration, ObservesEveryExpertWithItsOwnRows) {
  auto m = Model::load(golden("qwen2_moe_shared_bf16"));
  const ModelConfig& c = m->config();
  CalibrationOptions co;
  co.window = 32;
  co.max_windows = 4;
  const CalibrationStats st = collect_calibration(*m, random_tokens(128, c.vocab_size, 5), co);
  ASSERT_EQ(st.tokens, 128);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.";
    if (!c.moe.layers[static_cast<size_t>(l)]) {
      ASSERT_TRUE(st.inputs.count(p + "gate_proj.weight")) << l;
      EXPECT_EQ(st.inputs.at(p + "down_proj.weight")->tokens(), 128);
      continue;
    }
    EXPECT_EQ(st.inputs.at(p + "shared_expert.gate_proj.weight")->tokens(), 128);
    EXPECT_EQ(st.inputs.at(p + "shared_expert.down_proj.weight")->tokens(), 128);
    int64_t routed = 0;
    for (int64_t e = 0; e < c.moe.num_experts; ++e) {
      const std::string n = p + "experts." + std::to_string(e) + ".";
      auto it = st.inputs.find(n + "up_proj.weight");
      if (it == st.inputs.end()) continue;
      EXPECT_EQ(st.inputs.at(n + "down_proj.weight")->tokens(), it->second->tokens());
      routed += it->second->tokens();
    }
    EXPECT_EQ(routed, 128 * c.moe.experts_per_token) << "layer " << l;
  }
}

TEST(Convert, MixtureOfExpertsUnderABudget) {
  const std::string src = golden("qwen2_moe_shared_bf16");
  const fs::path dir = temp_dir("moe");
  auto orig = Model::load(src);
  const std::vector<int32_t> probe = random_tokens(32, orig->config().vocab_size, 11);
  ConvertOptions o;
  o.bpw = 5.0;
  o.candidates = {parse_codec_spec("codebook:bits=3,group=64"), parse_codec_spec("codebook:bits=4,group=64"),
                  parse_codec_spec("int8:group=128"), parse_codec_spec("bf16")};
  o.calib_tokens = random_tokens(64 * 8, orig->config().vocab_size, 2);
  o.calib.window = 64;
  o.calib.max_windows = 8;
  const std::string out = (dir / "moe.upg").string();
  const ConvertReport r = convert_model(src, out, o);
  EXPECT_LE(r.bpw, 5.0 + 1e-9);
  auto m = Model::load(out);
  EXPECT_EQ(m->layers()[0].experts.size(), 4u);
  EXPECT_TRUE(m->layers()[0].router && m->layers()[0].router->codec() == "bf16") << "the router stays dense";
  const double err = rel_l2(all_logits(*m, probe), all_logits(*orig, probe));
  std::printf("MoE at bpw %.2f: logits rel. error %.4f\n", r.bpw, err);
  EXPECT_LT(err, 0.3);
  fs::remove_all(dir);
}

TEST(Convert, TinyModelAtSeveralBudgets) {
  const std::string src = golden("phi4_gqa_bf16");
  const fs::path dir = temp_dir("tiny");
  auto orig = Model::load(src);
  const std::vector<int32_t> probe = random_tokens(48, orig->config().vocab_size, 11);
  const std::vector<float> ref = all_logits(*orig, probe);
  double prev_err = 1e9;
  for (double bpw : {4.0, 9.0}) {
    ConvertOptions o;
    o.bpw = bpw;
    o.candidates = {parse_codec_spec("codebook:bits=3,group=64"), parse_codec_spec("codebook:bits=4,group=64"),
                    parse_codec_spec("int8:group=128"), parse_codec_spec("bf16")};
    o.calib_tokens = random_tokens(64 * 16, orig->config().vocab_size, 2);
    o.calib.window = 64;
    o.calib.max_windows = 16;
    const std::string out = (dir / ("tiny-" + std::to_string(int(bpw * 10)) + ".upg")).string();
    const ConvertReport r = convert_model(src, out, o);
    EXPECT_LE(r.bpw, bpw + 1e-9);
    EXPECT_GT(r.bpw, bpw - 1.0) << "the budget should be mostly used";
    EXPECT_EQ(r.file_bytes, fs::file_size(out));
    auto m = Model::load(out);
    const double err = rel_l2(all_logits(*m, probe), ref);
    std::printf("bpw %.2f (file %.4f): logits rel. error %.4f\n", bpw, r.bpw, err);
    // Loose: on this random-weight model the damage proxy (output error of each projection, not
    // scaled by downstream sensitivity) allocates imperfectly; see the report in src/convert/converter.h.
    EXPECT_LT(err, bpw < 5 ? 0.6 : 0.25) << "bpw " << bpw;
    EXPECT_LT(err, prev_err * 1.05) << "more bits should not hurt";
    prev_err = err;
  }
  fs::remove_all(dir);
}

// `--candidates trellis`: the codebook menu plus trellis at 2, 3, 4 and 5 bits, one scale per 512
// columns, rotated; under a budget between those widths the file meets it and uses trellis.
TEST(Convert, TrellisCandidatesUnderABudget) {
  const std::vector<Candidate> menu = named_candidates("trellis");
  std::vector<int> trellis_bits;
  for (const Candidate& c : menu)
    if (c.codec == "trellis") {
      trellis_bits.push_back(c.params.at("bits").get<int>());
      EXPECT_EQ(c.params.at("group").get<int>(), 512) << c.label;
      EXPECT_TRUE(c.params.at("rotate").get<bool>()) << c.label;
    }
  EXPECT_EQ(trellis_bits, (std::vector<int>{2, 3, 4, 5}));
  EXPECT_EQ(menu.size(), default_candidates().size() + 4);
  EXPECT_THROW(named_candidates("lattice"), Error);

  const std::string src = golden("phi4_gqa_bf16");
  const fs::path dir = temp_dir("tiny-trellis");
  auto orig = Model::load(src);
  ConvertOptions o;
  o.bpw = 6.0;  // the golden's embedding and head are most of it: 6 bits leaves room for 3-4-bit matrices
  o.candidates = {parse_codec_spec("codebook:bits=4,group=64"), parse_codec_spec("trellis:bits=3,group=512,rotate=true"),
                  parse_codec_spec("trellis:bits=4,group=512,rotate=true"), parse_codec_spec("bf16")};
  o.calib_tokens = random_tokens(64 * 16, orig->config().vocab_size, 2);
  o.calib.window = 64;
  o.calib.max_windows = 16;
  o.probe_windows = 2;
  const std::string out = (dir / "tiny-trellis.upg").string();
  const ConvertReport r = convert_model(src, out, o);
  EXPECT_LE(r.bpw, 6.0 + 1e-9);
  int trellis = 0;
  for (const ConvertedTensor& t : r.tensors) trellis += t.choice.rfind("trellis", 0) == 0;
  EXPECT_GT(trellis, 0) << "no matrix took a trellis encoding";
  const std::vector<int32_t> probe = random_tokens(48, orig->config().vocab_size, 11);
  auto m = Model::load(out);
  EXPECT_LT(rel_l2(all_logits(*m, probe), all_logits(*orig, probe)), 0.6);
  fs::remove_all(dir);
}

TEST(Convert, FixedCodecWithoutCalibration) {
  const std::string src = golden("phi4_gqa_bf16");
  const fs::path dir = temp_dir("fixed");
  ConvertOptions o;
  o.codec = "int8:group=128";
  const ConvertReport r = convert_model(src, (dir / "m.upg").string(), o);
  auto m = Model::load((dir / "m.upg").string());
  auto orig = Model::load(src);
  const auto probe = random_tokens(16, orig->config().vocab_size, 4);
  EXPECT_LT(rel_l2(all_logits(*m, probe), all_logits(*orig, probe)), 0.05);
  EXPECT_EQ(m->layers()[0].mlp.down->codec(), "int8");
  fs::remove_all(dir);
}

TEST(Convert, BadInputLeavesNothingBehind) {
  const fs::path dir = temp_dir("bad");
  const std::string out = (dir / "out.upg").string();
  auto no_output = [&] {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().rfind("out.upg", 0) == 0) return false;
    return true;
  };
  auto expect_error = [&](const std::string& in, const ConvertOptions& o, const std::string& needle,
                          const std::string& target) {
    try {
      convert_model(in, target, o);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_TRUE(no_output());
  };
  ConvertOptions o;
  expect_error((dir / "missing").string(), o, "does not exist", out);
  // Unknown architecture: a copy of the tiny model with another architecture name.
  const fs::path bad = dir / "badarch";
  fs::create_directories(bad);
  fs::copy_file(fs::path(golden("phi4_gqa_bf16")) / "model.safetensors", bad / "model.safetensors");
  {
    std::ifstream in(fs::path(golden("phi4_gqa_bf16")) / "config.json");
    nlohmann::json j = nlohmann::json::parse(in);
    j["architectures"] = {"NotARealForCausalLM"};
    std::ofstream(bad / "config.json") << j.dump();
  }
  expect_error(bad.string(), o, "NotARealForCausalLM", out);
  ConvertOptions ob;
  ob.bpw = 0.5;
  expect_error(golden("phi4_gqa_bf16"), ob, "out of range", out);
  ob.bpw = 40;
  expect_error(golden("phi4_gqa_bf16"), ob, "out of range", out);
  ob.bpw = 3;  // no calibration tokens
  expect_error(golden("phi4_gqa_bf16"), ob, "calibration", out);
  ob.calib_tokens = random_tokens(512, 512, 1);
  ob.calib.window = 64;
  ob.candidates = {parse_codec_spec("codebook:bits=2,group=64")};
  ob.bpw = 1.2;  // below what the smallest encodings reach
  expect_error(golden("phi4_gqa_bf16"), ob, "is below the smallest file the candidate encodings allow", out);
  expect_error(golden("phi4_gqa_bf16"), o, "does not exist", (dir / "no" / "such" / "dir.upg").string());
  fs::remove_all(dir);
}

TEST(Synth, WritesALoadableRandomModel) {
  const fs::path dir = temp_dir("synth");
  std::ifstream in(fs::path(golden("mistral_gqa_bf16")) / "config.json");
  const nlohmann::json cfg = nlohmann::json::parse(in);
  for (double bpw : {3.2, 16.0}) {
    SynthOptions o;
    o.bpw = bpw;
    o.seed = 9;
    const std::string out = (dir / "s.upg").string();
    const SynthReport r = synth_model(cfg, "config.json", out, o);
    EXPECT_EQ(r.bits, bpw < 12 ? 3 : 0);
    auto m = Model::load(out);
    EXPECT_EQ(m->config().vocab_size, cfg["vocab_size"].get<int64_t>());
    if (r.bits) {
      EXPECT_EQ(m->layers()[0].mlp.down->codec(), "codebook");
    }
    const auto lg = all_logits(*m, random_tokens(8, m->config().vocab_size, 1));
    for (float v : lg) ASSERT_TRUE(std::isfinite(v));
    ASSERT_TRUE(m->file_text("tokenizer.json").has_value());
  }
  {  // trellis: every matrix a valid trellis tensor (the loader checks the arrays; decoding every row
     // of one checks the streams), logits finite
    SynthOptions o;
    o.bpw = 3.2;
    o.codec = "trellis";
    const std::string out = (dir / "t.upg").string();
    const SynthReport r = synth_model(cfg, "config.json", out, o);
    EXPECT_EQ(r.bits, 3);
    EXPECT_EQ(r.codec, "trellis");
    auto m = Model::load(out);
    const WeightMatrix& down = *m->layers()[0].mlp.down;
    EXPECT_EQ(down.codec(), "trellis");
    std::vector<float> rows(static_cast<size_t>(down.rows() * down.cols()));
    down.decode_rows(0, down.rows(), rows.data());
    double ss = 0;
    for (float v : rows) ss += static_cast<double>(v) * v;
    const double rms = std::sqrt(ss / static_cast<double>(rows.size()));
    EXPECT_GT(rms, 0.01);
    EXPECT_LT(rms, 0.03);
    const auto lg = all_logits(*m, random_tokens(8, m->config().vocab_size, 1));
    for (float v : lg) ASSERT_TRUE(std::isfinite(v));
  }
  {  // rotated codebook (--rotate): the same codes as without, stored as W R, so decoding (which undoes
     // R) and rotating again gives the unrotated file's weights; logits finite
    SynthOptions o;
    o.bpw = 3.2;
    o.seed = 9;
    o.rotate = true;
    const std::string out = (dir / "r.upg").string(), plain = (dir / "p.upg").string();
    synth_model(cfg, "config.json", out, o);
    o.rotate = false;
    synth_model(cfg, "config.json", plain, o);
    auto m = Model::load(out), p = Model::load(plain);
    const WeightMatrix& down = *m->layers()[0].mlp.down;
    ASSERT_TRUE(down.stored() && down.stored()->params.contains("rotate"));
    const RotateOpt rot = read_rotate(down.stored()->params, down.codec(), down.cols(), false);
    ASSERT_TRUE(rot.on);
    const std::vector<float> signs = rotation_signs(rot.seed, down.cols(), rot.first);
    std::vector<float> a(static_cast<size_t>(down.rows() * down.cols())), b(a.size());
    down.decode_rows(0, down.rows(), a.data());
    p->layers()[0].mlp.down->decode_rows(0, down.rows(), b.data());
    for (int64_t r = 0; r < down.rows(); ++r) rotate_row(a.data() + r * down.cols(), down.cols(), signs.data(), rot.block);
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5f) << i;
    const auto lg = all_logits(*m, random_tokens(8, m->config().vocab_size, 1));
    for (float v : lg) ASSERT_TRUE(std::isfinite(v));
  }
  SynthOptions too_few;
  too_few.bpw = 0.5;
  EXPECT_THROW(synth_model(cfg, "config.json", (dir / "x.upg").string(), too_few), Error);
  EXPECT_FALSE(fs::exists(dir / "x.upg"));
  SynthOptions too_many;  // the trellis codec stops at 5 bits
  too_many.bpw = 6.5;
  too_many.codec = "trellis";
  EXPECT_THROW(synth_model(cfg, "config.json", (dir / "x.upg").string(), too_many), Error);
  SynthOptions unknown;
  unknown.codec = "nope";
  EXPECT_THROW(synth_model(cfg, "config.json", (dir / "x.upg").string(), unknown), Error);
  EXPECT_FALSE(fs::exists(dir / "x.upg"));
  fs::remove_all(dir);
}

// The sensitivity probe: zero for the original weights, positive and roughly quadratic in a
// perturbation, and clear errors for a name that is not a matrix or a wrong shape.
TEST(Sensitivity, ProbeIsZeroForOriginalAndQuadraticInNoise) {
  const std::string src = golden("phi4_gqa_bf16");
  auto m = Model::load(src);
  const int64_t vocab = m->config().vocab_size;
  const SensitivityProbe probe(src, random_tokens(96, vocab, 11), 32, 2);
  EXPECT_EQ(probe.tokens(), 64);
  const std::string name = "model.layers.0.mlp.down_proj.weight";
  const int64_t rows = m->config().hidden_size, cols = m->config().intermediate_size;
  std::vector<float> W(rows * cols);
  m->layers()[0].mlp.down->decode_rows(0, rows, W.data());
  EXPECT_LT(probe.kld_with(name, W.data(), rows, cols), 1e-6);  // fp32 rounding of another kernel path
  std::mt19937 rng(3);
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<float> noise(W.size());
  double rms = 0;
  for (float w : W) rms += double(w) * w / W.size();
  for (auto& e : noise) e = 0.05f * std::sqrt(float(rms)) * N(rng);
  std::vector<float> W1 = W, W2 = W;
  for (size_t i = 0; i < W.size(); ++i) {
    W1[i] += noise[i];
    W2[i] += 2 * noise[i];
  }
  const double k1 = probe.kld_with(name, W1.data(), rows, cols), k2 = probe.kld_with(name, W2.data(), rows, cols);
  EXPECT_GT(k1, 1e-4);
  EXPECT_GT(k2 / k1, 3.0) << k1 << " " << k2;  // ~4 for a quadratic response
  EXPECT_LT(k2 / k1, 5.0) << k1 << " " << k2;
  EXPECT_THROW(probe.kld_with("model.layers.0.mlp.nothing.weight", W.data(), rows, cols), Error);
  EXPECT_THROW(probe.kld_with(name, W.data(), cols, rows), Error);
  // KL of identical distributions is 0; of known ones matches the closed form.
  const float logp[2] = {std::log(0.25f), std::log(0.75f)}, logits[2] = {0.f, 0.f};
  EXPECT_NEAR(mean_kl_from_logits(logp, logits, 1, 2), 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-6);
}
