// Internal: OpenBLAS sgemm as used by MatMul, pinned to one thread per call.
#pragma once

#include <cstdint>

namespace ferry::cpu {

// y[i][ldy-strided j] = Σ_k x[i][k] · w[j][k] for i < m, j < n, in the calling
// thread only. The first call switches OpenBLAS's own threading off: MatMul
// runs one sgemm per pool thread on disjoint rows of W, and OpenBLAS threads
// on top of the pool would oversubscribe the cores.
void SgemmSingleThread(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t m,
                       int64_t n, int64_t k, float* y, int64_t ldy);

}  // namespace ferry::cpu
