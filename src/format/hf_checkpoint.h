// A Hugging Face model directory: config.json plus either one model.safetensors or the shards
// listed in model.safetensors.index.json ("weight_map": tensor name -> shard file). Every shard is
// memory-mapped and parsed on open; tensors are looked up by name and read in place.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "format/safetensors.h"

namespace upg {

class HfCheckpoint {
 public:
  // Throws Error when the directory or config.json is missing, config.json is not JSON, no
  // safetensors file exists, a shard named in the index is missing, or the index maps a tensor to
  // a shard that does not contain it.
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
  // All tensor names, sorted.
  std::vector<std::string> names() const;
  // Reads another file of the directory ("tokenizer.json") into out; false when it is absent.
  bool read_file(const std::string& name, std::string& out) const;

 private:
  std::string dir_;
  nlohmann::json config_;
  std::vector<SafetensorsFile> files_;
  std::unordered_map<std::string, const TensorView*> index_;
};

}  // namespace upg
