// A Hugging Face model directory: config.json plus either one model.safetensors or the shards
// listed in model.safetensors.index.json ("weight_map": tensor name -> shard file). Every shard is
// memory-mapped and parsed on open; tensors are looked up by name and read in place.
//
// A directory without safetensors files may instead hold a legacy PyTorch checkpoint:
// pytorch_model.bin, or shards listed in pytorch_model.bin.index.json (same layout). These are read
// by format/torch_checkpoint.h without executing their pickles, and give the same TensorViews
// (memory-mapped in place), so every reader of HfCheckpoint accepts them. Safetensors files win
// when a directory has both.
#pragma once
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "format/safetensors.h"
#include "format/torch_checkpoint.h"

namespace upg {

class HfCheckpoint {
 public:
  // Throws Error when the directory or config.json is missing, config.json is not JSON, no
  // safetensors file or pytorch_model.bin exists, a shard named in the index is missing, or the
  // index maps a tensor to a shard that does not contain it.
  static std::unique_ptr<HfCheckpoint> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const nlohmann::json& config() const { return config_; }

  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // nullptr when absent.
  const TensorView* find(const std::string& name) const;
  // Throws Error "<dir>: tensor '<name>' not found" when absent.
  const TensorView& tensor(const std::string& name) const;
  // Like tensor(), and also checks the shape; throws Error naming the tensor, the expected and the
  // found shape.
  const TensorView& tensor(const std::string& name, const std::vector<int64_t>& shape) const;
  // All tensor names stored in the files, sorted (aliases not included).
  std::vector<std::string> names() const;
  // Reads another file of the directory ("tokenizer.json") into out; false when it is absent.
  bool read_file(const std::string& name, std::string& out) const;
  // "safetensors" or "pytorch" (pytorch_model.bin, read without executing it).
  const std::string& format() const { return format_; }
  // Makes tensor `source` (or, with index >= 0, rows [row0, row0 + rows) of slice `index` of the 3-D
  // tensor `source`, as a 2-D tensor) also available as `alias`: a view, nothing copied. Throws
  // Error naming both when source is absent, the slice lies outside it or alias exists already.
  void add_alias(const std::string& alias, const std::string& source, int64_t index, int64_t row0, int64_t rows);
  // File names (in the directory) of the weight files and of their index, if any.
  const std::vector<std::string>& weight_files() const { return weight_files_; }

 private:
  std::string dir_;
  nlohmann::json config_;
  std::string format_ = "safetensors";
  std::vector<std::string> weight_files_;
  std::vector<SafetensorsFile> files_;
  std::vector<std::unique_ptr<TorchCheckpointFile>> torch_files_;
  std::unordered_map<std::string, const TensorView*> index_;
  std::deque<TensorView> aliases_;  // views made by add_alias (stable addresses)
  std::unordered_map<std::string, bool> alias_names_;  // names added by add_alias (not in names())
};

}  // namespace upg
