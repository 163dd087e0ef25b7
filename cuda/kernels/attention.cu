// Attention entry points: check the parameters, pick the dtype's kernels.
#include "cuda/kernels/attention.cuh"

namespace ferry::cuda {
namespace {

Error CheckCommon(const AttentionParams& p) {
  if (p.num_heads <= 0 || p.kv.num_kv_heads <= 0 || p.num_heads % p.kv.num_kv_heads != 0) {
    return "num_heads must be a positive multiple of num_kv_heads";
  }
  if (!SupportedHeadDim(p.kv.head_dim)) return "unsupported head_dim " + std::to_string(p.kv.head_dim);
  if (p.kv.block_size <= 0) return "block_size must be positive";
  if (p.layer < 0 || p.layer >= p.kv.num_layers) return "layer out of range";
  return {};
}

}  // namespace

bool SupportedHeadDim(int head_dim) {
  return head_dim == 8 || head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128;
}

size_t AttentionWorkspaceBytes(int max_rows, int num_heads, int num_kv_heads, int head_dim, int max_context,
                               int sm_count) {
  size_t most = 0;
  for (int rows = 1; rows <= max_rows; ++rows) {
    DecodePlan plan = PlanDecode(rows, num_heads, num_kv_heads, max_context, sm_count);
    if (plan.splits <= 1) continue;
    most = std::max(most, size_t(rows) * num_heads * plan.splits * (head_dim + 2) * sizeof(float));
  }
  return most;
}

DecodeSplitPlan PlanDecodeAttention(int rows, int num_heads, int num_kv_heads, int max_context, int sm_count) {
  DecodePlan plan = PlanDecode(rows, num_heads, num_kv_heads, max_context, sm_count);
  return {plan.splits, plan.chunk};
}

Error LaunchDecodeAttention(DType dtype, const AttentionParams& p, void* stream) {
  if (Error e = CheckCommon(p); !e.empty()) return e;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kF32: return DecodeAttentionF32(p, s);
    case DType::kF16: return DecodeAttentionF16(p, s);
    case DType::kBF16: return DecodeAttentionBF16(p, s);
  }
  return "unknown dtype";
}

bool HasPrefillKernel(DType dtype, int head_dim) {
  return dtype != DType::kF32 && (head_dim == 64 || head_dim == 128);
}

Error LaunchPrefillAttention(DType dtype, const AttentionParams& p, void* stream) {
  if (Error e = CheckCommon(p); !e.empty()) return e;
  if (!HasPrefillKernel(dtype, p.kv.head_dim)) {
    return std::string("no prefill kernel for ") + DTypeName(dtype) + " head_dim " + std::to_string(p.kv.head_dim);
  }
  auto s = static_cast<cudaStream_t>(stream);
  return dtype == DType::kF16 ? PrefillAttentionF16(p, s) : PrefillAttentionBF16(p, s);
}

}  // namespace ferry::cuda
