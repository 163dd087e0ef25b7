// The vector operations of kernels.h, forwarded to the best level's table.
#include "engine/cpu/kernels.h"

#include <cstdio>
#include <cstdlib>

#include "engine/cpu/kernel_table.h"

namespace ferry::cpu {
namespace {

const KernelTable& Best() {
  static const KernelTable& table = GetKernelTable(BestIsa());
  return table;
}

}  // namespace

void DequantizeRow(const WeightMatrix& w, int64_t row, float* out) {
  const DTypeBlocking b = BlockingOf(w.dtype);
  if (static_cast<int>(w.dtype) >= kNumWeightDTypes || w.cols % b.values != 0) {
    std::fprintf(stderr, "ferry::cpu::DequantizeRow: unsupported dtype %d with %lld cols\n",
                 static_cast<int>(w.dtype), static_cast<long long>(w.cols));
    std::abort();
  }
  if (w.layout != WeightLayout::kRows) {
    DequantizeRows16Row(w, row, out);
    return;
  }
  const int64_t row_bytes = w.cols / b.values * b.bytes;
  Best().to_f32[static_cast<int>(w.dtype)](static_cast<const char*>(w.data) + row * row_bytes,
                                           w.cols, out);
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  Best().rms_norm(x, weight, n, eps, out);
}

void Softmax(float* x, int64_t n) { Best().softmax(x, n); }

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  Best().silu_mul(gate, up, n, out);
}

float Dot(const float* a, const float* b, int64_t n) { return Best().dot(a, b, n); }

void Axpy(float a, const float* x, int64_t n, float* y) { Best().axpy(a, x, n, y); }

void DotRows(const float* a, const float* rows, int64_t stride, int64_t count, int64_t n,
             float scale, float* out) {
  const KernelTable& t = Best();
  if (t.dot_rows != nullptr) {
    t.dot_rows(a, rows, stride, count, n, scale, out);
    return;
  }
  for (int64_t i = 0; i < count; ++i) out[i] = t.dot(a, rows + i * stride, n) * scale;
}

void AxpyRows(const float* w, const float* rows, int64_t stride, int64_t count, int64_t n,
              float* y) {
  const KernelTable& t = Best();
  if (t.axpy_rows != nullptr) {
    t.axpy_rows(w, rows, stride, count, n, y);
    return;
  }
  for (int64_t i = 0; i < count; ++i) t.axpy(w[i], rows + i * stride, n, y);
}

}  // namespace ferry::cpu
