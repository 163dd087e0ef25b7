// GEMMs with few rows (decode steps: m <= 8): y[m, n] = x[m, k] · w[n, k]ᵀ
// streamed at memory bandwidth. A warp owns one output feature: its lanes
// read the weight row in 16-byte pieces, several in flight, and multiply
// each piece into all m rows of x (x is small and stays in L1/L2); one warp
// reduction at the end. cuBLASLt's kernels for these shapes reach a fraction
// of the bandwidth, and a decode step is nothing but such GEMMs.
#include "cuda/api.h"
#include "cuda/kernels/common.cuh"

namespace ferry::cuda {
namespace {

constexpr int kWarpsPerCta = 4;
constexpr int kUnroll = 8;

template <typename T, typename TOut, int M>
__global__ void __launch_bounds__(kWarpsPerCta * 32)
    SkinnyGemmKernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                     TOut* __restrict__ y, int n, int k) {
  constexpr int VEC = kVec<T>;
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kWarpsPerCta + threadIdx.x / 32;
  if (row >= n) return;
  const T* wr = w + int64_t{row} * k;
  float acc[M];
#pragma unroll
  for (int i = 0; i < M; ++i) acc[i] = 0.0f;
  constexpr int kStep = 32 * VEC;
  int c0 = lane * VEC;
  // Main loop: kUnroll weight vectors in flight per lane.
  for (; c0 + (kUnroll - 1) * kStep < k; c0 += kUnroll * kStep) {
    float wv[kUnroll][VEC];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) LoadVec(wr + c0 + u * kStep, wv[u]);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int i = 0; i < M; ++i) {
        float xv[VEC];
        LoadVec(x + int64_t{i} * k + c0 + u * kStep, xv);
#pragma unroll
        for (int v = 0; v < VEC; ++v) acc[i] = fmaf(wv[u][v], xv[v], acc[i]);
      }
    }
  }
  for (; c0 < k; c0 += kStep) {
    float wv[VEC];
    LoadVec(wr + c0, wv);
#pragma unroll
    for (int i = 0; i < M; ++i) {
      float xv[VEC];
      LoadVec(x + int64_t{i} * k + c0, xv);
#pragma unroll
      for (int v = 0; v < VEC; ++v) acc[i] = fmaf(wv[v], xv[v], acc[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < M; ++i) acc[i] = WarpSum(acc[i]);
  if (lane == 0) {
    const float b = bias != nullptr ? ToF(bias[row]) : 0.0f;
#pragma unroll
    for (int i = 0; i < M; ++i) y[int64_t{i} * n + row] = FromF<TOut>(acc[i] + b);
  }
}

template <typename T, typename TOut>
Error Launch(const void* x, const void* w, const void* bias, void* y, int m, int n, int k, cudaStream_t stream) {
  dim3 grid((n + kWarpsPerCta - 1) / kWarpsPerCta);
  auto go = [&](auto kernel) {
    kernel<<<grid, kWarpsPerCta * 32, 0, stream>>>(static_cast<const T*>(x), static_cast<const T*>(w),
                                                    static_cast<const T*>(bias), static_cast<TOut*>(y), n, k);
    return LaunchResult();
  };
  switch (m) {
    case 1: return go(SkinnyGemmKernel<T, TOut, 1>);
    case 2: return go(SkinnyGemmKernel<T, TOut, 2>);
    case 3: return go(SkinnyGemmKernel<T, TOut, 3>);
    case 4: return go(SkinnyGemmKernel<T, TOut, 4>);
    case 5: return go(SkinnyGemmKernel<T, TOut, 5>);
    case 6: return go(SkinnyGemmKernel<T, TOut, 6>);
    case 7: return go(SkinnyGemmKernel<T, TOut, 7>);
    case 8: return go(SkinnyGemmKernel<T, TOut, 8>);
  }
  return "skinny GEMM takes 1..8 rows";
}

}  // namespace

bool SkinnyGemmApplies(DType dtype, int64_t m, int64_t k) {
  return m >= 1 && m <= kSkinnyGemmMaxRows && k % kVecElems(dtype) == 0;
}

Error LaunchSkinnyGemm(DType dtype, DType out_dtype, const void* x, const void* w, const void* bias, void* y,
                       int64_t m, int64_t n, int64_t k, void* stream) {
  if (!SkinnyGemmApplies(dtype, m, k)) return "skinny GEMM does not apply to this shape";
  if (out_dtype == DType::kF32 && bias != nullptr && dtype != DType::kF32) return "no fp32 output with a bias";
  auto s = static_cast<cudaStream_t>(stream);
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  switch (dtype) {
    case DType::kF32: return Launch<float, float>(x, w, bias, y, mi, ni, ki, s);
    case DType::kF16:
      return out_dtype == DType::kF32 ? Launch<__half, float>(x, w, bias, y, mi, ni, ki, s)
                                      : Launch<__half, __half>(x, w, bias, y, mi, ni, ki, s);
    case DType::kBF16:
      return out_dtype == DType::kF32 ? Launch<__nv_bfloat16, float>(x, w, bias, y, mi, ni, ki, s)
                                      : Launch<__nv_bfloat16, __nv_bfloat16>(x, w, bias, y, mi, ni, ki, s);
  }
  return "unknown dtype";
}

}  // namespace ferry::cuda
