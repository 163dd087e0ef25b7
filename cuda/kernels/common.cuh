// Shared device helpers: element conversion, 16-byte vector access, block
// reductions and the macros that turn runtime choices into template
// constants.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda/api.h"

namespace ferry::cuda {

inline Error ErrorOf(cudaError_t e) { return e == cudaSuccess ? Error() : Error(cudaGetErrorString(e)); }
inline Error LaunchResult() { return ErrorOf(cudaGetLastError()); }

template <typename T> __device__ __forceinline__ float ToF(T v);
template <> __device__ __forceinline__ float ToF<float>(float v) { return v; }
template <> __device__ __forceinline__ float ToF<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float ToF<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T FromF(float v);
template <> __device__ __forceinline__ float FromF<float>(float v) { return v; }
template <> __device__ __forceinline__ __half FromF<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 FromF<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Elements of T in one 16-byte load.
template <typename T> constexpr int kVec = 16 / sizeof(T);

// Loads kVec<T> elements (16-byte aligned) as floats.
template <typename T>
__device__ __forceinline__ void LoadVec(const T* src, float* dst) {
  uint4 raw = *reinterpret_cast<const uint4*>(src);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) dst[i] = ToF(e[i]);
}

template <typename T>
__device__ __forceinline__ void StoreVec(T* dst, const float* src) {
  uint4 raw;
  T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) e[i] = FromF<T>(src[i]);
  *reinterpret_cast<uint4*>(dst) = raw;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; every thread gets the result. `scratch` holds 32 floats.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < warps ? scratch[lane] : 0.0f;
  return WarpSum(r);
}
__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < warps ? scratch[lane] : -INFINITY;
  return WarpMax(r);
}

}  // namespace ferry::cuda

// Runs `...` with `T` bound to the element type of `dtype`.
#define FERRY_DISPATCH_DTYPE(dtype, T, ...)                       \
  [&]() -> ::ferry::cuda::Error {                                 \
    switch (dtype) {                                              \
      case ::ferry::cuda::DType::kF32: {                          \
        using T = float;                                          \
        return __VA_ARGS__();                                     \
      }                                                           \
      case ::ferry::cuda::DType::kF16: {                          \
        using T = __half;                                         \
        return __VA_ARGS__();                                     \
      }                                                           \
      case ::ferry::cuda::DType::kBF16: {                         \
        using T = __nv_bfloat16;                                  \
        return __VA_ARGS__();                                     \
      }                                                           \
    }                                                             \
    return ::ferry::cuda::Error("unknown dtype");                 \
  }()

// Runs `...` with the constant `HD` equal to `head_dim`; unsupported sizes are
// an error.
#define FERRY_DISPATCH_HEAD_DIM(head_dim, HD, ...)                              \
  [&]() -> ::ferry::cuda::Error {                                               \
    switch (head_dim) {                                                         \
      case 8: { constexpr int HD = 8; return __VA_ARGS__(); }                   \
      case 16: { constexpr int HD = 16; return __VA_ARGS__(); }                 \
      case 32: { constexpr int HD = 32; return __VA_ARGS__(); }                 \
      case 64: { constexpr int HD = 64; return __VA_ARGS__(); }                 \
      case 128: { constexpr int HD = 128; return __VA_ARGS__(); }               \
    }                                                                           \
    return ::ferry::cuda::Error("unsupported head_dim " + std::to_string(head_dim) + \
                                " (8, 16, 32, 64, 128)");                       \
  }()
