// The Llama-family decoder forward pass on the CPU: RMSNorm, RoPE, grouped-
// query attention over paged KV, SwiGLU MLP, fp32 activations and
// accumulation. Weights may be f32, f16, bf16 or q8_0.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "common/thread_pool.h"
#include "engine/dist_attention.h"
#include "engine/forward_batch.h"
#include "engine/model.h"
#include "kvcache/kv_cache.h"

namespace ferry {

class LlamaForward {
 public:
  // Tokens one pass of the layers takes at most: a larger step runs as
  // consecutive micro-batches (a sequence's later tokens attend to the KV its
  // earlier ones wrote), so the activation scratch stays at this many tokens
  // whatever the step's token budget.
  static constexpr int kDefaultMaxUbatchTokens = 512;

  // `model` and `pool` must outlive this object. With `batch_invariant`, a
  // token's logits do not depend on the rest of the batch (bit for bit), nor
  // on how a step is cut into micro-batches.
  LlamaForward(const Model& model, ThreadPool& pool, bool batch_invariant = false,
               int max_ubatch_tokens = kDefaultMaxUbatchTokens);

  // Runs one step: writes the keys and values of the batch's tokens into
  // `kv` at their positions, and fills `logits` with
  // [logits_indices.size(), vocab] rows. InvalidArgument for an inconsistent
  // batch (token ids out of range, a position beyond its block table, ...);
  // nothing is written then.
  absl::Status Forward(const ForwardBatch& batch, KvCache& kv, float* logits);

  // The KV cache shape this model needs for `num_blocks` blocks.
  KvCacheShape KvShape(int block_size, int64_t num_blocks) const;

 private:
  absl::Status Check(const ForwardBatch& batch, const KvCache& kv) const;
  // One pass over at most max_ubatch_tokens_ tokens (or a batch that cannot
  // be cut: borrowed KV), the batch already checked.
  void ForwardPass(const ForwardBatch& batch, KvCache& kv, float* logits);
  void EnsureScratch(int num_tokens);
  // cos/sin of every token's angles, once per forward (rope_cs_).
  void ComputeRopeAngles(int num_tokens, std::span<const int32_t> positions);
  // Rotates the heads of q_ and k_ with rope_cs_.
  void ApplyRope(int num_tokens);
  void WriteKv(const ForwardBatch& batch, KvCache& kv, int layer);
  void Attention(const ForwardBatch& batch, const KvCache& kv, int layer);
  // DistAttention: positions of sequence `seq` at or above this live remotely.
  int32_t LocalLen(const ForwardBatch& batch, int seq) const;
  RemoteKv* RemoteOf(const ForwardBatch& batch, int seq) const {
    return batch.remote.empty() ? nullptr : batch.remote[seq];
  }
  // Merges the remote partials of the sequences that have them with their
  // local partials (left in part_local_ by Attention) into attn_.
  void MergeRemote(const ForwardBatch& batch);

  const Model& model_;
  const ModelConfig& config_;
  ThreadPool& pool_;
  bool batch_invariant_;
  int max_ubatch_tokens_;
  std::vector<float> inv_freq_;
  // Scratch, grown to the largest batch seen.
  int capacity_ = 0;
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, logits_in_;
  std::vector<float> rope_cs_;  // [token][pair] cos, sin
  std::vector<int32_t> token_seq_;  // sequence index of each token
  // One micro-batch's CSR and per-sequence arrays.
  std::vector<int32_t> ub_query_start_, ub_seq_lens_, ub_block_indptr_, ub_block_indices_, ub_logits_;
  // Local partials of remote sequences' queries [token * num_heads + head],
  // and one sequence's remote partials.
  AttentionPartials part_local_, part_remote_;
};

}  // namespace ferry
