// The element-wise and row-wise kernels around the GEMMs: embedding gather,
// fused residual add + RMSNorm, RoPE fused with the KV-cache write, SwiGLU.
#include "cuda/api.h"
#include "cuda/kernels/common.cuh"

namespace ferry::cuda {
namespace {

template <typename T>
__global__ void EmbeddingKernel(const T* __restrict__ table, const int32_t* __restrict__ tokens, int hidden,
                                float* __restrict__ residual) {
  const int t = blockIdx.x;
  const T* row = table + int64_t{tokens[t]} * hidden;
  float* out = residual + int64_t{t} * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[i] = ToF(row[i]);
}

template <typename T>
__global__ void AddRmsNormKernel(float* __restrict__ residual, const T* __restrict__ delta,
                                 const float* __restrict__ weight, const int32_t* __restrict__ rows, int hidden,
                                 float eps, T* __restrict__ out) {
  __shared__ float scratch[32];
  const int r = rows != nullptr ? rows[blockIdx.x] : blockIdx.x;
  float* x = residual + int64_t{r} * hidden;
  const T* d = delta != nullptr ? delta + int64_t{r} * hidden : nullptr;
  float ss = 0;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = x[i];
    if (d != nullptr) {
      v += ToF(d[i]);
      x[i] = v;
    }
    ss += v * v;
  }
  ss = BlockSum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / hidden + eps);
  T* o = out + int64_t{blockIdx.x} * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = FromF<T>(x[i] * inv * weight[i]);
}

template <typename T>
__global__ void AddResidualKernel(float* __restrict__ residual, const T* __restrict__ delta, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    residual[i] += ToF(delta[i]);
  }
}

// One block per token: each thread takes RoPE pairs, computes the angle once
// (in double, as the CPU backend does) and applies it to every head.
template <typename T>
__global__ void RopeKvKernel(RopeKvParams p) {
  const int t = blockIdx.x;
  const int hd = p.kv.head_dim;
  const int q_dim = p.num_heads * hd;
  const int kv_dim = p.kv.num_kv_heads * hd;
  const T* row = static_cast<const T*>(p.qkv) + int64_t{t} * (q_dim + 2 * kv_dim);
  T* q_out = static_cast<T*>(p.q_out) + int64_t{t} * q_dim;
  const int pos = p.positions[t];
  const int seq = p.token_seq[t];
  const int block = p.block_indices[p.block_indptr[seq] + pos / p.kv.block_size];
  const int slot = pos % p.kv.block_size;
  T* base = static_cast<T*>(p.kv.base) + int64_t{block} * p.kv.block_elems();
  T* k_out = base + p.kv.k_offset(p.layer) + int64_t{slot} * kv_dim;
  T* v_out = base + p.kv.v_offset(p.layer) + int64_t{slot} * kv_dim;
  const int pairs = p.rope_dim / 2;
  const int heads = p.num_heads + p.kv.num_kv_heads;
  // Dimensions beyond rope_dim pass through.
  for (int i = threadIdx.x; i < heads * (hd - p.rope_dim); i += blockDim.x) {
    int h = i / (hd - p.rope_dim), d = p.rope_dim + i % (hd - p.rope_dim);
    if (h < p.num_heads) q_out[h * hd + d] = row[h * hd + d];
    else k_out[(h - p.num_heads) * hd + d] = row[q_dim + (h - p.num_heads) * hd + d];
  }
  for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
    double s, c;
    sincos(double(pos) * double(p.inv_freq[i]), &s, &c);
    const float cf = static_cast<float>(c), sf = static_cast<float>(s);
    const int a = p.interleaved ? 2 * i : i;
    const int b = p.interleaved ? 2 * i + 1 : i + pairs;
    for (int h = 0; h < heads; ++h) {
      const T* src = h < p.num_heads ? row + h * hd : row + q_dim + (h - p.num_heads) * hd;
      T* dst = h < p.num_heads ? q_out + h * hd : k_out + (h - p.num_heads) * hd;
      float x0 = ToF(src[a]), x1 = ToF(src[b]);
      dst[a] = FromF<T>(x0 * cf - x1 * sf);
      dst[b] = FromF<T>(x0 * sf + x1 * cf);
    }
  }
  const T* v = row + q_dim + kv_dim;
  for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) v_out[i] = v[i];
}

__device__ __forceinline__ float Silu(float x) { return x / (1.0f + expf(-x)); }

template <typename T>
__global__ void SwiGluKernel(const T* __restrict__ gate_up, int ff, T* __restrict__ out) {
  const int t = blockIdx.y;
  const T* g = gate_up + int64_t{t} * 2 * ff;
  const T* u = g + ff;
  T* o = out + int64_t{t} * ff;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < ff; i += gridDim.x * blockDim.x) {
    o[i] = FromF<T>(Silu(ToF(g[i])) * ToF(u[i]));
  }
}

int ThreadsFor(int n) { return n >= 1024 ? 256 : n >= 256 ? 128 : 64; }

}  // namespace

Error LaunchEmbedding(DType dtype, const void* embedding, const int32_t* tokens, int n, int hidden,
                      float* residual, void* stream) {
  if (n == 0) return {};
  return FERRY_DISPATCH_DTYPE(dtype, T, [&] {
    EmbeddingKernel<T><<<n, ThreadsFor(hidden), 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(embedding), tokens, hidden, residual);
    return LaunchResult();
  });
}

Error LaunchAddRmsNorm(DType dtype, float* residual, const void* delta, const float* weight, const int32_t* rows,
                       int n, int hidden, float eps, void* out, void* stream) {
  if (n == 0) return {};
  return FERRY_DISPATCH_DTYPE(dtype, T, [&] {
    AddRmsNormKernel<T><<<n, ThreadsFor(hidden), 0, static_cast<cudaStream_t>(stream)>>>(
        residual, static_cast<const T*>(delta), weight, rows, hidden, eps, static_cast<T*>(out));
    return LaunchResult();
  });
}

Error LaunchAddResidual(DType dtype, float* residual, const void* delta, int64_t count, void* stream) {
  if (count == 0) return {};
  return FERRY_DISPATCH_DTYPE(dtype, T, [&] {
    int blocks = static_cast<int>(std::min<int64_t>((count + 255) / 256, 4096));
    AddResidualKernel<T><<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(
        residual, static_cast<const T*>(delta), count);
    return LaunchResult();
  });
}

Error LaunchRopeKvWrite(DType dtype, const RopeKvParams& p, void* stream) {
  if (p.num_tokens == 0) return {};
  if (p.rope_dim % 2 != 0 || p.rope_dim > p.kv.head_dim) return "bad rope_dim";
  return FERRY_DISPATCH_DTYPE(dtype, T, [&] {
    RopeKvKernel<T><<<p.num_tokens, 64, 0, static_cast<cudaStream_t>(stream)>>>(p);
    return LaunchResult();
  });
}

Error LaunchSwiGlu(DType dtype, const void* gate_up, int n, int ff, void* out, void* stream) {
  if (n == 0) return {};
  return FERRY_DISPATCH_DTYPE(dtype, T, [&] {
    dim3 grid((ff + 255) / 256, n);
    SwiGluKernel<T><<<grid, 256, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<const T*>(gate_up), ff,
                                                                           static_cast<T*>(out));
    return LaunchResult();
  });
}

}  // namespace ferry::cuda
