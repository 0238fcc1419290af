#include "eval/metrics.h"

#include <cmath>

#include "base/error.h"

namespace upg {

Accuracy accuracy(int64_t correct, int64_t n) {
  UPG_CHECK(n >= 0 && correct >= 0 && correct <= n, "accuracy: ", correct, " correct out of ", n);
  Accuracy a;
  a.n = n;
  a.correct = correct;
  if (n == 0) return a;
  a.value = static_cast<double>(correct) / static_cast<double>(n);
  if (n > 1) a.stderr_ = std::sqrt(a.value * (1 - a.value) / static_cast<double>(n - 1));
  return a;
}

Accuracy macro_average(std::span<const Accuracy> groups) {
  Accuracy m;
  double sum = 0, var = 0;
  int k = 0;
  for (const auto& g : groups) {
    if (g.n == 0) continue;
    sum += g.value;
    var += g.stderr_ * g.stderr_;
    m.n += g.n;
    m.correct += g.correct;
    ++k;
  }
  if (k == 0) return m;
  m.value = sum / k;
  m.stderr_ = std::sqrt(var) / k;
  return m;
}

namespace {
void check_same_size(std::span<const int> golds, std::span<const int> preds, const char* what) {
  UPG_CHECK(golds.size() == preds.size(), what, ": ", golds.size(), " gold labels but ", preds.size(), " predictions");
}
}  // namespace

double f1_binary(std::span<const int> golds, std::span<const int> preds) {
  check_same_size(golds, preds, "f1");
  int64_t tp = 0, fp = 0, fn = 0;
  for (size_t i = 0; i < golds.size(); ++i) {
    tp += golds[i] == 1 && preds[i] == 1;
    fp += golds[i] != 1 && preds[i] == 1;
    fn += golds[i] == 1 && preds[i] != 1;
  }
  if (tp == 0) return 0.0;
  return 2.0 * tp / static_cast<double>(2 * tp + fp + fn);
}

double matthews_corrcoef(std::span<const int> golds, std::span<const int> preds) {
  check_same_size(golds, preds, "mcc");
  double tp = 0, tn = 0, fp = 0, fn = 0;
  for (size_t i = 0; i < golds.size(); ++i) {
    const bool g = golds[i] == 1, p = preds[i] == 1;
    tp += g && p;
    tn += !g && !p;
    fp += !g && p;
    fn += g && !p;
  }
  const double den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn);
  if (den == 0) return 0.0;
  return (tp * tn - fp * fn) / std::sqrt(den);
}

}  // namespace upg
