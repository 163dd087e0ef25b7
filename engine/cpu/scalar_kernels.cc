// Portable kernels: the fallback for CPUs without AVX2 and for FERRY_PORTABLE
// builds, and the plain statement of what every SIMD level computes.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/cpu/kernel_table.h"
#include "engine/formats/dtype.h"
#include "engine/formats/kquants.h"

namespace ferry::cpu {
namespace {

struct F32Weights {
  static float At(const void* row, int64_t k) { return static_cast<const float*>(row)[k]; }
};
struct F16Weights {
  static float At(const void* row, int64_t k) {
    return Fp16ToFloat(static_cast<const uint16_t*>(row)[k]);
  }
};
struct Bf16Weights {
  static float At(const void* row, int64_t k) {
    return Bf16ToFloat(static_cast<const uint16_t*>(row)[k]);
  }
};

template <class W>
void GemvTyped(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
               float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const void* row = static_cast<const char*>(w) + r * row_bytes;
    // Four partial sums keep the dependency chain short.
    float s[4] = {0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 4 <= cols; k += 4) {
      for (int j = 0; j < 4; ++j) s[j] += W::At(row, k + j) * x[k + j];
    }
    for (; k < cols; ++k) s[0] += W::At(row, k) * x[k];
    y[r] = (s[0] + s[1]) + (s[2] + s[3]);
  }
}

float Q8Scale(const uint8_t* block) {
  uint16_t bits;
  std::memcpy(&bits, block, sizeof bits);
  return Fp16ToFloat(bits);
}

void GemvQ8(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
            float* y) {
  const int64_t blocks = cols / kQ8_0BlockValues;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* block = static_cast<const uint8_t*>(w) + r * row_bytes;
    float sum = 0.0f;
    for (int64_t b = 0; b < blocks; ++b, block += kQ8_0BlockBytes) {
      const int8_t* q = reinterpret_cast<const int8_t*>(block + 2);
      const float* xb = x + b * kQ8_0BlockValues;
      float s = 0.0f;
      for (int i = 0; i < kQ8_0BlockValues; ++i) s += static_cast<float>(q[i]) * xb[i];
      sum += s * Q8Scale(block);
    }
    y[r] = sum;
  }
}

// Q4_0, Q5_0 and the k-quants: each block decoded by the plain decoder, then
// dotted.
template <void (*kDecode)(const uint8_t*, float*), int kValues, int kBlockBytes>
void GemvBlocks(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
                float* y) {
  const int64_t blocks = cols / kValues;
  float values[kValues];
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* block = static_cast<const uint8_t*>(w) + r * row_bytes;
    float sum = 0.0f;
    for (int64_t b = 0; b < blocks; ++b, block += kBlockBytes) {
      kDecode(block, values);
      const float* xb = x + b * kValues;
      float s[4] = {0, 0, 0, 0};
      for (int i = 0; i < kValues; i += 4) {
        for (int j = 0; j < 4; ++j) s[j] += values[i + j] * xb[i + j];
      }
      sum += (s[0] + s[1]) + (s[2] + s[3]);
    }
    y[r] = sum;
  }
}

template <void (*kDecode)(const uint8_t*, float*), int kValues, int kBlockBytes>
void ToF32Blocks(const void* src, int64_t n, float* out) {
  const uint8_t* block = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / kValues; ++b) kDecode(block + b * kBlockBytes, out + b * kValues);
}

template <class W>
void ToF32Typed(const void* src, int64_t n, float* out) {
  for (int64_t k = 0; k < n; ++k) out[k] = W::At(src, k);
}

void ToF32Q8(const void* src, int64_t n, float* out) {
  const uint8_t* block = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / kQ8_0BlockValues; ++b, block += kQ8_0BlockBytes) {
    const float scale = Q8Scale(block);
    const int8_t* q = reinterpret_cast<const int8_t*>(block + 2);
    for (int i = 0; i < kQ8_0BlockValues; ++i) out[b * kQ8_0BlockValues + i] = q[i] * scale;
  }
}

float Dot(const float* a, const float* b, int64_t n) {
  float s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) s[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void Axpy(float a, const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  const float mean_square = Dot(x, x, n) / static_cast<float>(n);
  const float scale = 1.0f / std::sqrt(mean_square + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

constexpr KernelTable kScalarTable = {
    .isa = Isa::kScalar,
    .gemv = {&GemvTyped<F32Weights>, &GemvTyped<F16Weights>, &GemvTyped<Bf16Weights>, &GemvQ8,
             &GemvBlocks<&DequantizeQ4KBlock, kQKValues, kQ4_KBlockBytes>,
             &GemvBlocks<&DequantizeQ6KBlock, kQKValues, kQ6_KBlockBytes>,
             &GemvBlocks<&DequantizeQ4_0Block, 32, kQ4_0BlockBytes>,
             &GemvBlocks<&DequantizeQ5_0Block, 32, kQ5_0BlockBytes>,
             &GemvBlocks<&DequantizeQ5KBlock, kQKValues, kQ5_KBlockBytes>},
    .gemv_rows = {},
    .to_f32 = {&ToF32Typed<F32Weights>, &ToF32Typed<F16Weights>, &ToF32Typed<Bf16Weights>, &ToF32Q8,
               &ToF32Blocks<&DequantizeQ4KBlock, kQKValues, kQ4_KBlockBytes>,
               &ToF32Blocks<&DequantizeQ6KBlock, kQKValues, kQ6_KBlockBytes>,
               &ToF32Blocks<&DequantizeQ4_0Block, 32, kQ4_0BlockBytes>,
               &ToF32Blocks<&DequantizeQ5_0Block, 32, kQ5_0BlockBytes>,
               &ToF32Blocks<&DequantizeQ5KBlock, kQKValues, kQ5_KBlockBytes>},
    .gemv_rows16 = {&GemvQ8Rows16Plain, &GemvQ4KRows16Plain, &GemvQ6KRows16Plain,
                    &GemvQ5KRows16Plain, &GemvQ40Rows16Plain, &GemvQ50Rows16Plain},
    .pack_panel = nullptr,
    .gemm_panel = nullptr,
    .dot = &Dot,
    .axpy = &Axpy,
    .dot_rows = nullptr,
    .axpy_rows = nullptr,
    .rms_norm = &RmsNorm,
    .softmax = &Softmax,
    .silu_mul = &SiluMul,
};

}  // namespace

const KernelTable& ScalarKernelTable() { return kScalarTable; }

}  // namespace ferry::cpu
