// Calibration: runs the (uncompressed) model over calibration tokens and gathers, for every
// linear projection, the statistics of its input (convert/hessian.h), plus how often each token
// id occurred (the weighting of embedding rows). Inputs shared by several projections (q, k, v;
// gate, up) are gathered once and shared.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "convert/hessian.h"
#include "runtime/session.h"

namespace upg {

struct CalibrationStats {
  // Weight name -> statistics of its input (the lm_head as "lm_head.weight", or under
  // "model.embed_tokens.weight" when tied).
  std::map<std::string, std::shared_ptr<InputStats>> inputs;
  std::vector<double> token_counts;  // vocab entries: occurrences among the calibration tokens
  int64_t tokens = 0, windows = 0;
  const InputStats* find(const std::string& name) const {
    auto it = inputs.find(name);
    return it == inputs.end() ? nullptr : it->second.get();
  }
};

struct CalibrationOptions {
  int64_t window = 256;       // tokens per window (each window is a fresh sequence)
  int64_t max_windows = 64;   // windows taken from the start of the tokens
  int64_t max_full_cols = kMaxFullHessianCols;
  std::function<void(int64_t done, int64_t total)> progress;
};

// Throws Error when fewer than one window of tokens is given or an id is out of range.
CalibrationStats collect_calibration(const Model& model, const std::vector<int32_t>& tokens,
                                     const CalibrationOptions& options = {});

}  // namespace upg
