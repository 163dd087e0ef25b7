// Attention kernels instantiated for __nv_bfloat16.
#include "cuda/kernels/attention.cuh"

namespace ferry::cuda {

Error DecodeAttentionBF16(const AttentionParams& p, cudaStream_t stream) {
  return FERRY_DISPATCH_HEAD_DIM(p.kv.head_dim, HD, [&] { return DecodeAttentionImpl<__nv_bfloat16, HD>(p, stream); });
}

Error PrefillAttentionBF16(const AttentionParams& p, cudaStream_t stream) {
  switch (p.kv.head_dim) {
    case 64: return PrefillAttentionImpl<__nv_bfloat16, 64>(p, stream);
    case 128: return PrefillAttentionImpl<__nv_bfloat16, 128>(p, stream);
  }
  return "no prefill kernel for head_dim " + std::to_string(p.kv.head_dim);
}

}  // namespace ferry::cuda
