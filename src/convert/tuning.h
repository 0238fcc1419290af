// Folding fine-tuned continuous parameters into a UPG file (`upg apply-tuning`; the training itself
// is python/upg/finetune.py, docs/CONVERT.md "Fine-tuning").
//
// The tuned parameters come as a safetensors file of F32 tensors, each named after a tensor of the
// model:
//   "<tensor>.row_scale"  [rows]   multiplies row r of the weight matrix <tensor> by value r: the
//                                  codec's per-row scales are multiplied (Codec::scale_rows), the
//                                  codes are untouched, so the file keeps its size and bits per weight;
//                                  a dense (bf16/f16/f32) matrix has its values multiplied.
//   "<tensor>"            shape    new values of a dense tensor (a norm's weight, a bias), rounded
//                                  to the dtype it is stored in.
// Its metadata key "upg.tuning" (JSON, optional) is recorded in the output's converter metadata
// under "tuning". Every other tensor is copied unchanged, with the text files and metadata.
//
// Errors (upg::Error naming the file and tensor): a name that matches no tensor of the model or a
// row_scale for a 1-D tensor, a shape or dtype other than above, a value that is not finite, a
// scaled scale that does not fit its stored type. The output is written beside its path and
// renamed into place (UpgWriter): a failed run leaves no file.
#pragma once
#include <cstddef>
#include <string>

namespace upg {

struct TuningReport {
  size_t tensors = 0;          // in the model
  size_t rows_scaled = 0;      // tensors whose rows were multiplied
  size_t replaced = 0;         // dense tensors given new values
  std::string out;             // the file written
};

TuningReport apply_tuning(const std::string& model, const std::string& tuned, const std::string& out);

}  // namespace upg
