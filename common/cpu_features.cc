#include "common/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace ferry {

std::string CpuFeatures::ToString() const {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!out.empty()) out += ' ';
    out += name;
  };
  add(avx2, "avx2");
  add(fma, "fma");
  add(f16c, "f16c");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512bf16, "avx512bf16");
  add(avx512vnni, "avx512vnni");
  if (out.empty()) out = "baseline";
  return out;
}

namespace {

CpuFeatures Detect() {
  CpuFeatures f;
#if (defined(__x86_64__) || defined(__i386__)) && !defined(FERRY_PORTABLE)
  const char* env = std::getenv("FERRY_CPU_FEATURES");
  if (env != nullptr && std::strcmp(env, "baseline") == 0) return f;
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
  // f16c and avx512bf16 are not known to older __builtin_cpu_supports; ask cpuid.
  unsigned eax, ebx, ecx, edx;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
  f.f16c = (ecx >> 29) & 1;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(1));
  f.avx512bf16 = f.avx512f && ((eax >> 5) & 1);
  // "avx2": as a CPU without AVX-512, to try that code path on one with it.
  if (env != nullptr && std::strcmp(env, "avx2") == 0) {
    f.avx512f = f.avx512bw = f.avx512vl = f.avx512bf16 = f.avx512vnni = false;
  }
#endif
  return f;
}

}  // namespace

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

}  // namespace ferry
