// Writes any checkpoint HfCheckpoint reads (safetensors or a legacy pytorch_model.bin directory)
// as a standard Hugging Face safetensors directory: model.safetensors, or model-0000i-of-0000N
// .safetensors + model.safetensors.index.json above the shard size, every tensor with its dtype,
// shape and bytes unchanged; plus the directory's other small files (config.json, tokenizer files,
// generation_config.json, ...), copied as they are. Used by `upg convert --to safetensors`.
//
// Streaming: one tensor at a time goes from the input's memory mapping to the writer's temporary
// data file (format/upg_stream_writer.h), so memory use does not grow with the model. Atomic:
// everything is written into "<out>.tmp-XXXXXX" beside the output and renamed to <out> only when
// complete; on any error the temporary directory is removed. <out> must not exist or be an empty
// directory, and must not be the input directory.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "format/hf_checkpoint.h"

namespace upg {

struct HfExportOptions {
  uint64_t shard_bytes = 5'000'000'000;  // 0 = one file
  // Files larger than this that are not weights are not copied (listed in the report instead).
  uint64_t max_side_file_bytes = 256ull << 20;
  // Called after every tensor: (done, total, bytes done, total bytes, tensor name).
  std::function<void(size_t, size_t, uint64_t, uint64_t, const std::string&)> progress;
};

struct HfExportReport {
  std::string out_dir;
  std::vector<std::string> weight_files;  // names inside out_dir
  std::vector<std::string> copied;        // other files copied
  std::vector<std::string> skipped;       // other files not copied, with the reason
  size_t tensors = 0;
  uint64_t bytes = 0;  // tensor data
};

// Throws Error naming the path on any problem.
HfExportReport write_hf_safetensors_dir(const HfCheckpoint& ck, const std::string& out_dir,
                                        const HfExportOptions& o = {});

}  // namespace upg
