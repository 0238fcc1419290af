// Aggregate metrics of classification-style evaluations, computed as lm-evaluation-harness
// reports them (lm_eval/api/metrics.py):
//  * accuracy = mean of 0/1 outcomes, standard error sqrt(p (1 - p) / (n - 1)) (the sample
//    standard deviation over sqrt(n), lm-eval's mean_stderr);
//  * F1 of the positive class (label 1), as sklearn.metrics.f1_score(golds, preds);
//  * Matthews correlation coefficient, as sklearn.metrics.matthews_corrcoef (binary).
// Macro averages give each group equal weight; micro averages pool the items.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace upg {

struct Accuracy {
  int64_t n = 0;        // items
  int64_t correct = 0;
  double value = 0;     // correct / n (0 when n = 0)
  double stderr_ = 0;   // sqrt(p(1-p)/(n-1)); 0 when n < 2
};

Accuracy accuracy(int64_t correct, int64_t n);

// Macro average of group accuracies (each group equal weight); its standard error is
// sqrt(sum se_i^2) / k. Groups with n = 0 are skipped.
Accuracy macro_average(std::span<const Accuracy> groups);

// Binary F1 for the positive label 1 (0 when there are no true positives).
double f1_binary(std::span<const int> golds, std::span<const int> preds);

// Matthews correlation for binary labels 0/1 (0 when a marginal is empty, as sklearn).
double matthews_corrcoef(std::span<const int> golds, std::span<const int> preds);

}  // namespace upg
