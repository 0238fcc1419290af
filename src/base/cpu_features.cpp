#include "base/cpu_features.h"

#include <atomic>
#include <cstdlib>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "base/error.h"

namespace upg {

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.f16c = true;  // every CPU with AVX2 + FMA has F16C (Haswell, Zen and later); checked by the baseline build
    c.avx512f = __builtin_cpu_supports("avx512f");
    c.avx512bw = __builtin_cpu_supports("avx512bw");
    c.avx512vl = __builtin_cpu_supports("avx512vl");
    c.avx512vnni = __builtin_cpu_supports("avx512vnni");
    c.avx512bf16 = __builtin_cpu_supports("avx512bf16");
    c.avx512vbmi = __builtin_cpu_supports("avx512vbmi");
#endif
#if defined(__x86_64__) && defined(__linux__)
    unsigned a = 0, b = 0, cx = 0, d = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &cx, &d) && (d >> 24 & 1) && (d >> 25 & 1)) {
      // Tile data is off for a process until it asks (ARCH_REQ_XCOMP_PERM = 0x1023, feature 18 =
      // XTILEDATA); the grant is process-wide. A kernel without the call, or a refusal: no AMX.
      c.amx_int8 = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    }
#endif
    return c;
  }();
  return f;
}

const char* simd_level_name(SimdLevel l) {
  switch (l) {
    case SimdLevel::Avx2: return "avx2";
    case SimdLevel::Avx512: return "avx512";
    case SimdLevel::Avx512Vnni: return "avx512vnni";
    case SimdLevel::Amx: return "amx";
  }
  return "?";
}

SimdLevel parse_simd_level(const std::string& s) {
  for (SimdLevel l : {SimdLevel::Avx2, SimdLevel::Avx512, SimdLevel::Avx512Vnni, SimdLevel::Amx})
    if (s == simd_level_name(l)) return l;
  throw Error(str_cat("unknown SIMD level '", s, "' (known: avx2, avx512, avx512vnni, amx)"));
}

SimdLevel cpu_simd_level() {
  const CpuFeatures& f = cpu_features();
  if (!(f.avx512f && f.avx512bw && f.avx512vl)) return SimdLevel::Avx2;
  if (!f.avx512vnni) return SimdLevel::Avx512;
  return f.amx_int8 ? SimdLevel::Amx : SimdLevel::Avx512Vnni;
}

namespace {
// -1: no cap set by the program (UPG_SIMD may still apply).
std::atomic<int> g_cap{-1};

SimdLevel env_cap(SimdLevel hw) {
  static const std::optional<SimdLevel> cap = []() -> std::optional<SimdLevel> {
    const char* e = std::getenv("UPG_SIMD");
    if (!e || !*e) return std::nullopt;
    return parse_simd_level(e);
  }();
  return cap && *cap < hw ? *cap : hw;
}
}  // namespace

SimdLevel simd_level() {
  const SimdLevel hw = cpu_simd_level();
  const int cap = g_cap.load(std::memory_order_relaxed);
  if (cap >= 0) return static_cast<SimdLevel>(cap) < hw ? static_cast<SimdLevel>(cap) : hw;
  return env_cap(hw);
}

void set_simd_cap(std::optional<SimdLevel> cap) { g_cap.store(cap ? static_cast<int>(*cap) : -1); }

namespace {
// -1: not set by the program (UPG_INT8_ACTIVATIONS decides).
std::atomic<int> g_int8{-1};
}  // namespace

bool int8_activations() {
  const int v = g_int8.load(std::memory_order_relaxed);
  if (v >= 0) return v != 0;
  static const bool env = [] {
    const char* e = std::getenv("UPG_INT8_ACTIVATIONS");
    return !(e && std::string(e) == "0");
  }();
  return env;
}

void set_int8_activations(bool on) { g_int8.store(on ? 1 : 0); }

void require_baseline_cpu() {
  const CpuFeatures& f = cpu_features();
  UPG_CHECK(f.avx2 && f.fma, "this CPU lacks ", !f.avx2 ? "AVX2" : "FMA",
            ": UPG needs an x86-64 CPU with AVX2, FMA and F16C (Intel Haswell / AMD Zen or newer)");
}

}  // namespace upg
