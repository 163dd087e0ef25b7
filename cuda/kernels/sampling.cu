// Sampling on the device: greedy argmax and temperature / top-k / top-p
// sampling, one block per row. Top-k and top-p are thresholds found by
// bisection over the row's values (no sort): the k-th largest logit, and the
// largest probability p* such that the tokens with probability >= p* hold at
// least top-p of the mass. Ties at a threshold are all kept.
#include "cuda/api.h"
#include "cuda/kernels/common.cuh"

namespace ferry::cuda {
namespace {

constexpr int kThreads = 256;

__device__ void BlockArgmax(float v, int i, float* sv, int* si, float* best_v, int* best_i) {
  // Lowest index among equal maxima, like the CPU sampler.
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, v, o);
    int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sv[warp] = v, si[warp] = i;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? sv[lane] : -INFINITY;
    i = lane < kThreads / 32 ? si[lane] : INT_MAX;
    for (int o = 16; o > 0; o >>= 1) {
      float ov = __shfl_xor_sync(0xffffffffu, v, o);
      int oi = __shfl_xor_sync(0xffffffffu, i, o);
      if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
    }
    if (lane == 0) sv[0] = v, si[0] = i;
  }
  __syncthreads();
  *best_v = sv[0];
  *best_i = si[0];
}

__global__ void ArgmaxKernel(const float* logits, int vocab, int32_t* out) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* row = logits + int64_t{blockIdx.x} * vocab;
  float v = -INFINITY;
  int idx = INT_MAX;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    float x = row[i];
    if (x > v) v = x, idx = i;  // i increases, so the first maximum stays
  }
  float bv;
  int bi;
  BlockArgmax(v, idx, sv, si, &bv, &bi);
  if (threadIdx.x == 0) out[blockIdx.x] = bi == INT_MAX ? 0 : bi;
}

__global__ void SampleKernel(const float* logits, int vocab, SampleParams p, int32_t* out) {
  __shared__ float scratch[32];
  __shared__ float sv[32];
  __shared__ int si[32];
  const int r = blockIdx.x;
  const float* row = logits + int64_t{r} * vocab;
  const float temp = p.temperature[r];
  // Greedy.
  float v = -INFINITY;
  int idx = INT_MAX;
  float lo = INFINITY;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    float x = row[i];
    if (x > v) v = x, idx = i;
    lo = fminf(lo, x);
  }
  float mx;
  int arg;
  BlockArgmax(v, idx, sv, si, &mx, &arg);
  if (temp <= 0.0f) {
    if (threadIdx.x == 0) out[r] = arg;
    return;
  }
  lo = -BlockMax(-lo, scratch);
  const float inv_t = 1.0f / temp;
  // Top-k threshold on logits: the largest t with count(x >= t) >= k.
  float thr = -INFINITY;
  const int k = p.top_k[r];
  if (k > 0 && k < vocab) {
    float a = lo, b = mx;  // count(x >= a) >= k, invariant
    for (int it = 0; it < 40; ++it) {
      const float mid = 0.5f * (a + b);
      if (mid <= a || mid >= b) break;
      float cnt = 0;
      for (int i = threadIdx.x; i < vocab; i += kThreads) cnt += row[i] >= mid ? 1.0f : 0.0f;
      cnt = BlockSum(cnt, scratch);
      if (cnt >= k) a = mid; else b = mid;
    }
    // b may itself qualify when values tie at the top.
    float cnt = 0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) cnt += row[i] >= b ? 1.0f : 0.0f;
    cnt = BlockSum(cnt, scratch);
    thr = cnt >= k ? b : a;
  }
  // Softmax mass over the kept tokens.
  float z = 0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    if (row[i] >= thr) z += __expf((row[i] - mx) * inv_t);
  }
  z = BlockSum(z, scratch);
  const float top_p = p.top_p[r];
  if (top_p < 1.0f) {
    // Largest logit threshold u >= thr whose kept mass is still >= top_p.
    float a = fmaxf(thr, lo), b = mx;
    for (int it = 0; it < 40; ++it) {
      const float mid = 0.5f * (a + b);
      if (mid <= a || mid >= b) break;
      float mass = 0;
      for (int i = threadIdx.x; i < vocab; i += kThreads) {
        if (row[i] >= mid) mass += __expf((row[i] - mx) * inv_t);
      }
      mass = BlockSum(mass, scratch);
      if (mass >= top_p * z) a = mid; else b = mid;
    }
    float mass = 0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      if (row[i] >= b) mass += __expf((row[i] - mx) * inv_t);
    }
    mass = BlockSum(mass, scratch);
    thr = fmaxf(thr, mass >= top_p * z ? b : a);
    z = 0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      if (row[i] >= thr) z += __expf((row[i] - mx) * inv_t);
    }
    z = BlockSum(z, scratch);
  }
  // Inverse CDF in index order, one thread (the kept set is usually small,
  // but the scan is over the row).
  if (threadIdx.x == 0) {
    const float target = p.uniform[r] * z;
    float acc = 0;
    int pick = arg;
    for (int i = 0; i < vocab; ++i) {
      if (row[i] < thr) continue;
      acc += __expf((row[i] - mx) * inv_t);
      pick = i;
      if (acc > target) break;
    }
    out[r] = pick;
  }
}

}  // namespace

Error LaunchArgmax(const float* logits, int rows, int vocab, int32_t* out, void* stream) {
  if (rows == 0) return {};
  ArgmaxKernel<<<rows, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(logits, vocab, out);
  return LaunchResult();
}

Error LaunchSample(const float* logits, int rows, int vocab, const SampleParams& p, int32_t* out, void* stream) {
  if (rows == 0) return {};
  SampleKernel<<<rows, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(logits, vocab, p, out);
  return LaunchResult();
}

}  // namespace ferry::cuda
