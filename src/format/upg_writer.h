// Streaming writer of UPG files (spec: docs/FORMAT.md, summary: format/upg_format.h).
//
//   UpgWriter w("out/model.upg", {.shard_bytes = 4ull << 30});
//   w.set_text("config.json", config_text);                  // any time before finish()
//   w.set_converter({{"version", "0.1.0"}, {"options", ...}});
//   w.add("model.layers.0.mlp.down_proj.weight", {shape, TensorDType::BF16, err}, encoded);
//   w.add_raw("model.norm.weight", {{4096}, TensorDType::BF16}, TensorDType::BF16, bytes, n);
//   w.finish();
//
// Tensors are written to a temporary data file as they are added (the writer keeps only their
// descriptions), so the model never has to fit in memory. finish() writes header + data into
// "<out>.tmp-XXXXXX" and renames it into place; with shard_bytes set and more than one shard
// needed, it writes "<stem>-0000i-of-0000N.upg" shards and then "<stem>.upg.index.json" (the index
// last: a model is visible only once complete). An unfinished or failed writer removes every
// temporary file it made (destructor), and existing outputs are replaced only by complete files.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "codecs/codec.h"

namespace upg {

class SafetensorsStreamWriter;

struct UpgWriterOptions {
  // 0: one file. Otherwise a new shard starts when adding a tensor would take the current shard's
  // data section past this many bytes (a tensor larger than the limit gets a shard of its own).
  uint64_t shard_bytes = 0;
  // Open every encoded tensor with its codec before writing it (checks array sizes and params, no
  // decoding), so a file is never written that the reader would reject.
  bool validate = true;
};

// What the container records about a tensor besides its arrays.
struct UpgTensorMeta {
  std::vector<int64_t> shape;              // logical shape, as in the source checkpoint
  TensorDType dtype = TensorDType::BF16;   // dtype in the source checkpoint
  std::optional<double> err;               // relative Frobenius error measured at conversion
};

class UpgWriter {
 public:
  // out_path: the .upg file to write (with sharding: "<dir>/<stem>.upg" names the shards
  // "<dir>/<stem>-0000i-of-0000N.upg" and the index "<dir>/<stem>.upg.index.json").
  explicit UpgWriter(std::string out_path, UpgWriterOptions options = {});
  ~UpgWriter();
  UpgWriter(const UpgWriter&) = delete;
  UpgWriter& operator=(const UpgWriter&) = delete;

  // A text file of the model ("config.json", "tokenizer.json", ...; see upg_text_file_names()).
  void set_text(const std::string& file_name, std::string text);
  // Stored as metadata "converter" (a JSON object: version, options).
  void set_converter(const nlohmann::json& info);

  // A tensor encoded by a codec (meta.shape must be [rows, cols] or [n], the latter opened as
  // 1 x n). Throws Error naming the tensor when the codec is unknown, the name is taken, an array's
  // bytes do not match its dtype and shape, or (options.validate) the codec rejects the arrays.
  void add(const std::string& name, const UpgTensorMeta& meta, const EncodedTensor& enc);
  // A tensor kept uncompressed: `data` holds numel(meta.shape) values of `stored` (BF16, F16 or
  // F32), little-endian; stored with codec "bf16"/"f16"/"f32".
  void add_raw(const std::string& name, const UpgTensorMeta& meta, TensorDType stored, const void* data,
               size_t nbytes);
  // Same from fp32 values, rounded to `stored` (BF16: round to nearest even).
  void add_f32(const std::string& name, const UpgTensorMeta& meta, const float* values, TensorDType stored);

  // Writes everything and renames it into place. Returns the files written (the index last).
  std::vector<std::string> finish();

  size_t tensor_count() const { return names_.size(); }

 private:
  struct Shard;
  struct ArrayIn {
    std::string role;
    TensorDType dtype;
    std::vector<int64_t> shape;
    const uint8_t* data;
    size_t nbytes;
  };
  void add_arrays(const std::string& name, const UpgTensorMeta& meta, const std::string& codec,
                  const nlohmann::json& params, const std::vector<ArrayIn>& arrays);
  void check_new_name(const std::string& name) const;
  Shard& shard_for(uint64_t bytes);
  std::map<std::string, std::string> shard_metadata(const Shard& s, bool with_texts) const;
  void cleanup() noexcept;

  std::string out_;
  UpgWriterOptions opt_;
  std::map<std::string, std::string> texts_;
  std::string converter_;
  std::set<std::string> names_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::string> temp_files_;  // complete shards awaiting their final names
  bool failed_ = false, finished_ = false;
};

}  // namespace upg
