// A UPG model on disk: one .upg file, or a sharded set ("<stem>.upg.index.json" + shards
// "<stem>-0000i-of-0000N.upg", each a complete UPG file). Opens and validates every file (see
// upg_file.h), maps tensor names to the file holding them and gives the model's text files
// (config.json, tokenizer.json, ...) from the index or the single file's metadata.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "format/upg_file.h"

namespace upg {

// The parsed "<stem>.upg.index.json".
struct UpgIndex {
  std::map<std::string, std::string> metadata;    // string values of "metadata" (others skipped)
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file name (no directories)
};
// Parses and validates an index text: JSON object, "metadata" object with format "upg" and a
// supported format_version, "weight_map" object of plain file names (no '/' or "..").
// Throws Error starting with `where`.
UpgIndex parse_upg_index(const std::string& text, const std::string& where);

// True when `path` should be opened as a UPG model: a file ending in ".upg" or ".upg.index.json",
// "<x>.upg" absent but "<x>.upg.index.json" present, or a directory with no *.safetensors that holds
// a *.upg.index.json or *.upg file.
bool is_upg_path(const std::string& path);

class UpgContainer {
 public:
  // `path`: see is_upg_path. A directory must hold one index, or else exactly one .upg file.
  // Throws Error naming the path, the shard and the tensor on any inconsistency (a shard missing
  // or not a UPG file, a tensor of the weight map absent from its shard or a shard tensor absent
  // from the weight map, a tensor in two shards).
  static std::unique_ptr<UpgContainer> open(const std::string& path);

  const std::string& path() const { return path_; }
  bool sharded() const { return sharded_; }
  const std::vector<std::unique_ptr<UpgFile>>& files() const { return files_; }
  // All tensors, shard by shard, in file order.
  const std::vector<const UpgTensor*>& tensors() const { return order_; }
  const UpgTensor* find(const std::string& name) const;
  // Throws Error "<path>: tensor '<name>' not found" when absent.
  const UpgTensor& tensor(const std::string& name) const;
  // Text file from the metadata; nullopt when absent.
  std::optional<std::string> text(const std::string& name) const;
  // Metadata of the index, or of the single file.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Bytes of all files (shards and index).
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  std::string path_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<UpgFile>> files_;
  std::vector<const UpgTensor*> order_;
  std::map<std::string, const UpgTensor*> index_;
  std::map<std::string, std::string> metadata_;
  uint64_t total_bytes_ = 0;
};

}  // namespace upg
