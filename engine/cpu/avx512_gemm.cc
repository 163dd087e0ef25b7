// AVX-512 fp32 GEMM micro-kernels for prefill: y[i][j] = Σ_k x[i][k]·w[j][k].
//
// x is small (the batch) and w is large, so x is repacked once per call into
// panels of 32 rows stored k-major ([k][32]); every thread then streams its
// own weight rows in their natural row-major layout. Per k the kernel loads
// two vectors of the panel and broadcasts one weight per row of W, feeding
// 24 FMAs from 12 W rows x 32 x rows of accumulators held in registers.
//
// Built with the AVX-512 flags; same rules as avx512_kernels.cc (anonymous
// namespace, no std templates).
#include <immintrin.h>

#include <cstdint>

#include "engine/cpu/kernel_table.h"

namespace ferry::cpu {
namespace {

constexpr int kPanelRows = kGemmPanelRows;  // x rows per panel (two vectors)
constexpr int kMaxWRows = kGemmWRows;       // W rows per kernel call

template <int kRows>
void PanelKernel(const float* w, int64_t ldw, const float* panel, int64_t k, int64_t m, float* y,
                 int64_t ldy) {
  __m512 acc[kRows][2];
#pragma GCC unroll 12
  for (int r = 0; r < kRows; ++r) {
    acc[r][0] = _mm512_setzero_ps();
    acc[r][1] = _mm512_setzero_ps();
  }
  const float* wr[kRows];
#pragma GCC unroll 12
  for (int r = 0; r < kRows; ++r) wr[r] = w + r * ldw;
  for (int64_t kk = 0; kk < k; ++kk) {
    const __m512 b0 = _mm512_loadu_ps(panel + kk * kPanelRows);
    const __m512 b1 = _mm512_loadu_ps(panel + kk * kPanelRows + 16);
#pragma GCC unroll 12
    for (int r = 0; r < kRows; ++r) {
      const __m512 a = _mm512_set1_ps(wr[r][kk]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  // acc[r] holds y[0..31][r]: transpose through a small buffer on the stack.
  alignas(64) float out[kRows][kPanelRows];
#pragma GCC unroll 12
  for (int r = 0; r < kRows; ++r) {
    _mm512_store_ps(out[r], acc[r][0]);
    _mm512_store_ps(out[r] + 16, acc[r][1]);
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int r = 0; r < kRows; ++r) y[i * ldy + r] = out[r][i];
  }
}

}  // namespace

void Avx512PackGemmPanel(const float* x, int64_t ldx, int64_t m, int64_t k, float* panel) {
  // Rows past m are zero so the kernel may run the full width.
  for (int64_t kk = 0; kk < k; ++kk) {
    float* dst = panel + kk * kPanelRows;
    for (int64_t i = 0; i < m; ++i) dst[i] = x[i * ldx + kk];
    for (int64_t i = m; i < kPanelRows; ++i) dst[i] = 0.0f;
  }
}

void Avx512GemmPanel(const float* w, int64_t ldw, int64_t n, const float* panel, int64_t k,
                     int64_t m, float* y, int64_t ldy) {
  for (int64_t j = 0; j < n; j += kMaxWRows) {
    const float* wj = w + j * ldw;
    float* yj = y + j;
    switch (n - j >= kMaxWRows ? kMaxWRows : n - j) {
      case 12: PanelKernel<12>(wj, ldw, panel, k, m, yj, ldy); break;
      case 11: PanelKernel<11>(wj, ldw, panel, k, m, yj, ldy); break;
      case 10: PanelKernel<10>(wj, ldw, panel, k, m, yj, ldy); break;
      case 9: PanelKernel<9>(wj, ldw, panel, k, m, yj, ldy); break;
      case 8: PanelKernel<8>(wj, ldw, panel, k, m, yj, ldy); break;
      case 7: PanelKernel<7>(wj, ldw, panel, k, m, yj, ldy); break;
      case 6: PanelKernel<6>(wj, ldw, panel, k, m, yj, ldy); break;
      case 5: PanelKernel<5>(wj, ldw, panel, k, m, yj, ldy); break;
      case 4: PanelKernel<4>(wj, ldw, panel, k, m, yj, ldy); break;
      case 3: PanelKernel<3>(wj, ldw, panel, k, m, yj, ldy); break;
      case 2: PanelKernel<2>(wj, ldw, panel, k, m, yj, ldy); break;
      default: PanelKernel<1>(wj, ldw, panel, k, m, yj, ldy); break;
    }
  }
}

}  // namespace ferry::cpu
