#include "format/hf_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "base/error.h"
#include "base/mapped_file.h"

namespace upg {

namespace fs = std::filesystem;
using nlohmann::json;

std::unique_ptr<HfCheckpoint> HfCheckpoint::open(const std::string& dir) {
  std::error_code ec;
  UPG_CHECK(fs::exists(dir, ec), "model directory '", dir, "' does not exist");
  UPG_CHECK(fs::is_directory(dir, ec), "'", dir, "' is not a directory (expected a Hugging Face model directory)");
  auto ck = std::unique_ptr<HfCheckpoint>(new HfCheckpoint());
  ck->dir_ = dir;
  const fs::path d(dir);
  const std::string cfg_path = (d / "config.json").string();
  UPG_CHECK(file_exists(cfg_path), "model directory '", dir, "' has no config.json");
  try {
    ck->config_ = json::parse(read_text_file(cfg_path));
  } catch (const json::exception& e) {
    throw Error(str_cat(cfg_path, ": malformed JSON: ", e.what()));
  }
  UPG_CHECK(ck->config_.is_object(), cfg_path, ": expected a JSON object");

  const std::string index_path = (d / "model.safetensors.index.json").string();
  const std::string single_path = (d / "model.safetensors").string();
  if (file_exists(index_path)) {
    json index;
    try {
      index = json::parse(read_text_file(index_path));
    } catch (const json::exception& e) {
      throw Error(str_cat(index_path, ": malformed JSON: ", e.what()));
    }
    UPG_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
              index_path, ": missing object 'weight_map'");
    std::set<std::string> shards;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      UPG_CHECK(it.value().is_string(), index_path, ": weight_map entry '", it.key(), "' is not a file name");
      shards.insert(it.value().get<std::string>());
    }
    UPG_CHECK(!shards.empty(), index_path, ": weight_map is empty");
    std::unordered_map<std::string, size_t> shard_no;
    for (const std::string& s : shards) {
      UPG_CHECK(s.find('/') == std::string::npos && s != ".." && s != ".", index_path,
                ": shard name '", s, "' must be a plain file name");
      const std::string p = (d / s).string();
      UPG_CHECK(file_exists(p), index_path, " names shard '", s, "', which is missing from '", dir, "'");
      shard_no[s] = ck->files_.size();
      ck->files_.push_back(SafetensorsFile::open(p));
    }
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      const SafetensorsFile& f = ck->files_[shard_no[it.value().get<std::string>()]];
      const TensorView* t = f.find(it.key());
      UPG_CHECK(t, index_path, " maps tensor '", it.key(), "' to '", f.path(), "', which does not contain it");
      ck->index_[it.key()] = t;
    }
  } else if (file_exists(single_path)) {
    ck->files_.push_back(SafetensorsFile::open(single_path));
  } else {
    // Fall back to any *.safetensors files (some exports use other names), excluding ours.
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(d, ec))
      if (e.path().extension() == ".safetensors" && e.path().filename() != "golden.safetensors")
        found.push_back(e.path().string());
    UPG_CHECK(!found.empty(), "model directory '", dir,
              "' has no model.safetensors, no model.safetensors.index.json and no other *.safetensors file");
    std::sort(found.begin(), found.end());
    for (const auto& p : found) ck->files_.push_back(SafetensorsFile::open(p));
  }
  if (ck->index_.empty()) {
    for (const auto& f : ck->files_)
      for (const auto& t : f.tensors()) {
        UPG_CHECK(!ck->index_.count(t.name), dir, ": tensor '", t.name, "' appears in more than one file");
        ck->index_[t.name] = &t;
      }
  }
  return ck;
}

const TensorView* HfCheckpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& HfCheckpoint::tensor(const std::string& name) const {
  const TensorView* t = find(name);
  UPG_CHECK(t, dir_, ": tensor '", name, "' not found in the checkpoint");
  return *t;
}

const TensorView& HfCheckpoint::tensor(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorView& t = tensor(name);
  UPG_CHECK(t.shape == shape, dir_, ": tensor '", name, "' has shape ", t.shape_str(), ", expected ",
            shape_to_string(shape));
  return t;
}

std::vector<std::string> HfCheckpoint::names() const {
  std::vector<std::string> v;
  for (const auto& [k, t] : index_) v.push_back(k);
  std::sort(v.begin(), v.end());
  return v;
}

bool HfCheckpoint::read_file(const std::string& name, std::string& out) const {
  const std::string p = (fs::path(dir_) / name).string();
  if (!file_exists(p)) return false;
  out = read_text_file(p);
  return true;
}

}  // namespace upg
