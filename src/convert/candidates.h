// Encodings `upg convert` chooses among, and the --codec SPEC syntax:
//   NAME[:key=value,key=value...]   e.g. "codebook:bits=3,group=64,levels=fitted", "int8", "bf16"
// Values are parsed as JSON when they are valid JSON (numbers, true/false), else as strings.
#pragma once
#include <string>
#include <vector>

#include "codecs/codec.h"

namespace upg {

struct Candidate {
  std::string label;  // "codebook:bits=3,group=64" (the spec it came from)
  std::string codec;  // "codebook", "int8", ... or "bf16" (dense, rounded)
  CodecParams params = CodecParams::object();
  bool dense() const { return codec == "bf16" || codec == "f16" || codec == "f32"; }
};

// Throws Error naming the spec when the codec is unknown or a key=value pair is malformed.
Candidate parse_codec_spec(const std::string& spec);

// The candidates of bit allocation for a weight matrix: codebook with k = 2..6 bits at several
// group sizes, int8 (group 128) and bf16.
std::vector<Candidate> default_candidates();
// default_candidates() plus the trellis codec (codecs/trellis) at 2, 3, 4 bits, groups 64 and 128,
// rotated. Not the default yet: trellis matrices have no int8-activation CPU path and no CUDA
// kernel (the GPU decodes them to bf16 at upload), so they trade speed for quality.
std::vector<Candidate> trellis_candidates();
// "default" or "trellis"; throws Error listing them otherwise.
std::vector<Candidate> named_candidates(const std::string& name);

}  // namespace upg
