// The AVX-512 VNNI variant of the integer-dot-product codebook kernel (codebook_q8.h: the same
// integers, the same accuracy contract). This header is plain C++; its .cpp is the only file
// compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni (CMakeLists.txt), and
// codebook_matmul_q8 calls it only when simd_level() >= SimdLevel::Avx512Vnni.
//
// Layout in a 512-bit register: one block of 32 weights of row r in the low 256 bits and the same
// block of row r + 1 in the high 256 bits (the last row of an odd count is paired with itself and
// its copy discarded). So a token's 32 activation bytes are one broadcast load (vbroadcasti64x4,
// no ALU uop) and its block multiplier m_b one embedded-broadcast operand, shared by both rows.
// Per 64 weights (two rows' block): the AVX2 unpack of codebook_q8.h applied to both halves at once
// (the two rows' code bytes merged by one masked broadcast), one vpshufb for the level lookup
// (row r's table in the low two 128-bit lanes, row r + 1's in the high two); per token
// vpmaddubsw + vpdpwssd (the vpmaddwd by m_b and the int32 add in one instruction): 2 ALU uops per
// 64 weights per token against the AVX2 path's 6. Per run of <= 8 blocks of one group and token:
// vcvtdq2ps + vfmadd by the two rows' group scales. Tokens go in passes of <= 8 (a row pair's
// codes are unpacked once per pass and stay in L1 between passes). Threads: codebook_matmul_q8
// splits the row pairs over the current thread pool (base/thread_pool.h) and calls this file's
// single-threaded function once per chunk; the pool's templates and lambdas stay in codebook_q8.cpp,
// compiled without AVX-512 (an inline function or template instantiated here could be emitted with
// AVX-512 instructions and picked by the linker for every caller, AVX2-only machines included).
#pragma once
#include <cstdint>

#include "kernels/cpu/codebook_kernels.h"
#include "kernels/cpu/codebook_q8.h"

namespace upg::kernels {

// Row pairs [pair_begin, pair_end) of the (v.rows + 1) / 2 pairs (rows 2p and 2p + 1; the last pair
// of an odd row count is row v.rows - 1 alone): those rows of y (n x v.rows) overwritten, on the
// calling thread. Requirements: codebook_q8_supported(v), 2 <= v.k <= 4; k3 =
// codebook_q8_k3_unpack(); p = codebook_q8_act_pointers(x, t); n = x.n, nblk = x.nblk; gsum = the
// tokens' group sums sum_{b in g} d_b bsum_b, [n][ng16] with ng16 = ngroups rounded up to 16,
// zero-padded.
void codebook_matmul_q8_avx512vnni_pairs(const CodebookView& v, const Q8K3Unpack& k3, const Q8ActPointers& p,
                                         int64_t n, int64_t nblk, const float* gsum, float* y, int64_t pair_begin,
                                         int64_t pair_end);

}  // namespace upg::kernels
