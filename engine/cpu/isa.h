// SIMD levels the CPU kernels are compiled for, and which one this CPU runs.
#pragma once

namespace ferry::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };

const char* IsaName(Isa isa);

// True when the level was compiled in (not a FERRY_PORTABLE build) and the
// running CPU has every extension it uses.
bool IsaAvailable(Isa isa);

// The widest available level; chosen once from GetCpuFeatures().
Isa BestIsa();

}  // namespace ferry::cpu
