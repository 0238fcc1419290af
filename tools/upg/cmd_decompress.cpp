// upg decompress MODEL.upg -o HF_DIR: writes a standard Hugging Face model directory with every
// tensor decoded (BF16 by default, or F16/F32): config.json (its torch_dtype/dtype set to the
// output dtype), model.safetensors (or model-0000i-of-0000N.safetensors + model.safetensors.index.json
// above --shard-size), and the tokenizer files carried in the UPG metadata. Atomic: everything is
// written into "<HF_DIR>.tmp-XXXXXX" and renamed to HF_DIR only when complete (HF_DIR must not
// exist, or be an empty directory); on any error the temporary directory is removed.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "base/error.h"
#include "base/mapped_file.h"
#include "base/staging_dir.h"
#include "base/half.h"
#include "commands.h"
#include "loaded_model.h"
#include "format/upg_container.h"
#include "format/upg_format.h"
#include "format/upg_stream_writer.h"
#include "progress.h"

namespace upg::cli {

namespace fs = std::filesystem;

namespace {

struct DecompressOptions {
  std::string model, out, dtype = "bf16";
  double shard_gb = 5.0;
  bool progress = false;
  int threads = 0;
};


// Decodes t row chunk by row chunk into w as `dt`.
void write_tensor(SafetensorsStreamWriter& w, const UpgTensor& t, TensorDType dt) {
  auto m = t.open_matrix();
  const int64_t rows = t.rows(), cols = t.cols();
  w.begin_array(t.name, dt, t.shape);
  const int64_t chunk = std::max<int64_t>(1, (1 << 22) / std::max<int64_t>(cols, 1));
  std::vector<float> buf;
  std::vector<uint16_t> half;
  for (int64_t r0 = 0; r0 < rows && cols > 0; r0 += chunk) {
    const int64_t r1 = std::min(rows, r0 + chunk);
    const size_t n = static_cast<size_t>((r1 - r0) * cols);
    buf.resize(n);
    // Split the chunk's rows over threads; decode_rows of disjoint rows may run concurrently.
    const int64_t sub = std::max<int64_t>(1, (r1 - r0) / (4 * omp_get_max_threads()));
#pragma omp parallel for schedule(dynamic)
    for (int64_t a = r0; a < r1; a += sub) m->decode_rows(a, std::min(r1, a + sub), buf.data() + (a - r0) * cols);
    for (size_t i = 0; i < n; ++i)
      UPG_CHECK(std::isfinite(buf[i]), t.file, ": tensor '", t.name, "' decodes to a non-finite value at row ",
                r0 + static_cast<int64_t>(i) / cols, " (run upg verify)");
    if (dt == TensorDType::F32) {
      w.write(buf.data(), n * 4);
      continue;
    }
    half.resize(n);
    for (size_t i = 0; i < n; ++i) half[i] = dt == TensorDType::BF16 ? f32_to_bf16(buf[i]) : f32_to_f16(buf[i]);
    w.write(half.data(), n * 2);
  }
  w.end_array();
}

void decompress(const DecompressOptions& o) {
  apply_threads(o.threads);  // the thread pool (forward passes, matmuls) and OpenMP
  const TensorDType dt = o.dtype == "f32" ? TensorDType::F32 : o.dtype == "f16" ? TensorDType::F16 : TensorDType::BF16;
  auto c = UpgContainer::open(o.model);
  std::error_code ec;
  fs::path out = fs::path(o.out).lexically_normal();
  if (out.has_filename() == false) out = out.parent_path();
  UPG_CHECK(!fs::exists(out, ec) || (fs::is_directory(out, ec) && fs::is_empty(out, ec)), "output '", out.string(),
            "' already exists and is not an empty directory");

  StagingDir tmp(out.string());
  const fs::path dir(tmp.path());

  // Text files; config.json records the new dtype.
  for (const std::string& name : upg_text_file_names()) {
    auto text = c->text(name);
    if (!text) continue;
    if (name == "config.json") {
      auto cfg = nlohmann::ordered_json::parse(*text, nullptr, false);
      UPG_CHECK(cfg.is_object(), c->path(), ": metadata 'config.json' is not a JSON object");
      const char* torch_name = dt == TensorDType::F32 ? "float32" : dt == TensorDType::F16 ? "float16" : "bfloat16";
      bool set = false;
      for (const char* k : {"torch_dtype", "dtype"})
        if (cfg.contains(k)) cfg[k] = torch_name, set = true;
      if (!set) cfg["torch_dtype"] = torch_name;
      *text = cfg.dump(2) + "\n";
    }
    write_text_file((dir / name).string(), *text);
  }

  // Shards: consecutive tensors while the data stays under the limit.
  const uint64_t limit = static_cast<uint64_t>(o.shard_gb * 1e9);
  std::vector<std::vector<const UpgTensor*>> shards(1);
  uint64_t cur = 0, total = 0;
  for (const UpgTensor* t : c->tensors()) {
    const uint64_t b = static_cast<uint64_t>(t->numel()) * tensor_dtype_size(dt);
    if (limit > 0 && cur > 0 && cur + b > limit) shards.emplace_back(), cur = 0;
    shards.back().push_back(t);
    cur += b;
    total += b;
  }
  const int n = static_cast<int>(shards.size());
  Progress progress("decompress", c->tensors().size(), total, o.progress);
  size_t done = 0;
  uint64_t done_bytes = 0;
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (int s = 0; s < n; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n);
    const std::string fname = n == 1 ? "model.safetensors" : name;
    SafetensorsStreamWriter w((dir / fname).string(), 1);
    for (const UpgTensor* t : shards[s]) {
      write_tensor(w, *t, dt);
      weight_map[t->name] = fname;
      done_bytes += static_cast<uint64_t>(t->numel()) * tensor_dtype_size(dt);
      progress.update(++done, done_bytes, t->name);
    }
    w.finish({{"format", "pt"}});
  }
  progress.finish();
  if (n > 1) {
    nlohmann::ordered_json idx = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text_file((dir / "model.safetensors.index.json").string(), idx.dump(2) + "\n");
  }
  if (fs::is_directory(out, ec)) fs::remove(out, ec);  // an empty directory (checked above)
  fs::rename(dir, out, ec);
  UPG_CHECK(!ec, "cannot rename '", dir.string(), "' to '", out.string(), "': ", ec.message());
  tmp.keep();
  std::printf("wrote %s: %zu tensors as %s in %d file%s (%.1f MB)\n", out.string().c_str(), c->tensors().size(),
              tensor_dtype_name(dt), n, n == 1 ? "" : "s", total / 1e6);
}

}  // namespace

void add_decompress_command(CLI::App& app) {
  auto o = std::make_shared<DecompressOptions>();
  auto* cmd = app.add_subcommand("decompress", "Write a UPG model back as a Hugging Face directory (BF16 by default)");
  cmd->add_option("model", o->model, ".upg file, .upg.index.json or a directory holding one")->required();
  cmd->add_option("-o,--output", o->out, "Hugging Face directory to create")->required();
  cmd->add_option("--dtype", o->dtype, "Output dtype")->check(CLI::IsMember({"bf16", "f16", "f32"}))->capture_default_str();
  cmd->add_option("--shard-size", o->shard_gb, "Split model.safetensors above this many GB (0 = never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_flag("--progress", o->progress, "Show progress even when stderr is not a terminal");
  cmd->add_option("-t,--threads", o->threads, "Worker threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([o] { decompress(*o); });
}

}  // namespace upg::cli
