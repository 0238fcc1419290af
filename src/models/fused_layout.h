// Checkpoints written by current transformers may hold a mixture of experts in the fused layout:
// the experts of a layer as 3-D tensors (mlp.experts.gate_up_proj [experts, 2 x F, hidden] with each
// expert's [gate; up], mlp.experts.down_proj [experts, hidden, F]) and renamed routers, where the
// architecture's table (and every checkpoint published before) names one 2-D tensor per expert.
// register_fused_layout gives the checkpoint an alias, under the table's name, for every tensor
// the table can find only in the fused layout (TensorDecl::fused): a view into the 3-D tensor,
// nothing copied. Every reader of the checkpoint (the loader, the converter) then sees the table's
// names whatever the layout.
#pragma once
#include <vector>

#include "format/hf_checkpoint.h"
#include "models/arch_tensors.h"

namespace upg {

// Throws Error naming the tensor when a fused tensor has an unexpected shape.
void register_fused_layout(HfCheckpoint& ck, const std::vector<ModelTensor>& tensors);

}  // namespace upg
