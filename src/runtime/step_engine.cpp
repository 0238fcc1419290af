#include "runtime/step_engine.h"

#include "base/error.h"

namespace upg {

void StepEngine::kept_logits(int64_t row, std::vector<float>& out) const {
  const int64_t V = model().config().vocab_size;
  UPG_CHECK(row >= 0 && (row + 1) * V <= static_cast<int64_t>(kept_.size()), "kept_logits: row ", row,
            " of a step that kept ", kept_.size() / V, " rows");
  out.assign(kept_.begin() + row * V, kept_.begin() + (row + 1) * V);
}

void StepEngine::sample_kept(std::span<const KeptSample> rows, std::vector<int32_t>& tokens) {
  const int64_t V = model().config().vocab_size;
  tokens.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const KeptSample& r = rows[i];
    UPG_CHECK(r.row >= 0 && (r.row + 1) * V <= static_cast<int64_t>(kept_.size()), "sample_kept: row ", r.row,
              " of a step that kept ", kept_.size() / V, " rows");
    tokens[i] = r.sampler->sample(std::span<float>(kept_.data() + r.row * V, static_cast<size_t>(V)), r.history,
                                  r.generated);
  }
}

}  // namespace upg
