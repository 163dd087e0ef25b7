// CPU compute kernels for the forward pass: weight matmuls in every stored
// dtype and the small fp32 vector operations around them.
//
// Every call picks the widest SIMD level the CPU supports (AVX-512, AVX2 or a
// portable scalar path) at first use; results agree across levels to fp32
// rounding. Accumulation is in fp32 (in int32 within a block for the
// integer Q8_0 kernels).
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
//
// Matrices of the integer-kernel dtypes (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K,
// Q6_K) may instead be stored in a 16-row layout (PackRows16): rows in
// groups of 16, laid out for integer dot products. MatMul then multiplies
// them by x quantized to int8 in blocks of 32 (d = max|x| / 127 per block,
// as llama.cpp does), an exact integer sum per block scaled once, on every
// path (GEMV and GEMM, any m), so each row's result is the same whatever
// the batch. Against unquantized x a dot product errs by about 0.2%.
//
// Each group of 16 rows becomes cols/block runs, one per block column, of
// the same size as the 16 blocks (so packing works in place). Within a run
// the 16 rows' pieces sit side by side so that lane r of a vector is row r:
// - kQ8Rows16, 544 bytes: the rows' fp16 scales, then for each 4-value
//   chunk c the rows' quants 4c..4c+3 plus 128 as unsigned bytes (row r at
//   32 + 64c + 4r).
// - kQ4KRows16, 2304 bytes: the rows' d, their dmin (fp16), byte i of their
//   12 packed (scale, min) bytes at 64 + 16i + r, then for each 32-byte
//   quant chunk p and each 4-byte word c of it the rows' words (row r at
//   256 + 512p + 64c + 4r).
// - kQ5KRows16, 2816 bytes: kQ4KRows16's 2304, then the rows' fifth-bit
//   words (word c of the 32 bytes at 2304 + 64c + 4r).
// - kQ6KRows16, 3360 bytes: the rows' d (fp16), their 16 scales (scale s of
//   row r at 32 + 16s + r), then their ql words (half h, word w of the
//   half's 64 bytes: 288 + 1024h + 64w + 4r) and qh words (half h, word w
//   of its 32 bytes: 2336 + 512h + 64w + 4r).
// - kQ40Rows16, 288 bytes: the rows' d (fp16), then word c of their 16
//   quant bytes at 32 + 64c + 4r.
// - kQ50Rows16, 352 bytes: the rows' d, their fifth-bit words at 32 + 4r,
//   then word c of their quant bytes at 96 + 64c + 4r.
enum class WeightLayout : uint8_t {
  kRows,
  kQ8Rows16,
  kQ4KRows16,
  kQ6KRows16,
  kQ5KRows16,
  kQ40Rows16,
  kQ50Rows16,
};

struct WeightMatrix {
  DType dtype;
  int64_t rows;
  int64_t cols;
  const void* data;
  WeightLayout layout = WeightLayout::kRows;
};

// True when this CPU has fast kernels for the 16-row layouts (AVX-512 VNNI,
// or AVX2 at about half the rate); the layouts work everywhere, through
// plain loops elsewhere.
bool Rows16Fast();
// The 16-row layout w (in rows) can be packed into: its dtype has one, its
// rows are a multiple of 16 and its cols whole blocks. kRows where not.
WeightLayout Rows16LayoutOf(const WeightMatrix& w);
// Rewrites the bytes at `data` (rows x cols of the layout's dtype, for which
// Rows16LayoutOf gave `layout`) in place into that layout; the size does not
// change.
void PackRows16(WeightLayout layout, void* data, int64_t rows, int64_t cols);

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

// Converts row `row` of `w` to fp32 (embedding lookups, uploads to a GPU),
// in either layout. `out` holds w.cols.
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
