#include "format/torch_checkpoint.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "format/torch_pickle.h"
#include "format/zip_archive.h"

namespace upg {

namespace {

// Copies the strided view (shape, stride, element offset `base`) of `src` into row-major `dst`.
void copy_strided(const uint8_t* src, size_t item, const std::vector<int64_t>& shape,
                  const std::vector<int64_t>& stride, uint8_t* dst) {
  const size_t rank = shape.size();
  std::vector<int64_t> idx(rank, 0);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  int64_t src_off = 0;
  for (int64_t n = 0; n < numel; ++n) {
    std::memcpy(dst + static_cast<size_t>(n) * item, src + static_cast<size_t>(src_off) * item, item);
    // Increment the multi-index (last dimension fastest), keeping src_off in step.
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < shape[d]) {
        src_off += stride[d];
        break;
      }
      src_off -= (shape[d] - 1) * stride[d];
      idx[d] = 0;
    }
  }
}

bool is_contiguous(const std::vector<int64_t>& shape, const std::vector<int64_t>& stride) {
  int64_t expect = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] == 1) continue;  // any stride is fine for a dimension of one element
    if (stride[d] != expect) return false;
    expect *= shape[d];
  }
  return true;
}

}  // namespace

std::unique_ptr<TorchCheckpointFile> TorchCheckpointFile::open(const std::string& path) {
  return std::unique_ptr<TorchCheckpointFile>(new TorchCheckpointFile(MappedFile(path)));
}

const TensorView* TorchCheckpointFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

TorchCheckpointFile::TorchCheckpointFile(MappedFile file) : file_(std::move(file)) {
  const std::string& p = file_.path();
  const uint8_t* data = file_.data();
  const size_t size = file_.size();
  if (size >= 2 && data[0] == 0x80 && data[1] <= 5)
    throw Error(str_cat(p, ": this is the legacy torch.save format (before torch 1.6: pickles without a zip "
                           "archive), which is not supported; save it again with torch >= 1.6 or as safetensors"));
  UPG_CHECK(size >= 4 && std::memcmp(data, "PK\x03\x04", 4) == 0, p,
            ": not a zip archive (a pytorch_model.bin written by torch.save starts with 'PK')");
  const ZipArchive zip(data, size, p);

  // The archive's top-level folder: the one holding data.pkl.
  const ZipEntry* pkl = nullptr;
  for (const ZipEntry& e : zip.entries()) {
    const size_t slash = e.name.find('/');
    if (slash == std::string::npos || e.name.compare(slash, std::string::npos, "/data.pkl") != 0) continue;
    UPG_CHECK(!pkl, p, ": more than one data.pkl in the archive ('", pkl ? pkl->name : "", "' and '", e.name, "')");
    pkl = &e;
  }
  UPG_CHECK(pkl, p, ": no '<archive>/data.pkl' entry: not a torch.save checkpoint");
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - std::strlen("data.pkl"));
  if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {
    const uint8_t* b = zip.stored_data(*bo);
    const std::string order(reinterpret_cast<const char*>(b), std::min<uint64_t>(bo->compressed_size, 16));
    UPG_CHECK(bo->compressed_size == 6 && order == "little", p, ": byte order '", order,
              "' is not supported (only little-endian)");
  }
  UPG_CHECK(pkl->uncompressed_size <= kMaxTorchPickleBytes, p, ": data.pkl has ", pkl->uncompressed_size,
            " bytes, more than the ", kMaxTorchPickleBytes, " allowed");
  const uint8_t* pkl_data = zip.stored_data(*pkl);
  UPG_CHECK(zip.crc_matches(*pkl), p, ": '", pkl->name, "' fails its CRC-32 check (damaged file)");
  const TorchStateDict sd = parse_torch_pickle(pkl_data, pkl->uncompressed_size, p);

  // Storages: entries "<prefix>data/<key>" of exactly numel x element size bytes.
  std::vector<const uint8_t*> storage_data(sd.storages.size());
  for (size_t i = 0; i < sd.storages.size(); ++i) {
    const TorchStorage& s = sd.storages[i];
    const std::string entry = prefix + "data/" + s.key;
    const ZipEntry* e = zip.find(entry);
    UPG_CHECK(e, p, ": storage '", s.key, "' is missing: the archive has no entry '", entry, "'");
    const uint64_t item = tensor_dtype_size(s.dtype);
    UPG_CHECK(e->uncompressed_size % item == 0 && e->uncompressed_size / item == s.numel, p, ": storage entry '",
              entry, "' has ", e->uncompressed_size, " bytes but the pickle declares ", s.numel, " elements of ",
              tensor_dtype_name(s.dtype), " (", item, " bytes each)");
    storage_data[i] = zip.stored_data(*e);
  }

  tensors_.reserve(sd.tensors.size());
  uint64_t copied = 0;  // bytes of non-contiguous views copied so far, at most the file's size
  for (const TorchTensorRecord& r : sd.tensors) {
    const TorchStorage& s = sd.storages[r.storage];
    const size_t item = tensor_dtype_size(s.dtype);
    TensorView t;
    t.name = r.name;
    t.dtype = s.dtype;
    t.shape = r.shape;
    const uint64_t numel = static_cast<uint64_t>(t.numel());  // bounded by parse_torch_pickle
    t.nbytes = static_cast<size_t>(numel * item);
    if (numel == 0) {
      t.data = storage_data[r.storage];
    } else if (is_contiguous(r.shape, r.stride)) {
      // In place; parse_torch_pickle checked offset + numel - 1 < storage numel.
      t.data = storage_data[r.storage] + static_cast<size_t>(r.offset) * item;
    } else {
      // A strided view (a transpose, a slice of columns): copied once into row-major order. Views
      // with more elements than their storage repeat elements (stride 0 broadcasts); refused, so a
      // small storage cannot expand into a huge copy.
      copied += t.nbytes;
      UPG_CHECK(copied <= size, p, ": the non-contiguous tensors to copy exceed the file's size (", copied,
                " bytes at tensor '", r.name, "'); refused");
      UPG_CHECK(numel <= s.numel, p, ": tensor '", r.name, "' is a view with strides ", shape_to_string(r.stride),
                " that repeats elements (", numel, " elements over a storage of ", s.numel,
                "); such tensors are not supported");
      copies_.emplace_back(t.nbytes);
      copy_strided(storage_data[r.storage] + static_cast<size_t>(r.offset) * item, item, r.shape, r.stride,
                   copies_.back().data());
      t.data = copies_.back().data();
    }
    index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
}

}  // namespace upg
