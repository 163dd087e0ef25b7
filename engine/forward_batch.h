// One step's worth of tokens for the forward pass: a ragged batch that can
// mix prefill chunks and decode tokens of many sequences.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/model_config.h"
#include "kvcache/kv_cache.h"

namespace ferry {

class RemoteKv;

struct ForwardBatch {
  // Every token of the step, grouped by sequence.
  std::span<const int32_t> tokens;
  // Position of each token within its sequence.
  std::span<const int32_t> positions;
  // Sequence s owns tokens [query_start[s], query_start[s+1]). num_seqs + 1 entries.
  std::span<const int32_t> query_start;
  // Context length of each sequence once this step's tokens are in (the
  // tokens attended to by its last query).
  std::span<const int32_t> seq_lens;
  // Block tables as CSR: sequence s uses blocks
  // block_indices[block_indptr[s] .. block_indptr[s+1]) in order.
  std::span<const int32_t> block_indptr;
  std::span<const int32_t> block_indices;
  // Rows (indices into tokens) whose logits are wanted, in output order.
  std::span<const int32_t> logits_indices;
  // DistAttention (CPU backend): sequence s keeps positions below
  // local_lens[s] in its blocks and the rest behind remote[s] (null: none).
  // Both empty: every position is local.
  std::span<const int32_t> local_lens = {};
  std::span<RemoteKv* const> remote = {};

  int num_seqs() const { return static_cast<int>(query_start.size()) - 1; }
  int num_tokens() const { return static_cast<int>(tokens.size()); }
};

// Checks a batch against the model and the KV cache shape: token ids in the
// vocabulary, consistent CSR layouts, positions inside their sequences,
// blocks that exist. InvalidArgument naming what is wrong.
absl::Status ValidateForwardBatch(const ForwardBatch& batch, const ModelConfig& config,
                                  const KvCacheShape& shape);

}  // namespace ferry
