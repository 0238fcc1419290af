// The tensors a model of a given config and architecture holds, with their roles, derived from the
// ArchSpec exactly as Model::load reads them (runtime/model.cpp). Used by `upg convert` (which
// tensors to calibrate, quantize, keep) and `upg synth` (which tensors to generate).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/model_config.h"
#include "models/registry.h"

namespace upg {

enum class TensorRole {
  Linear,     // a projection inside a decoder layer: rows = out_features x cols = in_features
  Embedding,  // model.embed_tokens.weight (vocab x hidden), a lookup table (and the lm_head when tied)
  LmHead,     // lm_head.weight (vocab x hidden), untied
  Vector,     // norm weights and biases: kept dense
};

struct PlannedTensor {
  std::string name;
  std::vector<int64_t> shape;  // [rows, cols] or [n]
  TensorRole role;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// Every tensor Model::load reads for this config, in load order.
std::vector<PlannedTensor> plan_model_tensors(const ModelConfig& c, const ArchSpec& a);

}  // namespace upg
