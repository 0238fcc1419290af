// `upg convert`: Hugging Face checkpoint -> UPG file, with calibration, GPTQ and bit allocation.
//
//   1. Calibration (when tokens are given): the uncompressed model runs over the tokens and every
//      projection's input statistics H = X^T X are gathered (convert/calibration.h).
//   2. Allocation (bpw > 0): every weight matrix is encoded with every candidate (convert/candidates.h;
//      codebook via GPTQ when H is full) and its damage measured: tr(dW H dW^T) for projections and the
//      lm_head; for the embedding table sum_r (count_r + 1/4) ||dW_r||^2 (how often row r is looked
//      up among the calibration tokens), plus the lm_head term when tied. Then allocate_bits picks
//      one candidate per tensor so that the whole file (every tensor, every array, the header with
//      its texts and this converter's metadata) fits bpw * parameters / 8 bytes. With the sensitivity
//      probe (convert/sensitivity.h) each tensor's damages are first scaled into predicted KL
//      divergence of the whole model's output, so the allocation minimises the sum of those.
//   3. Writing: each tensor is encoded again with its choice and streamed into UpgWriter (temporary
//      file + rename). If the finished file overshoots the budget (the header is estimated during
//      allocation), the allocation is redone with the overshoot removed and the file rewritten.
// Memory: one tensor in fp32 plus its encodings, plus the calibration statistics (cols^2 floats per
// distinct projection input; see convert/hessian.h). The source is only read.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "convert/calibration.h"
#include "convert/candidates.h"

namespace upg {

struct ConvertOptions {
  double bpw = 0;  // > 0: whole-file budget in bits per parameter (allocation); 0: `codec` everywhere
  std::string codec = "codebook:bits=4,group=64";  // used when bpw == 0 for every weight matrix
  std::vector<Candidate> candidates = default_candidates();  // used when bpw > 0
  std::vector<int32_t> calib_tokens;  // empty: no calibration (plain importance-free rounding)
  CalibrationOptions calib;
  bool gptq = true;             // GPTQ for codebook encodings when full statistics exist
  bool act_order = true;        // GPTQ column order by decreasing input energy
  // Windows of calibration text the sensitivity probe runs per weight matrix (convert/sensitivity.h;
  // bpw > 0 only). 0: allocate by the layer-local damage alone.
  int64_t probe_windows = 8;
  std::string vector_storage = "bf16";  // norms and biases: "bf16" or "f32"
  bool compact_texts = true;    // re-serialise JSON texts (tokenizer.json) without whitespace
  nlohmann::json info = nlohmann::json::object();  // extra fields for the "converter" metadata
  // (stage: "calibrate" | "measure" | "write", items done, items total, bytes done, bytes total, item)
  std::function<void(const std::string&, size_t, size_t, uint64_t, uint64_t, const std::string&)> progress;
};

struct ConvertedTensor {
  std::string name, choice;
  int64_t numel = 0;
  uint64_t bytes = 0;      // stored array bytes
  double rel_frobenius = 0;  // ||dW|| / ||W||
  double rel_output = -1;    // tr(dW H dW^T) / tr(W H W^T); -1 without statistics
  double predicted_kl = -1;  // the probe's prediction of this tensor's KL contribution; -1 without
};

struct ConvertReport {
  std::vector<std::string> files;
  uint64_t file_bytes = 0;
  int64_t params = 0;
  double bpw = 0;  // file_bytes * 8 / params
  std::vector<ConvertedTensor> tensors;
};

// Calibration as `upg convert --calib FILE --calib-tokens N --calib-window W` (and upg.convert in
// Python) sets it: `text` tokenized with hf_dir's tokenizer without special tokens and cut to
// max_tokens; windows of `window` tokens, max(1, max_tokens / window) of them at most.
void set_calibration_text(ConvertOptions& o, const std::string& hf_dir, const std::string& text, int64_t max_tokens,
                          int64_t window);

// Throws Error (leaving no output behind) on a missing/invalid directory, an unknown architecture,
// a missing tensor or wrong shape, an unreachable budget, or an unwritable output.
ConvertReport convert_model(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& o);

}  // namespace upg
