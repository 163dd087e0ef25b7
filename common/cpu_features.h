// Which SIMD extensions this CPU has, read once at start (runtime dispatch).
#pragma once

#include <string>

namespace ferry {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512bf16 = false;
  bool avx512vnni = false;

  // Space-separated names of the features present, e.g. "avx2 fma f16c avx512f".
  std::string ToString() const;
};

// Features of the running CPU, honouring FERRY_PORTABLE builds (which report
// none) and the FERRY_CPU_FEATURES environment override: `baseline` (no
// SIMD) or `avx2` (no AVX-512).
const CpuFeatures& GetCpuFeatures();

}  // namespace ferry
