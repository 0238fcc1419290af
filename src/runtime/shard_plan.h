// How a model is split over the ranks of a tensor-parallel group (runtime/tensor_parallel.h makes
// it; Model::shard applies it; the Engine runs a shard with a Communicator). Megatron-style:
//   - attention: each rank owns a range of key-value heads with their query heads (or, with fewer
//     kv heads than ranks, one kv head, replicated, and part of its query heads): its rows of q, k, v
//     (and their biases) and its own KV cache; the output projection o is then either split by
//     columns (each rank multiplies its heads' outputs, one all-reduce sums the partial products) or,
//     when its columns cannot be cut there (a rotation block of the codec spans two ranks' heads),
//     gathered: the heads' outputs are all-gathered, each rank computes its rows of o's output, and
//     those are all-gathered;
//   - MLP: each rank owns a range of the intermediate dimension: its rows of gate and up and the
//     same split of down, by columns (all-reduce) or gathered as for o;
//   - LM head: split by vocabulary rows, the logits all-gathered; the embedding and norms are whole
//     on every rank, and so is the residual stream.
#pragma once
#include <cstdint>
#include <vector>

namespace upg {

struct TensorParallelPlan {
  int ranks = 1;
  // Boundaries, ranks + 1 values from 0 to the total: rank r owns [b[r], b[r + 1]).
  std::vector<int64_t> q_heads;       // query heads
  // Rank r's key-value heads [kv_begin[r], kv_end[r]): those its query heads attend with. With at
  // least as many key-value heads as ranks, whole groups (a kv head and its num_heads / num_kv_heads
  // query heads) per rank; with fewer, each kv head replicated on ranks / num_kv_heads ranks, which
  // share its group's query heads (its k and v rows, and its KV cache, on each of them).
  std::vector<int64_t> kv_begin, kv_end;
  std::vector<int64_t> intermediate;  // MLP intermediate channels
  std::vector<int64_t> vocab;         // LM head rows
  std::vector<int64_t> hidden;        // output rows of o and down where they are gathered
  // Mixture-of-experts layers: routed experts, each held whole by one rank (expert parallelism); the
  // router on every rank, the shared expert on rank 0; the ranks' outputs summed. Empty without experts.
  std::vector<int64_t> experts;
  bool o_by_columns = true;           // false: o gathered (see above)
  bool down_by_columns = true;        // false: down gathered

  int64_t size(const std::vector<int64_t>& b, int rank) const { return b[rank + 1] - b[rank]; }
};

}  // namespace upg
