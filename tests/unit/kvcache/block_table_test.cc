#include "kvcache/block_table.h"

#include <vector>

#include "gtest/gtest.h"
#include "kvcache/block_pool.h"

namespace ferry {
namespace {

std::unique_ptr<BlockPool> MakePool(int64_t num_blocks, int block_size) {
  BlockPoolOptions options;
  options.num_blocks = num_blocks;
  options.block_size = block_size;
  return BlockPool::Create(options).value();
}

TEST(BlockTableTest, SlotsAndSizes) {
  auto pool = MakePool(8, 4);
  BlockTable t = pool->NewTable();
  EXPECT_EQ(t.NumBlocksToAdd(0), 0);
  EXPECT_EQ(t.NumBlocksToAdd(1), 1);
  EXPECT_EQ(t.NumBlocksToAdd(9), 3);
  auto blocks = pool->Allocate(3);  // ids 0, 1, 2
  std::vector<BlockRef> reordered;
  reordered.push_back(std::move((*blocks)[2]));
  reordered.push_back(std::move((*blocks)[0]));
  t.Append(std::move(reordered));
  EXPECT_EQ(t.capacity_tokens(), 8);
  EXPECT_EQ(t.NumBlocksToAdd(8), 0);
  EXPECT_EQ(t.NumBlocksToAdd(9), 1);
  EXPECT_EQ(t.Slot(0), 8);
  EXPECT_EQ(t.Slot(3), 11);
  EXPECT_EQ(t.Slot(4), 0);
  EXPECT_EQ(t.Slot(7), 3);
}

TEST(BlockTableTest, MoveKeepsOwnershipAndClearReleases) {
  auto pool = MakePool(4, 2);
  BlockTable a = pool->NewTable();
  a.Append(std::move(*pool->Allocate(2)));
  a.set_num_tokens(3);
  BlockTable b = std::move(a);
  EXPECT_EQ(a.num_blocks(), 0);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.num_tokens(), 0);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.num_blocks(), 2);
  EXPECT_EQ(pool->num_used(), 2);
  BlockTable c = pool->NewTable();
  c.Append(std::move(*pool->Allocate(1)));
  c = std::move(b);  // c's own block is released
  EXPECT_EQ(pool->num_used(), 2);
  c.Clear();
  EXPECT_EQ(pool->num_used(), 0);
  EXPECT_TRUE(pool->CheckInvariants().ok());
}

TEST(BlockTableCsrTest, BuildsFlashInferLayout) {
  auto pool = MakePool(16, 4);
  BlockTable a = pool->NewTable();
  BlockTable b = pool->NewTable();
  BlockTable c = pool->NewTable();
  BlockTable empty = pool->NewTable();
  a.Append(std::move(*pool->Allocate(2)));  // 0, 1
  b.Append(std::move(*pool->Allocate(1)));  // 2
  c.Append(std::move(*pool->Allocate(3)));  // 3, 4, 5
  a.set_num_tokens(5);
  b.set_num_tokens(4);
  c.set_num_tokens(9);

  std::vector<const BlockTable*> tables = {&a, &b, &c, &empty};
  auto csr = BuildBlockTableCsr(tables);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_EQ(csr->batch_size(), 4);
  EXPECT_EQ(csr->indptr, (std::vector<int32_t>{0, 2, 3, 6, 6}));
  EXPECT_EQ(csr->indices, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(csr->last_page_len, (std::vector<int32_t>{1, 4, 1, 0}));

  // Explicit counts (stored plus this step's tokens); unused trailing blocks
  // are left out.
  std::vector<int64_t> counts = {8, 1, 3, 0};
  csr = BuildBlockTableCsr(tables, counts);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_EQ(csr->indptr, (std::vector<int32_t>{0, 2, 3, 4, 4}));
  EXPECT_EQ(csr->indices, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(csr->last_page_len, (std::vector<int32_t>{4, 1, 3, 0}));
}

TEST(BlockTableCsrTest, RejectsBadInput) {
  auto pool = MakePool(4, 4);
  BlockTable a = pool->NewTable();
  a.Append(std::move(*pool->Allocate(1)));
  std::vector<const BlockTable*> tables = {&a};
  EXPECT_EQ(BuildBlockTableCsr(tables, std::vector<int64_t>{5}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildBlockTableCsr(tables, std::vector<int64_t>{-1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildBlockTableCsr(tables, std::vector<int64_t>{1, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<const BlockTable*> with_null = {&a, nullptr};
  EXPECT_EQ(BuildBlockTableCsr(with_null).status().code(), absl::StatusCode::kInvalidArgument);
  BlockTable other(8);
  std::vector<const BlockTable*> mixed = {&a, &other};
  EXPECT_EQ(BuildBlockTableCsr(mixed).status().code(), absl::StatusCode::kInvalidArgument);
  auto empty = BuildBlockTableCsr(std::span<const BlockTable* const>());
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->indptr, (std::vector<int32_t>{0}));
}

}  // namespace
}  // namespace ferry
