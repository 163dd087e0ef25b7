// Attention kernels instantiated for float.
#include "cuda/kernels/attention.cuh"

namespace ferry::cuda {

Error DecodeAttentionF32(const AttentionParams& p, cudaStream_t stream) {
  return FERRY_DISPATCH_HEAD_DIM(p.kv.head_dim, HD, [&] { return DecodeAttentionImpl<float, HD>(p, stream); });
}

}  // namespace ferry::cuda
