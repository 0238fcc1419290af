// libFuzzer target for the safetensors reader: the 8-byte header length, the JSON header and its
// tensor table (dtypes, shapes, data offsets, overlaps, __metadata__). The input is the whole file.
// Any input must either open or fail with upg::Error; then every tensor's bytes are read (ASan
// checks they lie inside the file). Build and run: tests/fuzz/run_fuzz.sh.
#include <cstdint>

#include "base/error.h"
#include "format/safetensors.h"
#include "fuzz_util.h"

namespace {
upg::fuzz::MemFile g_file;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const upg::SafetensorsFile f = upg::SafetensorsFile::open(g_file.write(data, size));
    uint64_t sum = 0;
    for (const upg::TensorView& t : f.tensors()) {
      if (t.nbytes) sum += t.data[0] + t.data[t.nbytes - 1];
      (void)t.numel();
      (void)t.shape_str();
      if (f.find(t.name) != &t) __builtin_trap();  // the name index must point back at the tensor
    }
    for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size();
    (void)sum;
  } catch (const upg::Error&) {
  }
  return 0;
}
