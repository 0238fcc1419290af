#include "convert/calibration.h"

#include <set>

#include "base/error.h"

namespace upg {

CalibrationStats collect_calibration(const Model& model, const std::vector<int32_t>& tokens,
                                     const CalibrationOptions& o) {
  const int64_t vocab = model.config().vocab_size;
  UPG_CHECK(o.window >= 2, "calibration: window must be at least 2 tokens, got ", o.window);
  const int64_t nwin = std::min<int64_t>(o.max_windows, static_cast<int64_t>(tokens.size()) / o.window);
  UPG_CHECK(nwin >= 1, "calibration: need at least one window of ", o.window, " tokens, got ", tokens.size(),
            " tokens (give more calibration text)");
  CalibrationStats st;
  st.token_counts.assign(static_cast<size_t>(vocab), 0.0);
  // Shared inputs: consecutive observer calls with the same pointer and row count are the same input.
  const float* last_x = nullptr;
  int64_t last_n = -1;
  std::shared_ptr<InputStats> last;
  bool first_window = true;
  // A routed expert sees only the tokens routed to it: it may first appear in any window, or never.
  std::set<std::string> experts;
  for (const ModelTensor& t : model.tensors())
    if (t.expert >= 0) experts.insert(t.name);
  Session s(model, static_cast<int>(o.window));
  s.set_observer([&](const std::string& name, const float* x, int64_t n, int64_t cols) {
    auto& slot = st.inputs[name];
    if (x == last_x && n == last_n && last && last->cols() == cols) {
      if (!slot) slot = last;  // same input as the previous projection: share its statistics
      if (slot == last) return;
    }
    if (!slot) {
      UPG_CHECK(first_window || experts.count(name), "calibration: projection '", name,
                "' appeared after the first window");
      slot = std::make_shared<InputStats>(cols, cols <= o.max_full_cols);
    }
    slot->add(x, n);
    last_x = x;
    last_n = n;
    last = slot;
  });
  std::vector<float> logits;
  for (int64_t w = 0; w < nwin; ++w) {
    const std::span<const int32_t> win(tokens.data() + w * o.window, static_cast<size_t>(o.window));
    for (int32_t t : win) {
      UPG_CHECK(t >= 0 && t < vocab, "calibration: token id ", t, " is out of range [0, ", vocab, ")");
      st.token_counts[t] += 1;
    }
    s.reset();
    last_x = nullptr;
    last.reset();
    s.forward(win, logits, /*all_logits=*/true);
    first_window = false;
    st.tokens += o.window;
    ++st.windows;
    if (o.progress) o.progress(w + 1, nwin);
  }
  return st;
}

}  // namespace upg
