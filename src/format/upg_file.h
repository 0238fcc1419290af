// Reader of one UPG file (spec: docs/FORMAT.md): memory-maps it, parses the safetensors header and
// the "upg.tensors" table, and validates their structure. Nothing is copied, decoded or checksummed
// at open (checksums: UpgTensor::compute_xxh64, run by `upg verify`); arrays are used in place.
//
// Errors (upg::Error, the message starts with the path and names the tensor/field): not a
// safetensors file or truncated, header sizes/offsets out of range or overlapping (the safetensors
// reader), metadata "format" not "upg", an unsupported major "format_version", no "upg.tensors" or
// malformed entries, an entry naming a missing array or an array used twice, an unknown codec
// (named, with the known ones), a dense tensor whose array does not match its shape/dtype. Arrays
// of compressed codecs are checked against the codec's expectations when the matrix is opened
// (UpgTensor::open_matrix; the codec's open() throws Error naming the array).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "codecs/codec.h"
#include "codecs/weight_matrix.h"
#include "format/safetensors.h"

namespace upg {

struct UpgArray {
  std::string role;          // "qweight", "scales", "data", "sparse.values", ...
  const TensorView* view;    // the stored array, in the file's mapping
};

// One logical tensor of a UPG file. Valid while its UpgFile lives.
struct UpgTensor {
  std::string name;               // Hugging Face name, e.g. "model.layers.0.mlp.down_proj.weight"
  std::vector<int64_t> shape;     // logical shape
  TensorDType dtype = TensorDType::BF16;  // dtype in the original checkpoint
  std::string codec;              // "bf16", "f16", "f32", or a codec of codec_table()
  nlohmann::json params;          // the codec's resolved params (an object)
  std::vector<UpgArray> arrays;   // sorted by role (checksum order)
  std::string xxh64;              // recorded checksum, 16 lowercase hex digits
  std::optional<double> err;      // relative error recorded at conversion
  std::string file;               // path of the file holding it (for messages)

  int64_t numel() const;
  // Bytes of all stored arrays.
  size_t stored_bytes() const;
  double bits_per_weight() const { return numel() ? 8.0 * stored_bytes() / numel() : 0.0; }
  bool dense() const;
  // The rows x cols the matrix is opened as: [r, c] -> (r, c), [n] -> (1, n); for dense tensors of
  // other ranks (product of leading dims, last dim); [] -> (1, 1); no elements -> 0 rows.
  int64_t rows() const;
  int64_t cols() const;
  // role -> view, as codecs take them.
  EncodedArrays views() const;
  // Opens the tensor as a rows() x cols() matrix reading the arrays in place. Throws Error
  // "<file>: tensor '<name>': ..." when the codec rejects the arrays or params.
  std::unique_ptr<WeightMatrix> open_matrix() const;
  // XXH64 of the arrays' bytes in role order (reads every byte).
  std::string compute_xxh64() const;
};

class UpgFile {
 public:
  static std::unique_ptr<UpgFile> open(const std::string& path);
  explicit UpgFile(SafetensorsFile file);

  const std::string& path() const { return st_.path(); }
  uint64_t file_size() const { return file_size_; }
  const std::map<std::string, std::string>& metadata() const { return st_.metadata(); }
  const std::string& format_version() const { return version_; }
  // A text file carried in the metadata ("config.json", ...); nullopt when absent.
  std::optional<std::string> text(const std::string& name) const;
  // Logical tensors in the order of their first array in the file.
  const std::vector<UpgTensor>& tensors() const { return tensors_; }
  const UpgTensor* find(const std::string& name) const;
  const SafetensorsFile& safetensors() const { return st_; }

 private:
  void parse();
  SafetensorsFile st_;
  uint64_t file_size_ = 0;
  std::string version_;
  std::vector<UpgTensor> tensors_;
  std::map<std::string, size_t> index_;
};

// Checks metadata "format" and "format_version" (as found in a file's __metadata__ or an index's
// "metadata"); returns the version. Throws Error starting with `where`.
std::string check_upg_format(const std::map<std::string, std::string>& metadata, const std::string& where);

}  // namespace upg
