// Internal: the per-SIMD-level kernels behind the public calls in kernels.h.
//
// Each level lives in its own translation unit built with that level's
// compiler flags; only the function pointers below cross the boundary, so no
// code compiled for a wider level runs before the dispatch check. For the same
// reason this header defines no inline functions.
#pragma once

#include <cstdint>

#include "common/thread_pool.h"
#include "engine/cpu/isa.h"
#include "engine/cpu/kernels.h"

namespace ferry::cpu {

// Index into the per-dtype arrays: the weight dtypes kF32 .. kQ5_K of
// engine/formats/dtype.h, 0..8.
inline constexpr int kNumWeightDTypes = 9;
static_assert(static_cast<int>(DType::kI32) == kNumWeightDTypes,
              "every weight dtype needs its kernels in each table");

// y[r] = Σ_k w[r][k] · x[k] for r in [0, rows); rows start `row_bytes` apart.
using GemvFn = void (*)(const void* w, int64_t row_bytes, int64_t rows, int64_t cols,
                        const float* x, float* y);
// x quantized for the 16-row layouts: per block of kQ8Rows16Block values a
// scale d (max |x| / 127), quants q = round(x / d) and their sums.
inline constexpr int64_t kQ8Rows16Block = 32;
struct QuantizedRows {
  const int8_t* q;     // m rows of cols
  const float* d;      // m rows of cols / 32
  const int32_t* s;    // m rows of cols / 32
  const int32_t* s16;  // m rows of cols / 16: sums over 16 values
};
// One row of x; n a multiple of the block. All-zero blocks get d = 0.
// s16 (may be null) gets the sums over each 16 values.
void QuantizeActivationRow(const float* x, int64_t n, int8_t* q, float* d, int32_t* s,
                           int32_t* s16);
// y[i][16g + l] for groups g in [0, groups) of a matrix in one 16-row layout
// (`w` at its first group) and x rows i < m (1 <= m <= kGemvRowsMax), rows
// of y ldy apart. Every level computes each row in the same order with fp32
// fused multiply-adds, so results agree bit for bit.
using GemvRows16Fn = void (*)(const void* w, int64_t groups, int64_t cols, QuantizedRows x,
                              int64_t m, float* y, int64_t ldy);
// The 16-row layouts (WeightLayout after kRows), indexed from 0.
inline constexpr int kNumRows16Layouts = 6;
// Bytes of one run (16 blocks) of a 16-row layout: kQ8Rows16 and the rest.
inline constexpr int64_t kQ8Rows16GroupBlockBytes = 544;    // 16 x 34
inline constexpr int64_t kQ4KRows16GroupBlockBytes = 2304;  // 16 x 144
inline constexpr int64_t kQ6KRows16GroupBlockBytes = 3360;  // 16 x 210
inline constexpr int64_t kQ5KRows16GroupBlockBytes = 2816;  // 16 x 176
inline constexpr int64_t kQ40Rows16GroupBlockBytes = 288;   // 16 x 18
inline constexpr int64_t kQ50Rows16GroupBlockBytes = 352;   // 16 x 22
// The plain kernels, the statement of what the SIMD ones compute.
void GemvQ8Rows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                       float* y, int64_t ldy);
void GemvQ4KRows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                        float* y, int64_t ldy);
void GemvQ6KRows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                        float* y, int64_t ldy);
void GemvQ5KRows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                        float* y, int64_t ldy);
void GemvQ40Rows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                        float* y, int64_t ldy);
void GemvQ50Rows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                        float* y, int64_t ldy);
// Each layout's run bytes and the values of one of its blocks, by index.
inline constexpr int64_t kRows16RunBytes[kNumRows16Layouts] = {
    kQ8Rows16GroupBlockBytes,  kQ4KRows16GroupBlockBytes, kQ6KRows16GroupBlockBytes,
    kQ5KRows16GroupBlockBytes, kQ40Rows16GroupBlockBytes, kQ50Rows16GroupBlockBytes};
inline constexpr int64_t kRows16BlockValues[kNumRows16Layouts] = {32, 256, 256, 256, 32, 32};
// The AVX2 kernel of layout L (avx2_rows16.cc, instantiated there for each
// layout), for AVX2 CPUs and AVX-512 ones without VNNI; to be called only
// where AVX2 is available.
template <WeightLayout L>
void GemvRows16Avx2(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                    float* y, int64_t ldy);
// Row `row` of a matrix in a 16-row layout as fp32 (w.cols values).
void DequantizeRows16Row(const WeightMatrix& w, int64_t row, float* out);
// The GemvFn for m rows of x at once, 1 <= m <= kGemvRowsMax (x rows ldx
// apart, y rows ldy apart), each result bit-for-bit the GemvFn's for its row.
// w_cached: these rows of W were just read (by the previous x rows), so the
// kernel skips its prefetches.
inline constexpr int64_t kGemvRowsMax = 4;
using GemvRowsFn = void (*)(const void* w, int64_t row_bytes, int64_t rows, int64_t cols,
                            const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
                            bool w_cached);
// out[0, n) = src[0, n) as fp32; n a multiple of the dtype's block (32 for
// Q8_0, Q4_0 and Q5_0, 256 for the k-quants).
using ToF32Fn = void (*)(const void* src, int64_t n, float* out);
// The GEMM of a level with its own kernels works on panels of x: up to
// kGemmPanelRows rows of x stored k-major ([k][kGemmPanelRows]), rows past m
// zeroed.
inline constexpr int kGemmPanelRows = 32;
// W rows whose accumulators fit in registers at once.
inline constexpr int kGemmWRows = 12;
// Packs x rows [0, m), m <= kGemmPanelRows, of k values each into a panel.
using PackPanelFn = void (*)(const float* x, int64_t ldx, int64_t m, int64_t k, float* panel);
// y[i][j] = Σ_k panel[k][i] · w[j][k] for i < m, j < n; w is fp32, rows ldw apart.
using GemmPanelFn = void (*)(const float* w, int64_t ldw, int64_t n, const float* panel,
                             int64_t k, int64_t m, float* y, int64_t ldy);

struct KernelTable {
  Isa isa;
  GemvFn gemv[kNumWeightDTypes];
  // Null where the level has none (Q4_0, Q5_0 and the k-quants everywhere):
  // one GemvFn call per x row instead.
  GemvRowsFn gemv_rows[kNumWeightDTypes];
  ToF32Fn to_f32[kNumWeightDTypes];
  // By 16-row layout (WeightLayout value - 1).
  GemvRows16Fn gemv_rows16[kNumRows16Layouts];
  // Null where OpenBLAS sgemm is the faster choice for this level.
  PackPanelFn pack_panel;
  GemmPanelFn gemm_panel;
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float a, const float* x, int64_t n, float* y);
  // DotRows and AxpyRows (kernels.h); null: loops over dot and axpy.
  void (*dot_rows)(const float* a, const float* rows, int64_t stride, int64_t count, int64_t n,
                   float scale, float* out);
  void (*axpy_rows)(const float* w, const float* rows, int64_t stride, int64_t count, int64_t n,
                    float* y);
  void (*rms_norm)(const float* x, const float* weight, int64_t n, float eps, float* out);
  void (*softmax)(float* x, int64_t n);
  void (*silu_mul)(const float* gate, const float* up, int64_t n, float* out);
};

// The kernels of one level; `isa` must be available (IsaAvailable).
const KernelTable& GetKernelTable(Isa isa);

// Defined by each level's translation unit (the SIMD ones only when built).
const KernelTable& ScalarKernelTable();
const KernelTable& Avx2KernelTable();
const KernelTable& Avx512KernelTable();
void Avx512PackGemmPanel(const float* x, int64_t ldx, int64_t m, int64_t k, float* panel);
void Avx512GemmPanel(const float* w, int64_t ldw, int64_t n, const float* panel, int64_t k,
                     int64_t m, float* y, int64_t ldy);

// MatMul (kernels.h) on a chosen level, for tests and benchmarks.
void MatMulWithIsa(Isa isa, const WeightMatrix& w, const float* x, int64_t m, float* y,
                   const float* bias, ThreadPool& pool, bool batch_invariant = false);
void MatMulManyWithIsa(Isa isa, const MatMulOut* outs, int count, const float* x, int64_t m,
                       ThreadPool& pool, bool batch_invariant = false);

}  // namespace ferry::cpu
