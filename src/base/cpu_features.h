// What the CPU can do, detected once at run time, and the SIMD level the kernels use. One binary
// runs on every x86-64 CPU with AVX2 + FMA + F16C (the baseline it is compiled for, x86-64-v3);
// kernels with AVX-512 variants pick them at run time when the CPU has the extensions.
//
// The level can be capped (never raised above what the CPU has) by the environment variable
// UPG_SIMD=avx2|avx512|avx512vnni|amx, read once, or by set_simd_cap() (tests force each path in turn).
#pragma once
#include <optional>
#include <string>

namespace upg {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
  bool avx512vbmi = false;  // byte permutes (vpermb, vpmultishiftqb): Ice Lake, Zen 4 and later; not a level
  // AMX-TILE + AMX-INT8 in CPUID and the kernel granted this process the tile data state
  // (arch_prctl ARCH_REQ_XCOMP_PERM, asked once here; Linux 5.16 or later).
  bool amx_int8 = false;
};
const CpuFeatures& cpu_features();

enum class SimdLevel {
  Avx2 = 0,        // AVX2 + FMA + F16C: the baseline
  Avx512 = 1,      // + AVX-512 F, BW, VL
  Avx512Vnni = 2,  // + AVX-512 VNNI
  Amx = 3,         // + AMX-INT8 tiles usable by this process (Sapphire Rapids and later)
};
const char* simd_level_name(SimdLevel l);
// "avx2", "avx512", "avx512vnni", "amx"; throws Error listing them otherwise.
SimdLevel parse_simd_level(const std::string& s);

// The best level the CPU supports.
SimdLevel cpu_simd_level();
// The level kernels use: cpu_simd_level(), capped by UPG_SIMD or set_simd_cap().
SimdLevel simd_level();
// Caps the level (nullopt: back to UPG_SIMD or none). Process-wide; call it only while no kernel runs.
void set_simd_cap(std::optional<SimdLevel> cap);

// Whether matmuls may quantize their activations to int8 and use integer dot products
// (kernels/cpu/codebook_q8.h), as the fastest CPU engines do: the default. UPG_INT8_ACTIVATIONS=0,
// read once, or set_int8_activations(false) keeps every matmul in fp32 (tests of the fp32 paths,
// or to measure what the activation rounding costs). Process-wide, like the SIMD cap.
bool int8_activations();
void set_int8_activations(bool on);

// Throws Error naming what is missing when the CPU lacks the AVX2 + FMA + F16C baseline.
void require_baseline_cpu();

}  // namespace upg
