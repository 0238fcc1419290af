// libFuzzer target for the legacy PyTorch checkpoint reader: the restricted unpickler
// (format/torch_pickle.h), the zip reader (format/zip_archive.h) and the whole pytorch_model.bin
// path (format/torch_checkpoint.h: storages, view bounds, strided copies).
//
// Input: the first byte selects the reader (even: the rest is a data.pkl pickle; odd: the rest is a
// whole pytorch_model.bin file), the rest is the input. Any input must either parse or fail with
// upg::Error; every tensor's bytes are then read (ASan checks they lie inside the file or the
// copy). Nothing may be executed: the reader has no way to call anything. Seeds: tests/fuzz/
// corpus_torch_pickle/ (made by tests/scripts/make_torch_fixtures.py: pickles and archives of valid
// state dicts and of the malicious and damaged cases). Build and run: tests/fuzz/run_fuzz.sh.
#include <cstdint>

#include "base/error.h"
#include "format/torch_checkpoint.h"
#include "format/torch_pickle.h"
#include "fuzz_util.h"

namespace {
upg::fuzz::MemFile g_file;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  ++data, --size;
  try {
    if ((mode & 1) == 0) {
      const upg::TorchStateDict sd = upg::parse_torch_pickle(data, size, "fuzz.pkl");
      for (const upg::TorchTensorRecord& t : sd.tensors)
        if (t.storage >= sd.storages.size() || t.shape.size() != t.stride.size()) __builtin_trap();
      return 0;
    }
    auto f = upg::TorchCheckpointFile::open(g_file.write(data, size));
    uint64_t sum = 0;
    for (const upg::TensorView& t : f->tensors()) {
      if (t.nbytes) sum += t.data[0] + t.data[t.nbytes - 1];
      if (static_cast<uint64_t>(t.numel()) * upg::tensor_dtype_size(t.dtype) != t.nbytes) __builtin_trap();
      if (f->find(t.name) == nullptr) __builtin_trap();
    }
    (void)sum;
  } catch (const upg::Error&) {
  }
  return 0;
}
