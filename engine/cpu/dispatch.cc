#include <cstdio>
#include <cstdlib>

#include "common/cpu_features.h"
#include "engine/cpu/isa.h"
#include "engine/cpu/kernel_table.h"

namespace ferry::cpu {

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

bool IsaAvailable(Isa isa) {
  [[maybe_unused]] const CpuFeatures& f = GetCpuFeatures();
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
#ifdef FERRY_CPU_HAVE_AVX2
      return f.avx2 && f.fma && f.f16c;
#else
      return false;
#endif
    case Isa::kAvx512:
#ifdef FERRY_CPU_HAVE_AVX512
      // The AVX-512 file is also built with -mavx2 -mfma -mf16c.
      return f.avx512f && f.avx512bw && f.avx512vl && f.avx2 && f.fma && f.f16c;
#else
      return false;
#endif
  }
  return false;
}

Isa BestIsa() {
  static const Isa best = [] {
    if (IsaAvailable(Isa::kAvx512)) return Isa::kAvx512;
    if (IsaAvailable(Isa::kAvx2)) return Isa::kAvx2;
    return Isa::kScalar;
  }();
  return best;
}

const KernelTable& GetKernelTable(Isa isa) {
  if (!IsaAvailable(isa)) {
    // Running the table anyway would execute instructions this CPU lacks.
    std::fprintf(stderr, "ferry::cpu: kernels for %s are not available on this CPU/build\n",
                 IsaName(isa));
    std::abort();
  }
  switch (isa) {
#ifdef FERRY_CPU_HAVE_AVX512
    case Isa::kAvx512:
      return Avx512KernelTable();
#endif
#ifdef FERRY_CPU_HAVE_AVX2
    case Isa::kAvx2:
      return Avx2KernelTable();
#endif
    default:
      return ScalarKernelTable();
  }
}

}  // namespace ferry::cpu
