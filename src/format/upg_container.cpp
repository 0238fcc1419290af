#include "format/upg_container.h"

#include <filesystem>
#include <set>

#include "base/error.h"
#include "base/mapped_file.h"
#include "format/upg_format.h"

namespace upg {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Files of `dir` whose names end with `suffix`, sorted.
std::vector<std::string> files_ending(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (ends_with(n, suffix) && e.is_regular_file(ec)) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

UpgIndex parse_upg_index(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(str_cat(where, ": not valid JSON: ", e.what()));
  }
  UPG_CHECK(j.is_object(), where, ": the index must be a JSON object, found ", j.type_name());
  UPG_CHECK(j.contains("metadata") && j["metadata"].is_object(), where, ": missing object field 'metadata'");
  UPG_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), where, ": missing object field 'weight_map'");
  UpgIndex idx;
  for (auto it = j["metadata"].begin(); it != j["metadata"].end(); ++it)
    if (it.value().is_string()) idx.metadata[it.key()] = it.value().get<std::string>();
  check_upg_format(idx.metadata, where);
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    UPG_CHECK(it.value().is_string(), where, ": weight_map entry '", it.key(), "' must be a file name, found ",
              it.value().dump());
    const std::string f = it.value().get<std::string>();
    UPG_CHECK(!f.empty() && f.find('/') == std::string::npos && f.find('\\') == std::string::npos && f != "." &&
                  f != ".." && f.find('\0') == std::string::npos,
              where, ": weight_map entry '", it.key(), "' names '", f,
              "', which is not a plain file name in the index's directory");
    idx.weight_map[it.key()] = f;
  }
  return idx;
}

bool is_upg_path(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (!files_ending(path, ".safetensors").empty()) return false;
    return !files_ending(path, ".upg.index.json").empty() || !files_ending(path, ".upg").empty();
  }
  if (fs::exists(path, ec)) return ends_with(path, ".upg") || ends_with(path, ".upg.index.json");
  return ends_with(path, ".upg") && fs::is_regular_file(path + ".index.json", ec);
}

std::unique_ptr<UpgContainer> UpgContainer::open(const std::string& path) {
  auto c = std::unique_ptr<UpgContainer>(new UpgContainer());
  c->path_ = path;
  std::error_code ec;
  std::string index_path, file_path;
  if (fs::is_directory(path, ec)) {
    auto idx = files_ending(path, ".upg.index.json");
    UPG_CHECK(idx.size() <= 1, path, ": holds several UPG indexes (", idx[0], ", ", idx[1], "); give one");
    if (idx.size() == 1) {
      index_path = idx[0];
    } else {
      auto ups = files_ending(path, ".upg");
      UPG_CHECK(!ups.empty(), path, ": no .upg file or .upg.index.json in this directory");
      UPG_CHECK(ups.size() == 1, path, ": holds several .upg files and no .upg.index.json; give one of them");
      file_path = ups[0];
    }
  } else if (fs::exists(path, ec)) {
    (ends_with(path, ".json") ? index_path : file_path) = path;
  } else {
    UPG_CHECK(ends_with(path, ".upg") && fs::is_regular_file(path + ".index.json", ec), "model path '", path,
              "' does not exist");
    index_path = path + ".index.json";
  }

  if (!file_path.empty()) {
    c->files_.push_back(UpgFile::open(file_path));
    c->metadata_ = c->files_[0]->metadata();
    c->total_bytes_ = c->files_[0]->file_size();
  } else {
    c->sharded_ = true;
    const UpgIndex idx = parse_upg_index(read_text_file(index_path, kMaxConfigFileBytes), index_path);
    c->metadata_ = idx.metadata;
    c->total_bytes_ = fs::file_size(index_path, ec);
    const fs::path dir = fs::path(index_path).parent_path();
    std::map<std::string, std::vector<std::string>> by_shard;
    for (const auto& [t, f] : idx.weight_map) by_shard[f].push_back(t);
    for (const auto& [f, names] : by_shard) {
      const std::string sp = (dir / f).string();
      UPG_CHECK(fs::is_regular_file(sp, ec), index_path, ": shard '", f, "' (holding '", names[0],
                "') is missing");
      auto file = UpgFile::open(sp);
      for (const std::string& t : names)
        UPG_CHECK(file->find(t), index_path, ": tensor '", t, "' is mapped to shard '", f,
                  "', which does not contain it");
      for (const UpgTensor& t : file->tensors()) {
        auto it = idx.weight_map.find(t.name);
        UPG_CHECK(it != idx.weight_map.end() && it->second == f, index_path, ": shard '", f, "' holds tensor '",
                  t.name, "', which the weight_map ", it == idx.weight_map.end() ? "does not list" : "maps to '" + it->second + "'");
      }
      c->total_bytes_ += file->file_size();
      c->files_.push_back(std::move(file));
    }
  }
  for (const auto& f : c->files_)
    for (const UpgTensor& t : f->tensors()) {
      UPG_CHECK(c->index_.emplace(t.name, &t).second, path, ": tensor '", t.name, "' appears in two files");
      c->order_.push_back(&t);
    }
  return c;
}

const UpgTensor* UpgContainer::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const UpgTensor& UpgContainer::tensor(const std::string& name) const {
  const UpgTensor* t = find(name);
  UPG_CHECK(t, path_, ": tensor '", name, "' not found");
  return *t;
}

std::optional<std::string> UpgContainer::text(const std::string& name) const {
  auto it = metadata_.find(name);
  if (it != metadata_.end()) return it->second;
  for (const auto& f : files_)
    if (auto t = f->text(name)) return t;
  return std::nullopt;
}

}  // namespace upg
