// Goldens from Hugging Face transformers (tools/make_goldens.py): for every tests/golden/<case>/
// holding a model directory and golden.safetensors (prompt.<i> I32 [len], logits.<i> F32
// [len, vocab] or last_logits.<i> F32 [vocab], greedy.<i> I32 [n], gap.<i> F32 [n]), check
//   max over positions of max|ours - hf| / max|hf| < 1e-4, and
//   identical greedy tokens (argmax; prefill, then decode with the KV cache).
// tests/golden/refA/ holds only golden.safetensors; its model is ../shared/data/models/refA-phi3-26m.
// A greedy step whose transformers top-1/top-2 gap is below 1e-4 is a near-tie: a different pick
// there ends the comparison of that prompt (reported, not failed). A fake golden made here from the
// naive reference runs always, so the checking code itself is exercised without the real files.
#include <gtest/gtest-spi.h>

#include <filesystem>

#include "base/error.h"
#include "format/safetensors.h"
#include "runtime/session.h"
#include "logit_compare.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace upg;
namespace fs = std::filesystem;

namespace {

constexpr double kTol = 1e-4;

std::vector<float> f32s(const TensorView& t) {
  EXPECT_EQ(t.dtype, TensorDType::F32) << t.name;
  std::vector<float> v(t.numel());
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}
std::vector<int32_t> i32s(const TensorView& t) {
  EXPECT_EQ(t.dtype, TensorDType::I32) << t.name;
  std::vector<int32_t> v(t.numel());
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

using test::argmax;
// Relative error of one row: max|a - b| / max|b|.
double row_err(const float* ours, const float* hf, int64_t n) { return test::rel_max_error(ours, hf, n); }

// Checks every prompt of `golden` against the model in `model_dir`; returns the prompts checked.
// *worst_err receives the largest relative logit error seen.
int check_golden(const std::string& model_dir, const std::string& golden_path, double* worst_err = nullptr) {
  SCOPED_TRACE(golden_path);
  auto model = Model::load(model_dir);
  const int64_t V = model->config().vocab_size;
  SafetensorsFile g = SafetensorsFile::open(golden_path);
  int checked = 0;
  for (int i = 0; g.find("prompt." + std::to_string(i)); ++i) {
    SCOPED_TRACE("prompt " + std::to_string(i));
    const std::string s = std::to_string(i);
    const std::vector<int32_t> prompt = i32s(g.get("prompt." + s));
    const std::vector<int32_t> greedy = g.find("greedy." + s) ? i32s(g.get("greedy." + s)) : std::vector<int32_t>();
    const std::vector<float> gap = g.find("gap." + s) ? f32s(g.get("gap." + s)) : std::vector<float>();
    const int64_t n = static_cast<int64_t>(prompt.size());
    Session sess(*model, static_cast<int>(n + greedy.size() + 1));
    std::vector<float> logits;
    sess.forward(prompt, logits, true);
    if (const TensorView* t = g.find("logits." + s)) {
      EXPECT_EQ(t->shape, (std::vector<int64_t>{n, V}));
      if (t->shape != std::vector<int64_t>{n, V}) return checked;
      const std::vector<float> hf = f32s(*t);
      double worst = 0;
      int64_t worst_pos = 0;
      for (int64_t p = 0; p < n; ++p) {
        double e = row_err(logits.data() + p * V, hf.data() + p * V, V);
        if (e > worst) worst = e, worst_pos = p;
      }
      EXPECT_LT(worst, kTol) << "logits differ most at position " << worst_pos << " of " << n;
      if (worst_err) *worst_err = std::max(*worst_err, worst);
    }
    if (const TensorView* t = g.find("last_logits." + s)) {
      EXPECT_EQ(t->numel(), V);
      if (t->numel() != V) return checked;
      const std::vector<float> hf = f32s(*t);
      const double e = row_err(logits.data() + (n - 1) * V, hf.data(), V);
      EXPECT_LT(e, kTol) << "last-position logits";
      if (worst_err) *worst_err = std::max(*worst_err, e);
    }
    std::vector<float> step(logits.end() - V, logits.end());
    for (size_t k = 0; k < greedy.size(); ++k) {
      const int32_t tok = argmax(step.data(), V);
      if (tok != greedy[k]) {
        const bool tie = k < gap.size() && gap[k] < 1e-4f;
        if (tie) {
          std::printf("  %s prompt %d: near-tie at greedy step %zu (gap %g): ours %d, transformers %d\n",
                      golden_path.c_str(), i, k, gap[k], tok, greedy[k]);
          break;
        }
        ADD_FAILURE() << "greedy step " << k << ": ours " << tok << ", transformers " << greedy[k]
                      << (k < gap.size() ? " (transformers top-1/top-2 gap " + std::to_string(gap[k]) + ")" : "");
        break;
      }
      if (k + 1 < greedy.size()) sess.forward({&greedy[k], 1}, step, false);
    }
    ++checked;
  }
  return checked;
}

}  // namespace

// The checking code on a golden made here: a tiny Phi-3 model, logits and greedy tokens from the
// naive double-precision reference with full recomputation (as make_goldens.py does with transformers).
TEST(Golden, FakeGoldenExercisesTheChecks) {
  fs::path d = fs::temp_directory_path() / ("upg_golden_" + std::to_string(::getpid()));
  fs::remove_all(d);
  auto cfg = test::tiny_config("Phi3ForCausalLM", "phi3");
  auto w = test::write_tiny_model(d.string(), cfg, TensorDType::BF16, 21);
  const ModelConfig c = parse_model_config(cfg, "fake");
  SafetensorsWriter gw;
  std::mt19937 rng(5);
  for (int i = 0; i < 2; ++i) {
    std::vector<int32_t> ids(5 + 7 * i);
    for (auto& x : ids) x = static_cast<int32_t>(3 + rng() % (c.vocab_size - 3));
    auto ref = test::reference_logits(c, w, ids);
    std::vector<float> lf(ref.begin(), ref.end());
    std::vector<int32_t> seq = ids, greedy;
    std::vector<float> gaps;
    for (int k = 0; k < 6; ++k) {
      auto r = test::reference_logits(c, w, seq);
      const double* last = r.data() + (seq.size() - 1) * c.vocab_size;
      std::vector<double> sorted(last, last + c.vocab_size);
      std::sort(sorted.rbegin(), sorted.rend());
      gaps.push_back(static_cast<float>(sorted[0] - sorted[1]));
      int32_t t = static_cast<int32_t>(std::max_element(last, last + c.vocab_size) - last);
      greedy.push_back(t);
      seq.push_back(t);
    }
    const std::string s = std::to_string(i);
    gw.add_i32("prompt." + s, {static_cast<int64_t>(ids.size())}, ids);
    gw.add_f32("logits." + s, {static_cast<int64_t>(ids.size()), c.vocab_size}, lf);
    gw.add_i32("greedy." + s, {6}, greedy);
    gw.add_f32("gap." + s, {6}, gaps);
  }
  gw.write((d / "golden.safetensors").string());
  EXPECT_EQ(check_golden(d.string(), (d / "golden.safetensors").string()), 2);

  // The checks do fail when the model is wrong: a golden whose greedy tokens are shifted.
  SafetensorsFile g = SafetensorsFile::open((d / "golden.safetensors").string());
  std::vector<int32_t> bad = i32s(g.get("greedy.0"));
  bad[0] = (bad[0] + 1) % static_cast<int32_t>(c.vocab_size);
  SafetensorsWriter bw;
  bw.add_i32("prompt.0", g.get("prompt.0").shape, i32s(g.get("prompt.0")));
  bw.add_i32("greedy.0", {6}, bad);
  bw.write((d / "bad.safetensors").string());
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    check_golden(d.string(), (d / "bad.safetensors").string());
  }
  EXPECT_EQ(failures.size(), 1);
  fs::remove_all(d);
}

TEST(Golden, TransformersGoldens) {
  const fs::path root = fs::path(test::source_dir()) / "tests" / "golden";
  std::vector<fs::path> cases;
  if (fs::is_directory(root))
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory() && fs::exists(e.path() / "golden.safetensors")) cases.push_back(e.path());
  std::sort(cases.begin(), cases.end());
  if (cases.empty()) GTEST_SKIP() << "no goldens under " << root << " yet (tools/make_goldens.py makes them)";
  int total = 0;
  for (const fs::path& c : cases) {
    std::string model_dir = c.string();
    if (c.filename() == "refA") {
      const std::string shared = test::shared_data_dir();
      if (shared.empty()) {
        std::printf("  skipping %s: ../shared/data not found\n", c.string().c_str());
        continue;
      }
      model_dir = shared + "/models/refA-phi3-26m";
    }
    double worst = 0;
    const int n = check_golden(model_dir, (c / "golden.safetensors").string(), &worst);
    std::printf("  %s: %d prompts checked, max relative logit error %.2e\n", c.filename().c_str(), n, worst);
    EXPECT_GT(n, 0) << c;
    total += n;
  }
  EXPECT_GT(total, 0);
}
