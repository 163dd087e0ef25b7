#include "engine/forward_batch.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ferry {

absl::Status ValidateForwardBatch(const ForwardBatch& b, const ModelConfig& config, const KvCacheShape& s) {
  if (s.num_layers != config.num_layers || s.num_kv_heads != config.num_kv_heads ||
      s.head_dim != config.head_dim) {
    return absl::InvalidArgumentError("KV cache shape does not match the model");
  }
  int n = b.num_tokens();
  if ((!b.local_lens.empty() && b.local_lens.size() != b.seq_lens.size()) ||
      (!b.remote.empty() && b.remote.size() != b.seq_lens.size())) {
    return absl::InvalidArgumentError("inconsistent remote KV layout");
  }
  if (b.positions.size() != b.tokens.size() || b.query_start.size() < 2 ||
      b.seq_lens.size() + 1 != b.query_start.size() ||
      b.block_indptr.size() != b.query_start.size() || b.query_start.front() != 0 ||
      b.query_start.back() != n) {
    return absl::InvalidArgumentError("inconsistent batch layout");
  }
  for (int32_t t : b.tokens) {
    if (t < 0 || t >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", t, " is outside the vocabulary"));
    }
  }
  for (int32_t r : b.logits_indices) {
    if (r < 0 || r >= n) return absl::InvalidArgumentError("logits row out of range");
  }
  for (int seq = 0; seq < b.num_seqs(); ++seq) {
    int q0 = b.query_start[seq], q1 = b.query_start[seq + 1];
    int64_t blocks = b.block_indptr[seq + 1] - b.block_indptr[seq];
    if (q1 < q0 || blocks < 0 || b.block_indptr[seq + 1] > static_cast<int>(b.block_indices.size())) {
      return absl::InvalidArgumentError("inconsistent batch layout");
    }
    const int32_t stored = b.local_lens.empty() ? b.seq_lens[seq] : std::min(b.seq_lens[seq], b.local_lens[seq]);
    if (stored > blocks * s.block_size) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", seq, " has ", b.seq_lens[seq],
                                                     " tokens but only ", blocks, " KV blocks"));
    }
    for (int i = q0; i < q1; ++i) {
      if (b.positions[i] < 0 || b.positions[i] >= b.seq_lens[seq]) {
        return absl::InvalidArgumentError("token position outside its sequence");
      }
    }
    for (int64_t k = b.block_indptr[seq]; k < b.block_indptr[seq + 1]; ++k) {
      if (b.block_indices[k] < 0 || b.block_indices[k] >= s.num_blocks) {
        return absl::InvalidArgumentError("block index out of range");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace ferry
