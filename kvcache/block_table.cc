#include "kvcache/block_table.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ferry {

BlockTable& BlockTable::operator=(BlockTable&& other) noexcept {
  if (this != &other) {
    Clear();
    block_size_ = other.block_size_;
    extra_key_ = other.extra_key_;
    blocks_ = std::move(other.blocks_);
    block_hashes_ = std::move(other.block_hashes_);
    num_tokens_ = std::exchange(other.num_tokens_, 0);
    other.blocks_.clear();
    other.block_hashes_.clear();
  }
  return *this;
}

std::vector<int32_t> BlockTable::BlockIds() const {
  std::vector<int32_t> ids;
  ids.reserve(blocks_.size());
  for (const BlockRef& b : blocks_) ids.push_back(b.id());
  return ids;
}

int BlockTable::NumBlocksToAdd(int64_t num_tokens) const {
  const int64_t needed = (num_tokens + block_size_ - 1) / block_size_;
  return needed > num_blocks() ? static_cast<int>(needed - num_blocks()) : 0;
}

int64_t BlockTable::Slot(int64_t position) const {
  return int64_t{blocks_[static_cast<size_t>(position / block_size_)].id()} * block_size_ +
         position % block_size_;
}

void BlockTable::Append(std::vector<BlockRef> blocks) {
  blocks_.reserve(blocks_.size() + blocks.size());
  for (BlockRef& b : blocks) blocks_.push_back(std::move(b));
}

void BlockTable::Replace(int index, BlockRef block) { blocks_[index] = std::move(block); }

BlockTable BlockTable::Fork() const {
  BlockTable copy(block_size_, extra_key_);
  const int64_t used = (num_tokens_ + block_size_ - 1) / block_size_;
  const size_t shared = static_cast<size_t>(std::min<int64_t>(used, num_blocks()));
  copy.blocks_.reserve(shared);
  for (size_t i = 0; i < shared; ++i) copy.blocks_.push_back(blocks_[i].Share());
  copy.block_hashes_ = block_hashes_;
  copy.num_tokens_ = num_tokens_;
  return copy;
}

void BlockTable::Clear() {
  while (!blocks_.empty()) blocks_.pop_back();
  block_hashes_.clear();
  num_tokens_ = 0;
}

absl::StatusOr<BlockTableCsr> BuildBlockTableCsr(std::span<const BlockTable* const> tables,
                                                 std::span<const int64_t> num_tokens) {
  if (tables.size() != num_tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(tables.size(), " block tables but ", num_tokens.size(), " token counts"));
  }
  BlockTableCsr csr;
  csr.indptr.reserve(tables.size() + 1);
  csr.last_page_len.reserve(tables.size());
  csr.indptr.push_back(0);
  int block_size = 0;
  for (size_t b = 0; b < tables.size(); ++b) {
    const BlockTable* table = tables[b];
    if (table == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("block table ", b, " is null"));
    if (block_size == 0) block_size = table->block_size();
    if (table->block_size() != block_size) {
      return absl::InvalidArgumentError(absl::StrCat("block table ", b, " has block size ",
                                                     table->block_size(), ", others ", block_size));
    }
    const int64_t n = num_tokens[b];
    if (n < 0 || n > table->capacity_tokens()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sequence ", b, " has ", n, " tokens but blocks for ", table->capacity_tokens()));
    }
    const int64_t pages = (n + block_size - 1) / block_size;
    for (int64_t p = 0; p < pages; ++p) csr.indices.push_back(table->blocks()[p].id());
    csr.indptr.push_back(static_cast<int32_t>(csr.indices.size()));
    csr.last_page_len.push_back(n == 0 ? 0 : static_cast<int32_t>(n - (pages - 1) * block_size));
  }
  return csr;
}

absl::StatusOr<BlockTableCsr> BuildBlockTableCsr(std::span<const BlockTable* const> tables) {
  std::vector<int64_t> counts;
  counts.reserve(tables.size());
  for (const BlockTable* t : tables) counts.push_back(t == nullptr ? 0 : t->num_tokens());
  return BuildBlockTableCsr(tables, counts);
}

}  // namespace ferry
