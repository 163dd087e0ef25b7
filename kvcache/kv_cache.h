// Paged KV storage: a fixed number of blocks, each holding `block_size`
// tokens of keys and values for every layer. A block is one contiguous range
// of memory ([layer][k|v][slot][kv_head][head_dim]), so a block moves to
// another worker as one piece. Which blocks a sequence uses is its block
// table (a CSR triple across a batch); this class only owns the memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kvcache/shared_pool.h"

namespace ferry {

// Blocks of `block_size` tokens needed to hold `tokens` tokens.
inline int64_t NumBlocksForTokens(int64_t tokens, int block_size) {
  return (tokens + block_size - 1) / block_size;
}

struct KvCacheShape {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;  // tokens per block
  int64_t num_blocks = 0;

  int kv_dim() const { return num_kv_heads * head_dim; }
  // Floats in one block: all layers, keys and values.
  int64_t floats_per_block() const {
    return int64_t{num_layers} * 2 * block_size * kv_dim();
  }
  int64_t bytes_per_block() const { return floats_per_block() * int64_t{sizeof(float)}; }
  // Blocks that fit in `bytes`.
  int64_t BlocksFor(int64_t bytes) const { return bytes / bytes_per_block(); }
};

class KvCache {
 public:
  // Allocates the blocks, zeroed. With `shared`, in a sealed memfd that
  // processes on the same host can map (kvcache/shared_pool.h), so peers
  // read blocks from it directly. InvalidArgument for a bad shape,
  // ResourceExhausted when the memory cannot be had; a shared allocation
  // that fails (no memfd, a shared-memory limit) falls back to private
  // memory.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const KvCacheShape& shape, bool shared = false);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  const KvCacheShape& shape() const { return shape_; }
  int64_t num_blocks() const { return shape_.num_blocks; }

  // Keys of `layer` in `block`: [block_size][kv_dim].
  float* Keys(int64_t block, int layer) { return Base(block, layer, 0); }
  float* Values(int64_t block, int layer) { return Base(block, layer, 1); }
  const float* Keys(int64_t block, int layer) const { return Base(block, layer, 0); }
  const float* Values(int64_t block, int layer) const { return Base(block, layer, 1); }
  // The whole block (floats_per_block() floats), for export and import.
  float* Block(int64_t block) { return data_ + block * shape_.floats_per_block(); }
  const float* Block(int64_t block) const { return data_ + block * shape_.floats_per_block(); }
  // Where peers can map the blocks; null for private memory. Block b starts
  // at byte b * shape().bytes_per_block().
  const SharedMemory* shared_memory() const { return shared_.get(); }

 private:
  KvCache(const KvCacheShape& shape, float* data, std::unique_ptr<SharedMemory> shared)
      : shape_(shape), data_(data), shared_(std::move(shared)) {}
  float* Base(int64_t block, int layer, int kind) const {
    return data_ + block * shape_.floats_per_block() +
           (int64_t{layer} * 2 + kind) * shape_.block_size * shape_.kv_dim();
  }

  KvCacheShape shape_;
  float* data_;
  std::unique_ptr<SharedMemory> shared_;  // owns data_ when set
};

}  // namespace ferry
