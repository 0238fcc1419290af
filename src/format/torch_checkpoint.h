// One PyTorch checkpoint file (pytorch_model.bin or a shard of it) in the zip format torch.save
// writes since torch 1.6, read without executing anything:
//
//   <prefix>/data.pkl        the state dict, pickled (read by format/torch_pickle.h: allow-listed
//                            globals only, nothing is called)
//   <prefix>/data/<key>      one entry per storage, raw little-endian elements, STORED (uncompressed)
//   <prefix>/version, <prefix>/byteorder ("little"; absent in older files), <prefix>/.data/...
//
// <prefix> is the archive name (torch uses the file name without extension, older versions
// "archive"). The file is memory-mapped and its zip directory parsed by format/zip_archive.h; each
// tensor becomes a TensorView (the type safetensors files give) pointing into the mapping: a
// contiguous view at its storage offset, in place. A non-contiguous view (strides other than
// row-major) is copied into row-major order once, on open; a view whose elements overlap (stride 0,
// more elements than its storage) is refused. Tensors sharing a storage (tied weights) point into
// the same bytes.
//
// Refused, each with an Error naming the file (and the entry or tensor): files that are not zip
// archives (the pre-1.6 format is named as such), compressed or encrypted entries, a data.pkl
// failing its CRC-32, big-endian byte order, a storage entry missing or of another size than the
// pickle says, and everything format/torch_pickle.h refuses.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/mapped_file.h"
#include "format/safetensors.h"

namespace upg {

class TorchCheckpointFile {
 public:
  static std::unique_ptr<TorchCheckpointFile> open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  // The tensors in the pickle's order.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorView* find(const std::string& name) const;

 private:
  explicit TorchCheckpointFile(MappedFile file);
  MappedFile file_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<std::vector<uint8_t>> copies_;  // row-major copies of non-contiguous views
};

// The largest data.pkl read (bytes). A state dict of 100k tensors pickles to about 10 MB.
constexpr size_t kMaxTorchPickleBytes = size_t{256} << 20;

}  // namespace upg
