// `upg merge`: several Hugging Face checkpoints of one architecture and shape -> one merged Hugging
// Face checkpoint, by the methods mergekit (github.com/arcee-ai/mergekit) made standard. The result
// is an ordinary HF directory that `upg run` loads and `upg convert` compresses.
//
// Recipe (JSON; mergekit's names, flat or under mergekit's "parameters" objects):
//   {"method": "linear" | "slerp" | "task_arithmetic" | "ties",     ("merge_method" also accepted)
//    "base_model": "DIR",        task_arithmetic/ties: required; slerp: the first endpoint (t = 0)
//    "models": [{"model": "DIR", "weight": W, "density": D}, ...],
//    "t": 0.5,                   slerp only: interpolation factor
//    "normalize": true,          linear (default true), task_arithmetic (default false), ties (default true)
//    "lambda": 1.0,              task_arithmetic/ties: scale of the merged task vector
//    "dtype": "bfloat16" | "float16" | "float32",   output dtype (default: the reference model's, per tensor)
//    "tokenizer_source": "DIR"}  tokenizer/generation/chat-template files (default: the reference model)
// The reference model is base_model when given, else the first entry of models; config.json comes
// from it. Relative directories are relative to the current directory (as in mergekit). An entry
// of models equal to base_model is skipped by task_arithmetic/ties/slerp (mergekit lists it there).
//
// Formulas (mergekit's, per tensor, with x_i the models' tensors, b the base, w_i the weights):
//   linear:           sum_i w_i x_i, divided by sum_i w_i when normalize
//   slerp:            v0 = base (or first), v1 = the other; on the flattened tensors with
//                     directions u = v / |v| (v left as is when |v| <= 1e-8): d = u0 . u1; if |d| >
//                     0.9995, (1-t) v0 + t v1; else with a = acos(d): sin((1-t) a)/sin(a) v0 + sin(t a)/sin(a) v1
//   task_arithmetic:  b + lambda * sum_i w_i (x_i - b) [/ sum_i w_i when normalize; a sum below 1e-8 counts as 1]
//   ties:             delta_i = x_i - b trimmed to its int(density_i * numel) largest magnitudes
//                     (per tensor; among equal magnitudes the lower flat index is kept); e_i = w_i delta_i;
//                     sign s = +1 where sum_i e_i >= 0, else -1; keep e_i whose sign equals s
//                     (zeros never do); merged = sum kept e_i [/ sum of the kept entries' w_i, 0 -> 1, when
//                     normalize]; b + lambda * merged
// Differences from mergekit: inputs are read as fp32 (whatever their dtype) and each element's
// combination is accumulated in double, then rounded once to the output dtype (mergekit computes in
// its load dtype). Integer/bool tensors are not merged: they must be byte-identical in every model
// and are copied.
//
// Refused with an Error naming both models and the first difference: different config.json
// "architectures" or "model_type", a tensor missing from one model, a tensor of another shape.
// Memory: the models are memory-mapped; one tensor is processed at a time in chunks (ties also
// holds one model's |delta| of the current tensor to find its trimming threshold).
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace upg {

enum class MergeMethod { Linear, Slerp, TaskArithmetic, Ties };

const char* merge_method_name(MergeMethod m);

struct MergeModel {
  std::string model;            // Hugging Face directory
  std::optional<double> weight;  // linear/task_arithmetic/ties (required there, except for the base)
  double density = 1.0;         // ties: fraction of each task vector kept, in (0, 1]
};

struct MergeRecipe {
  MergeMethod method = MergeMethod::Linear;
  std::string base_model;  // "" when none
  std::vector<MergeModel> models;
  double t = 0.5;           // slerp
  bool normalize = true;    // resolved default for the method
  double lambda = 1.0;      // task_arithmetic, ties
  std::optional<TensorDType> dtype;  // F32, F16 or BF16; nullopt: the reference model's
  std::string tokenizer_source;      // "" = the reference model

  // Parses and validates a recipe. Throws Error naming `origin` and the field: not JSON, unknown
  // method or key, missing base_model (task_arithmetic/ties), a weight missing where required,
  // slerp without exactly two endpoints, density outside (0, 1] or given to another method than ties,
  // normalize with weights summing to 0 (linear), a non-finite number, an unknown dtype.
  static MergeRecipe parse(const std::string& json_text, const std::string& origin = "recipe");
  // Reads and parses a recipe file.
  static MergeRecipe load(const std::string& path);
  // The recipe with every default resolved (recorded as merge_recipe.json).
  nlohmann::ordered_json to_json() const;
  // base_model if given, else models[0].model.
  const std::string& reference_model() const;
};

struct MergeOutputOptions {
  bool force = false;                       // replace an existing out_dir
  uint64_t shard_bytes = 5'000'000'000ull;  // split model.safetensors above this (0 = never)
};

struct MergeReport {
  std::string out_dir;
  size_t tensors = 0;
  uint64_t bytes = 0;  // tensor data written
  int files = 0;       // safetensors files
  std::vector<std::string> warnings;
};

// (tensors done, tensors total, bytes done, bytes total, tensor name), called after each tensor.
using MergeProgress = std::function<void(size_t, size_t, uint64_t, uint64_t, const std::string&)>;

// Checks the models (architecture, tensor names and shapes) before writing anything, then writes
// out_dir: model.safetensors (or shards + model.safetensors.index.json), config.json of the
// reference model (torch_dtype/dtype set to the output dtype when the recipe gives one), the
// tokenizer, generation and chat-template files of the tokenizer source, and merge_recipe.json.
// Everything goes into "<out_dir>.tmp-XXXXXX" first, renamed into place at the end; on any error
// nothing is left behind. out_dir must not exist (an empty directory is accepted) unless
// out.force, and is never one of the input directories.
MergeReport merge_checkpoints(const MergeRecipe& recipe, const std::string& out_dir,
                              const MergeProgress& progress = {}, const MergeOutputOptions& out = {});

}  // namespace upg
