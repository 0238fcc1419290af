// The CUDA backend's table of codecs (the per-backend half of the codec table; codecs/codec_registry
// is the other): one row per codec whose stored arrays the CUDA kernels multiply by directly. A
// matrix of any other codec (mdcsr), or with dense+sparse outliers, is decoded to bf16 once at upload:
// right, but 16 bits per weight on the device, and its layout says so.
#pragma once
#include <string>

#include "codecs/weight_matrix.h"
#include "kernels/cuda/cuda_ops.h"

namespace upg {

struct CudaCodecRow {
  const char* codec;  // as in codecs/codec_registry.cpp
  cuda::DeviceMatrix (*upload)(const WeightMatrix& w);
};
const std::vector<CudaCodecRow>& cuda_codec_table();

// w uploaded (its own codec's kernels when the table has a row for it, else decoded to bf16); *how
// gets a description for reports ("codebook3-tiles", "bf16-tiles (decoded from mdcsr at upload)").
cuda::DeviceMatrix cuda_upload(const WeightMatrix& w, std::string* how);

}  // namespace upg
