#include "models/fused_layout.h"

#include "base/error.h"

namespace upg {

void register_fused_layout(HfCheckpoint& ck, const std::vector<ModelTensor>& tensors) {
  for (const ModelTensor& t : tensors) {
    if (t.fused_name.empty() || ck.has(t.name) || !ck.has(t.fused_name)) continue;
    if (t.fused_slice == FusedSlice::Rename) {
      ck.add_alias(t.name, t.fused_name, -1, 0, 0);
      continue;
    }
    UPG_CHECK(t.expert >= 0 && t.shape.size() == 2, ck.dir(), ": tensor table error: '", t.name,
              "' is sliced from a fused tensor but is not a per-expert matrix");
    const TensorView& f = ck.tensor(t.fused_name);
    const int64_t rows = t.shape[0];
    const int64_t slab = t.fused_slice == FusedSlice::Expert ? rows : 2 * rows;
    UPG_CHECK(f.shape.size() == 3 && f.shape[0] > t.expert && f.shape[1] == slab && f.shape[2] == t.shape[1], ck.dir(),
              ": fused expert tensor '", t.fused_name, "' has shape ", f.shape_str(), ", expected [experts, ", slab,
              ", ", t.shape[1], "] for '", t.name, "'");
    const int64_t row0 = t.fused_slice == FusedSlice::ExpertSecondHalf ? rows : 0;
    ck.add_alias(t.name, t.fused_name, t.expert, row0, rows);
  }
}

}  // namespace upg
