// CPU compute kernels for the forward pass: weight matmuls in every stored
// dtype and the small fp32 vector operations around them.
//
// Every call picks the widest SIMD level the CPU supports (AVX-512, AVX2 or a
// portable scalar path) at first use; results agree across levels to fp32
// rounding. All accumulation is in fp32.
#pragma once

#include <cstdint>

#include "common/thread_pool.h"
#include "engine/formats/dtype.h"

namespace ferry::cpu {

// A weight matrix as stored in a model file: row-major [rows, cols], rows =
// output features. For Q8_0 each row is cols/32 blocks of 34 bytes, so cols
// must be a multiple of 32; Q4_0 and Q5_0 take blocks of 32 too, the
// k-quants blocks of 256 (engine/formats/kquants.h has the layouts).
// Supported dtypes: the weight dtypes of engine/formats/dtype.h.
struct WeightMatrix {
  DType dtype;
  int64_t rows;
  int64_t cols;
  const void* data;
};

// y[m, rows] = x[m, cols] · Wᵀ (+ bias[rows] if non-null); x and y are fp32,
// row-major and must not overlap. m == 1 streams W once across the pool's
// threads (bandwidth-bound); larger m runs a cache-blocked GEMM.
// An unsupported dtype or a block-quantized matrix whose cols is not a
// multiple of its block is a programming error and aborts.
//
// With `batch_invariant`, every row of y is computed by the same per-row
// kernel whatever m is, so a token's result never depends on what else is in
// the batch (the serving engine's determinism guarantee); large m then runs
// a cache-blocked GEMV instead of the faster GEMM.
void MatMul(const WeightMatrix& w, const float* x, int64_t m, float* y, const float* bias,
            ThreadPool& pool, bool batch_invariant = false);

// One product of MatMulMany: y[m, w.rows] = x · wᵀ (+ bias).
struct MatMulOut {
  const WeightMatrix* w;
  float* y;
  const float* bias;
};

// MatMul of one x against several matrices of the same cols (Q, K and V;
// gate and up) in one pass of the pool: the rows of every matrix are shared
// out together, so small matrices do not each pay for a round of the pool
// and the threads finish together. Each y is bit-for-bit what MatMul gives.
void MatMulMany(const MatMulOut* outs, int count, const float* x, int64_t m, ThreadPool& pool,
                bool batch_invariant = false);

// Converts row `row` of `w` to fp32 (embedding lookups). `out` holds w.cols.
void DequantizeRow(const WeightMatrix& w, int64_t row, float* out);

// out = x / sqrt(mean(x²) + eps) * weight. `out` may alias `x`.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// In-place softmax over n values; -inf entries get probability 0.
void Softmax(float* x, int64_t n);

// out[i] = silu(gate[i]) * up[i]. `out` may alias `gate` or `up`.
void SiluMul(const float* gate, const float* up, int64_t n, float* out);

float Dot(const float* a, const float* b, int64_t n);

// y += a * x
void Axpy(float a, const float* x, int64_t n, float* y);

// out[i] = Dot(a, rows + i * stride, n) * scale for i < count: the keys of
// one KV block against a query, bit-for-bit count Dot calls.
void DotRows(const float* a, const float* rows, int64_t stride, int64_t count, int64_t n,
             float scale, float* out);

// y += Σ_i w[i] * (rows + i * stride) for i < count, in order of i:
// bit-for-bit count Axpy calls.
void AxpyRows(const float* w, const float* rows, int64_t stride, int64_t count, int64_t n,
              float* y);

}  // namespace ferry::cpu
