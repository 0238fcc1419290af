// Where a model's weights come from. The decoder asks a WeightSource for each tensor by its
// Hugging Face name ("model.layers.3.self_attn.qkv_proj.weight") and gets a WeightMatrix (any
// codec) or a small fp32 vector. A Hugging Face directory is one implementation (dense bf16/f16/f32
// read in place); a compressed container supplies compressed WeightMatrix objects the same way.
// Returned matrices read memory owned by the source: the source must outlive them.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "codecs/weight_matrix.h"
#include "models/arch_tensors.h"

namespace upg {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // Directory or file the weights come from (for messages).
  virtual std::string path() const = 0;
  // The model's config.json.
  virtual const nlohmann::json& config() const = 0;
  virtual bool has(const std::string& name) const = 0;
  // The rows x cols matrix `name`. Throws Error naming the tensor when it is missing, has another
  // shape (expected and found) or an unsupported dtype.
  virtual std::unique_ptr<WeightMatrix> matrix(const std::string& name, int64_t rows, int64_t cols) const = 0;
  // The length-n vector `name` as fp32 (norm weights, biases); same errors as matrix().
  virtual std::vector<float> vector(const std::string& name, int64_t n) const = 0;
  // Text of an auxiliary file by its name in a Hugging Face directory ("tokenizer.json",
  // "tokenizer_config.json", "generation_config.json", "chat_template.jinja"); nullopt when absent.
  virtual std::optional<std::string> file_text(const std::string& name) const = 0;
  // Called by Model::load with every tensor it will ask for, before asking: a source may map the
  // table's names onto its own layout (a Hugging Face directory in the fused-experts layout).
  virtual void prepare(const std::vector<ModelTensor>& tensors) {}
};

// Opens `path`: a Hugging Face model directory (config.json + safetensors), or a UPG model (a .upg
// file, a .upg.index.json, or a directory holding one; see format/upg_container.h). Throws Error
// naming the path when it is neither.
std::unique_ptr<WeightSource> open_weight_source(const std::string& path);

}  // namespace upg
