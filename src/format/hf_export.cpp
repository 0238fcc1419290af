#include "format/hf_export.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "base/mapped_file.h"
#include "base/staging_dir.h"
#include "format/upg_stream_writer.h"

namespace upg {

namespace fs = std::filesystem;

namespace {

// Weight files of any known format: never copied as side files.
bool is_weight_file(const std::string& name) {
  const std::string ext = fs::path(name).extension().string();
  static const std::set<std::string> exts = {".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".h5", ".msgpack",
                                             ".gguf", ".upg", ".onnx", ".pkl"};
  if (exts.count(ext)) return true;
  for (const char* idx : {".safetensors.index.json", ".bin.index.json", ".upg.index.json"})
    if (name.size() > std::strlen(idx) && name.compare(name.size() - std::strlen(idx), std::string::npos, idx) == 0)
      return true;
  return false;
}

bool same_path(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::equivalent(a, b, ec);
}

}  // namespace

HfExportReport write_hf_safetensors_dir(const HfCheckpoint& ck, const std::string& out_dir, const HfExportOptions& o) {
  std::error_code ec;
  fs::path out = fs::path(out_dir).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();
  UPG_CHECK(!out.empty(), "convert: empty output directory name");
  UPG_CHECK(!same_path(out, ck.dir()), "convert: the output directory '", out.string(), "' is the input directory");
  UPG_CHECK(!fs::exists(fs::symlink_status(out, ec)) || (fs::is_directory(out, ec) && fs::is_empty(out, ec)),
            "convert: output '", out.string(), "' already exists and is not an empty directory");
  if (out.has_parent_path()) {
    UPG_CHECK(fs::is_directory(out.parent_path(), ec), "convert: the parent directory of the output, '",
              out.parent_path().string(), "', does not exist");
  }

  StagingDir tmp(out.string(), "convert: ");
  const fs::path dir(tmp.path());
  HfExportReport rep;
  rep.out_dir = out.string();

  // Shards: consecutive tensors (sorted by name) while the data stays under the limit.
  const std::vector<std::string> names = ck.names();
  std::vector<std::vector<const TensorView*>> shards(1);
  uint64_t cur = 0, total = 0;
  for (const std::string& n : names) {
    const TensorView& t = ck.tensor(n);
    if (o.shard_bytes > 0 && cur > 0 && cur + t.nbytes > o.shard_bytes) shards.emplace_back(), cur = 0;
    shards.back().push_back(&t);
    cur += t.nbytes;
    total += t.nbytes;
  }
  const int nsh = static_cast<int>(shards.size());
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  size_t done = 0;
  uint64_t done_bytes = 0;
  for (int s = 0; s < nsh; ++s) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", s + 1, nsh);
    const std::string fname = nsh == 1 ? "model.safetensors" : buf;
    SafetensorsStreamWriter w((dir / fname).string(), 1);
    for (const TensorView* t : shards[s]) {
      w.add_array(t->name, t->dtype, t->shape, t->data, t->nbytes);
      weight_map[t->name] = fname;
      done_bytes += t->nbytes;
      if (o.progress) o.progress(++done, names.size(), done_bytes, total, t->name);
    }
    w.finish({{"format", "pt"}});
    rep.weight_files.push_back(fname);
  }
  if (nsh > 1) {
    nlohmann::ordered_json idx = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text_file((dir / "model.safetensors.index.json").string(), idx.dump(2) + "\n");
    rep.weight_files.push_back("model.safetensors.index.json");
  }

  // Every other regular file of the input directory (config, tokenizer, generation config, README).
  std::vector<fs::path> side;
  for (const auto& e : fs::directory_iterator(ck.dir(), ec))
    if (e.is_regular_file(ec)) side.push_back(e.path());
  UPG_CHECK(!ec, "convert: cannot list '", ck.dir(), "': ", ec.message());
  std::sort(side.begin(), side.end());
  const std::set<std::string> weights(ck.weight_files().begin(), ck.weight_files().end());
  for (const fs::path& src : side) {
    const std::string name = src.filename().string();
    if (weights.count(name) || is_weight_file(name)) continue;
    const uint64_t size = fs::file_size(src, ec);
    if (ec || size > o.max_side_file_bytes) {
      rep.skipped.push_back(str_cat(name, " (", ec ? ec.message() : str_cat(size, " bytes, not a known small file"), ")"));
      ec.clear();
      continue;
    }
    fs::copy_file(src, dir / name, ec);
    UPG_CHECK(!ec, "convert: cannot copy '", src.string(), "': ", ec.message());
    rep.copied.push_back(name);
  }

  // Into place.
  if (fs::is_directory(out, ec)) fs::remove(out, ec);  // an empty directory (checked above)
  fs::rename(dir, out, ec);
  UPG_CHECK(!ec, "convert: cannot rename '", dir.string(), "' to '", out.string(), "': ", ec.message());
  tmp.keep();
  rep.tensors = names.size();
  rep.bytes = total;
  return rep;
}

}  // namespace upg
