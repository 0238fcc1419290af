// The machine's memory read bandwidth, measured: the roofline every CPU speed figure is quoted
// against (upg bench, bench/bench_kernels).
#pragma once
#include <cstddef>

namespace upg {

// Bytes per second: a buffer of `bytes` (default 1 GiB, far beyond any last-level cache) summed
// by all OpenMP threads with AVX2 loads, best of `passes` passes. Allocates and touches the
// buffer first (not timed).
double measure_read_bandwidth(size_t bytes = size_t{1} << 30, int passes = 3);

// The last-level cache size in bytes as the C library reports it (sysconf), or `fallback`.
size_t last_level_cache_bytes(size_t fallback = size_t{32} << 20);

}  // namespace upg
