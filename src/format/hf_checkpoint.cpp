#include "format/hf_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <functional>
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
    ck->config_ = json::parse(read_text_file(cfg_path, kMaxConfigFileBytes));
  } catch (const json::exception& e) {
    throw Error(str_cat(cfg_path, ": malformed JSON: ", e.what()));
  }
  UPG_CHECK(ck->config_.is_object(), cfg_path, ": expected a JSON object");

  // An index ({"weight_map": {tensor: shard file}}) naming shards that `open_shard` opens; it
  // returns a lookup of the shard's tensors by name.
  using Lookup = std::function<const TensorView*(const std::string&)>;
  auto load_index = [&](const std::string& index_name, const std::function<Lookup(const std::string&)>& open_shard) {
    const std::string index_path = (d / index_name).string();
    json index;
    try {
      index = json::parse(read_text_file(index_path, kMaxConfigFileBytes));
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
    std::unordered_map<std::string, Lookup> shard_lookup;
    ck->weight_files_.push_back(index_name);
    for (const std::string& s : shards) {
      UPG_CHECK(s.find('/') == std::string::npos && s != ".." && s != "." && !s.empty(), index_path,
                ": shard name '", s, "' must be a plain file name");
      const std::string p = (d / s).string();
      UPG_CHECK(file_exists(p), index_path, " names shard '", s, "', which is missing from '", dir, "'");
      shard_lookup[s] = open_shard(p);
      ck->weight_files_.push_back(s);
    }
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      const std::string& shard = it.value().get<std::string>();
      const TensorView* t = shard_lookup[shard](it.key());
      UPG_CHECK(t, index_path, " maps tensor '", it.key(), "' to '", (d / shard).string(),
                "', which does not contain it");
      ck->index_[it.key()] = t;
    }
  };
  auto open_safetensors = [&](const std::string& p) -> Lookup {
    ck->files_.push_back(SafetensorsFile::open(p));
    const SafetensorsFile* f = &ck->files_.back();
    return [f](const std::string& n) { return f->find(n); };
  };
  auto open_torch = [&](const std::string& p) -> Lookup {
    ck->torch_files_.push_back(TorchCheckpointFile::open(p));
    const TorchCheckpointFile* f = ck->torch_files_.back().get();
    return [f](const std::string& n) { return f->find(n); };
  };

  // files_ must not reallocate while lookups into it exist: reserve for every file there is.
  size_t n_files = 0;
  for (const auto& e : fs::directory_iterator(d, ec)) n_files += e.is_regular_file(ec);
  ck->files_.reserve(n_files + 1);
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(d, ec))
    if (e.path().extension() == ".safetensors" && e.path().filename() != "golden.safetensors")
      found.push_back(e.path().filename().string());
  std::sort(found.begin(), found.end());
  if (file_exists((d / "model.safetensors.index.json").string())) {
    load_index("model.safetensors.index.json", open_safetensors);
  } else if (file_exists((d / "model.safetensors").string())) {
    ck->files_.push_back(SafetensorsFile::open((d / "model.safetensors").string()));
    ck->weight_files_.push_back("model.safetensors");
  } else if (!found.empty()) {
    // Any *.safetensors files (some exports use other names), excluding ours.
    for (const auto& f : found) {
      ck->files_.push_back(SafetensorsFile::open((d / f).string()));
      ck->weight_files_.push_back(f);
    }
  } else if (file_exists((d / "pytorch_model.bin.index.json").string())) {
    ck->format_ = "pytorch";
    load_index("pytorch_model.bin.index.json", open_torch);
  } else if (file_exists((d / "pytorch_model.bin").string())) {
    ck->format_ = "pytorch";
    ck->torch_files_.push_back(TorchCheckpointFile::open((d / "pytorch_model.bin").string()));
    ck->weight_files_.push_back("pytorch_model.bin");
  } else {
    throw Error(str_cat("model directory '", dir,
                        "' has no model.safetensors, no model.safetensors.index.json, no other *.safetensors "
                        "file and no pytorch_model.bin or pytorch_model.bin.index.json"));
  }
  if (ck->index_.empty()) {
    auto add = [&](const std::vector<TensorView>& ts) {
      for (const auto& t : ts) {
        UPG_CHECK(!ck->index_.count(t.name), dir, ": tensor '", t.name, "' appears in more than one file");
        ck->index_[t.name] = &t;
      }
    };
    for (const auto& f : ck->files_) add(f.tensors());
    for (const auto& f : ck->torch_files_) add(f->tensors());
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

void HfCheckpoint::add_alias(const std::string& alias, const std::string& source, int64_t index, int64_t row0,
                             int64_t rows) {
  UPG_CHECK(!has(alias), dir_, ": cannot name a view of '", source, "' '", alias, "': that tensor exists");
  const TensorView& s = tensor(source);
  alias_names_[alias] = true;
  if (index < 0) {
    index_[alias] = &s;
    return;
  }
  UPG_CHECK(s.shape.size() == 3 && index < s.shape[0] && row0 >= 0 && rows >= 1 && row0 + rows <= s.shape[1], dir_,
            ": tensor '", s.name, "' ", s.shape_str(), " has no slice ", index, " rows [", row0, ", ", row0 + rows,
            ") for '", alias, "'");
  const size_t es = tensor_dtype_size(s.dtype);
  const size_t row_bytes = static_cast<size_t>(s.shape[2]) * es;
  TensorView v;
  v.name = alias;
  v.dtype = s.dtype;
  v.shape = {rows, s.shape[2]};
  v.data = s.data + (static_cast<size_t>(index) * static_cast<size_t>(s.shape[1]) + static_cast<size_t>(row0)) * row_bytes;
  v.nbytes = static_cast<size_t>(rows) * row_bytes;
  aliases_.push_back(std::move(v));
  index_[alias] = &aliases_.back();
}

std::vector<std::string> HfCheckpoint::names() const {
  std::vector<std::string> v;
  for (const auto& [k, t] : index_)
    if (!alias_names_.count(k)) v.push_back(k);
  std::sort(v.begin(), v.end());
  return v;
}

bool HfCheckpoint::read_file(const std::string& name, std::string& out) const {
  const std::string p = (fs::path(dir_) / name).string();
  if (!file_exists(p)) return false;
  out = read_text_file(p, kMaxTokenizerFileBytes);  // tokenizer.json is the largest such file
  return true;
}

}  // namespace upg
