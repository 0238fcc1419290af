// Bit allocation: choose one encoding per tensor to minimise the total estimated damage subject to
// a byte budget (a multiple-choice knapsack). Solved by Lagrangian relaxation: for a multiplier
// lambda every tensor independently takes argmin(damage + lambda * bytes); lambda is bisected to the
// smallest value whose choice fits, then the remaining slack is spent greedily on the upgrades with
// the largest damage reduction per extra byte. Tensors with larger damage per byte thus get more bits.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace upg {

struct AllocOption {
  double bytes = 0;   // stored bytes of this encoding (file overhead included)
  double damage = 0;  // estimated damage (>= 0)
};

// items[i]: the options of tensor i (at least one). Returns the chosen option index per item.
// Throws Error when even the smallest choice exceeds budget_bytes (naming the minimum).
std::vector<size_t> allocate_bits(const std::vector<std::vector<AllocOption>>& items, double budget_bytes);

}  // namespace upg
