// The blocks one sequence uses, in order, and how many tokens they hold; plus
// the CSR form of many tables that paged attention kernels take.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kvcache/block_ref.h"

namespace ferry {

// One per sequence. Token i lives in blocks()[i / block_size] at slot
// i % block_size. The table also remembers the content hashes of its leading
// full blocks (see BlockPool::CommitFullBlocks), so each block's hash is
// computed once and the chain can be extended without rehashing the prefix.
// Destroying or Clear()-ing the table releases every block.
class BlockTable {
 public:
  // `extra_key` salts the content hashes of this sequence's blocks (e.g. an
  // adapter id or a per-user cache salt): blocks are shared only between
  // sequences with the same key.
  explicit BlockTable(int block_size, uint64_t extra_key = 0)
      : block_size_(block_size), extra_key_(extra_key) {}
  ~BlockTable() { Clear(); }
  BlockTable(BlockTable&& other) noexcept
      : block_size_(other.block_size_),
        extra_key_(other.extra_key_),
        blocks_(std::move(other.blocks_)),
        block_hashes_(std::move(other.block_hashes_)),
        num_tokens_(std::exchange(other.num_tokens_, 0)) {}
  BlockTable& operator=(BlockTable&& other) noexcept;
  BlockTable(const BlockTable&) = delete;
  BlockTable& operator=(const BlockTable&) = delete;

  int block_size() const { return block_size_; }
  uint64_t extra_key() const { return extra_key_; }

  const std::vector<BlockRef>& blocks() const { return blocks_; }
  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  std::vector<int32_t> BlockIds() const;

  // Tokens whose keys and values are stored (or being stored this step).
  int64_t num_tokens() const { return num_tokens_; }
  void set_num_tokens(int64_t num_tokens) { num_tokens_ = num_tokens; }
  // Tokens the current blocks can hold.
  int64_t capacity_tokens() const { return int64_t{num_blocks()} * block_size_; }
  // Blocks to add so that `num_tokens` tokens fit (0 if they already do).
  int NumBlocksToAdd(int64_t num_tokens) const;
  // Flat KV slot (block_id * block_size + offset) of token `position`;
  // position must be below capacity_tokens().
  int64_t Slot(int64_t position) const;

  void Append(BlockRef block) { blocks_.push_back(std::move(block)); }
  void Append(std::vector<BlockRef> blocks);
  // Swaps the block at `index` for `block`, releasing the old reference.
  void Replace(int index, BlockRef block);

  // Content hashes of blocks [0, num_hashed_blocks()).
  const std::vector<uint64_t>& block_hashes() const { return block_hashes_; }
  int num_hashed_blocks() const { return static_cast<int>(block_hashes_.size()); }

  // A second table sharing the blocks that hold this table's tokens (for n>1
  // samples of one prompt). Empty trailing blocks are not shared: each copy
  // allocates its own. Before writing into a shared partial block, call
  // BlockPool::MakeWritable.
  BlockTable Fork() const;

  // Releases every block, last block first: the tail of a sequence is the
  // part least likely to be reused, so it should be evicted first.
  void Clear();

 private:
  friend class BlockPool;

  int block_size_;
  uint64_t extra_key_;
  std::vector<BlockRef> blocks_;
  std::vector<uint64_t> block_hashes_;
  int64_t num_tokens_ = 0;
};

// A batch's block tables in the paged layout FlashInfer takes: sequence b uses
// pages indices[indptr[b] .. indptr[b+1]), and its last page holds
// last_page_len[b] tokens (0 only for a sequence with no tokens).
struct BlockTableCsr {
  std::vector<int32_t> indptr;         // batch + 1
  std::vector<int32_t> indices;        // indptr.back()
  std::vector<int32_t> last_page_len;  // batch

  int batch_size() const { return static_cast<int>(last_page_len.size()); }
};

// Builds the CSR form for `tables` where sequence b covers its first
// `num_tokens[b]` tokens (usually stored tokens plus this step's new ones).
// InvalidArgument when the spans differ in length, a table is null, tables
// use different block sizes, a count is negative, or a table has too few
// blocks for its count.
absl::StatusOr<BlockTableCsr> BuildBlockTableCsr(std::span<const BlockTable* const> tables,
                                                 std::span<const int64_t> num_tokens);
// Same, with each table's own num_tokens().
absl::StatusOr<BlockTableCsr> BuildBlockTableCsr(std::span<const BlockTable* const> tables);

}  // namespace ferry
