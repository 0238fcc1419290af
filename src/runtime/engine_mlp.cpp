// The MLP half of the decoder block: the gated MLP (dense layers, each routed expert, the shared
// expert) and the mixture-of-experts layer (router, top-k, experts over the tokens routed to them).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels/cpu/activation.h"
#include "kernels/logit_select.h"
#include "runtime/engine.h"

namespace upg {

void Engine::gated_mlp(size_t layer, int64_t expert, const GatedMlp& g, const float* in, int64_t n, float* out,
                       bool observe_input, bool accumulate, bool split) {
  const ModelConfig& c = model_.config();
  const int64_t I = g.intermediate(), H = c.hidden_size;
  mlp_.resize(static_cast<size_t>(n * 2 * I));
  act_.resize(static_cast<size_t>(n * I));
  if (observer_ && observe_input) observe(layer, LinearInput::MlpIn, in, n, H, expert);
  project(g.gate_up, g.gate_up_bias, in, n, mlp_.data(), 2 * I);
  Backend& be = *backend_;
  // down multiplies act_ itself next, unless the ranks' columns must first be gathered (combined_matmul).
  const TensorParallelPlan* tp = model_.tensor_parallel();
  const bool down_reads_act = !split || !comm_ || (tp && tp->down_by_columns);
  be.gated_activation_for(down_reads_act ? g.down.get() : nullptr, c.block.activation, mlp_.data(), n, I, act_.data());
  if (observer_) observe(layer, LinearInput::MlpAct, act_.data(), n, I, expert);
  if (accumulate) {
    be.matmul_add(*g.down, act_.data(), n, out);  // out += (the residual stream)
  } else if (!split) {
    be.matmul(*g.down, act_.data(), n, out);
  } else {
    combined_matmul(*g.down, tp && tp->down_by_columns, act_.data(), tp_inter_, n, out);
  }
  if (!g.down_bias.empty()) be.add_bias(out, be.vector(g.down_bias), n, H, H);
}

void Engine::moe_mlp(size_t layer, const float* in, int64_t n, float* out) {
  const ModelConfig& c = model_.config();
  const MoeConfig& m = c.moe;
  const LayerWeights& L = model_.layers()[layer];
  const int64_t H = c.hidden_size, E = m.num_experts, K = m.experts_per_token;

  // Router (MoeConfig): scores, the top K chosen (ties to the lower index), weights renormalised if
  // asked and scaled. The scores are computed by the backend and chosen from on the host.
  product_to_host(*L.router, in, n, route_);
  routed_rows_.resize(static_cast<size_t>(E));
  routed_weights_.resize(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) routed_rows_[e].clear(), routed_weights_[e].clear();
  std::vector<int32_t> order, gorder;  // largest first, ties to the lower index
  std::vector<float> choice(static_cast<size_t>(E)), gscore(static_cast<size_t>(m.groups));
  for (int64_t t = 0; t < n; ++t) {
    float* p = route_.data() + t * E;
    if (m.router == RouterKind::Softmax) {
      kernels::softmax(p, E);
      kernels::largest_first(p, E, K, order);
    } else {
      // DeepSeek V3: sigmoid scores; choose by score + bias among the best groups (the others
      // masked to 0, as transformers does), weigh by the unbiased score.
      for (int64_t e = 0; e < E; ++e) {
        p[e] = 1.0f / (1.0f + std::exp(-p[e]));
        choice[e] = p[e] + L.router_bias[e];
      }
      const int64_t per = E / m.groups;
      for (int64_t g = 0; g < m.groups; ++g) {
        const float* cg = choice.data() + g * per;
        float b1 = -INFINITY, b2 = -INFINITY;
        for (int64_t i = 0; i < per; ++i) {
          if (cg[i] > b1) b2 = b1, b1 = cg[i];
          else if (cg[i] > b2) b2 = cg[i];
        }
        gscore[g] = b1 + b2;
      }
      kernels::largest_first(gscore.data(), m.groups, m.top_groups, gorder);
      std::vector<bool> keep(static_cast<size_t>(m.groups), false);
      for (int64_t k = 0; k < m.top_groups; ++k) keep[static_cast<size_t>(gorder[k])] = true;
      for (int64_t e = 0; e < E; ++e)
        if (!keep[static_cast<size_t>(e / per)]) choice[e] = 0.0f;
      kernels::largest_first(choice.data(), E, K, order);
    }
    float sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += p[order[k]];
    if (m.router == RouterKind::SigmoidGrouped) sum += 1e-20f;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = order[static_cast<size_t>(k)];
      const float w = (m.normalize_top_k ? p[e] / sum : p[e]) * static_cast<float>(m.routed_scale);
      routed_rows_[static_cast<size_t>(e)].push_back(static_cast<int32_t>(t));
      routed_weights_[static_cast<size_t>(e)].push_back(w);
    }
  }

  // Each expert once over the rows routed to it (a decode step reads only the chosen experts), its
  // output rows added to theirs with the routing weight.
  Backend& be = *backend_;
  be.fill(out, n * H, 0.0f);
  for (int64_t e = 0; e < E; ++e) {
    const auto& rows = routed_rows_[static_cast<size_t>(e)];
    if (rows.empty() || L.experts[static_cast<size_t>(e)].empty()) continue;  // (another rank's expert)
    const int64_t ne = static_cast<int64_t>(rows.size());
    gathered_.resize(static_cast<size_t>(ne * H));
    expert_out_.resize(static_cast<size_t>(ne * H));
    be.gather_rows(*ctx_, gathered_.data(), in, rows, H);
    gated_mlp(layer, e, L.experts[static_cast<size_t>(e)], gathered_.data(), ne, expert_out_.data(), true, false,
              false);
    be.add_weighted_rows(*ctx_, out, expert_out_.data(), rows, routed_weights_[static_cast<size_t>(e)], H);
  }

  // The shared expert on every token, scaled by sigmoid(gate . h) when the gate exists.
  if (!L.shared_expert.empty()) {
    shared_out_.resize(static_cast<size_t>(n * H));
    gated_mlp(layer, -1, L.shared_expert, in, n, shared_out_.data(), false, false, false);
    std::vector<int32_t> all(static_cast<size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    std::vector<float> s(static_cast<size_t>(n), 1.0f);
    if (L.shared_expert_gate) {
      product_to_host(*L.shared_expert_gate, in, n, shared_gate_);
      for (int64_t t = 0; t < n; ++t) s[t] = 1.0f / (1.0f + std::exp(-shared_gate_[t]));
    }
    be.add_weighted_rows(*ctx_, out, shared_out_.data(), all, s, H);
  }
}

void Engine::product_to_host(const WeightMatrix& w, const float* in, int64_t n, std::vector<float>& out) {
  Backend& be = *backend_;
  out.resize(static_cast<size_t>(n * w.rows()));
  if (be.host_memory()) {
    be.matmul(w, in, n, out.data());
  } else {
    route_dev_.resize(out.size());
    be.matmul(w, in, n, route_dev_.data());
    be.download(out.data(), route_dev_.data(), sizeof(float) * out.size());
  }
}

}  // namespace upg
