// Rotary-embedding frequencies for every rope type transformers supports on the covered
// architectures, computed the way transformers' modeling_rope_utils does (fp32 where it uses fp32):
// default, linear, dynamic (NTK), yarn, longrope (Phi-3 short/long factors), llama3.
#pragma once
#include <cstdint>
#include <vector>

#include "models/model_config.h"

namespace upg {

struct RopeFrequencies {
  std::vector<float> inv_freq;     // rotary_dim / 2 values
  float attention_scaling = 1.0f;  // multiplies cos and sin (yarn, longrope)
};

// `seq_len` is the length the frequencies are computed for: for longrope the largest position + 1
// of the current forward call (long factors when > original_max_position_embeddings, like
// transformers' longrope_frequency_update); for dynamic the cached length (see DynamicRopeState).
// Other types ignore it.
RopeFrequencies rope_frequencies(const ModelConfig& c, int64_t seq_len);

// Whether rope_frequencies() depends on seq_len.
bool rope_depends_on_length(const RopeConfig& r);

// transformers' dynamic_frequency_update: the frequencies grow with the longest sequence seen and
// reset to the original when a sequence shorter than max_position_embeddings comes after a longer one.
struct DynamicRopeState {
  int64_t cached_len = 0;  // 0: not started (treated as max_position_embeddings)
  // Returns the length to compute frequencies for, given this call's largest position + 1.
  int64_t update(const ModelConfig& c, int64_t seq_len);
};

}  // namespace upg
