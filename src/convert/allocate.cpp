#include "convert/allocate.h"

#include <cmath>
#include <limits>

#include "base/error.h"

namespace upg {

namespace {

std::vector<size_t> choose(const std::vector<std::vector<AllocOption>>& items, double lambda, double& bytes) {
  std::vector<size_t> pick(items.size());
  bytes = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (size_t j = 0; j < items[i].size(); ++j) {
      const double v = items[i][j].damage + lambda * items[i][j].bytes;
      // Ties: the smaller option.
      if (v < best || (v == best && items[i][j].bytes < items[i][pick[i]].bytes)) {
        best = v;
        pick[i] = j;
      }
    }
    bytes += items[i][pick[i]].bytes;
  }
  return pick;
}

}  // namespace

std::vector<size_t> allocate_bits(const std::vector<std::vector<AllocOption>>& items, double budget) {
  double min_bytes = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    UPG_CHECK(!items[i].empty(), "allocate: tensor ", i, " has no candidate encodings");
    double m = std::numeric_limits<double>::infinity();
    for (const auto& o : items[i]) m = std::min(m, o.bytes);
    min_bytes += m;
  }
  UPG_CHECK(min_bytes <= budget, "allocate: the budget of ", budget, " bytes is below the smallest possible size ",
            min_bytes, " bytes");
  double bytes = 0;
  std::vector<size_t> pick = choose(items, 0.0, bytes);
  if (bytes > budget) {
    double lo = 0, hi = 1;
    for (int it = 0; it < 200; ++it) {  // grow hi until it fits
      choose(items, hi, bytes);
      if (bytes <= budget) break;
      lo = hi;
      hi *= 4;
    }
    for (int it = 0; it < 100; ++it) {
      const double mid = 0.5 * (lo + hi);
      choose(items, mid, bytes);
      if (bytes <= budget) hi = mid; else lo = mid;
    }
    pick = choose(items, hi, bytes);
    // Hi may still be "infinitely" large only if nothing fits; min_bytes <= budget rules that out,
    // but guard anyway: fall back to the smallest option everywhere.
    if (bytes > budget) {
      bytes = 0;
      for (size_t i = 0; i < items.size(); ++i) {
        size_t s = 0;
        for (size_t j = 1; j < items[i].size(); ++j)
          if (items[i][j].bytes < items[i][s].bytes) s = j;
        pick[i] = s;
        bytes += items[i][s].bytes;
      }
    }
  }
  // Spend the slack: repeatedly take the affordable upgrade with the best damage drop per byte.
  for (;;) {
    double best_ratio = 0;
    size_t bi = 0, bj = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const AllocOption& cur = items[i][pick[i]];
      for (size_t j = 0; j < items[i].size(); ++j) {
        const AllocOption& o = items[i][j];
        const double extra = o.bytes - cur.bytes, gain = cur.damage - o.damage;
        if (gain <= 0 || bytes + extra > budget) continue;
        const double ratio = extra <= 0 ? std::numeric_limits<double>::infinity() : gain / extra;
        if (ratio > best_ratio) {
          best_ratio = ratio;
          bi = i;
          bj = j;
        }
      }
    }
    if (best_ratio <= 0) break;
    bytes += items[bi][bj].bytes - items[bi][pick[bi]].bytes;
    pick[bi] = bj;
  }
  return pick;
}

}  // namespace upg
