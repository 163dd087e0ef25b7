#include "scheduler/policy/prefix_index.h"

#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

TEST(PrefixIndexTest, MatchesLeadingBlocksOnly) {
  PrefixIndex index;
  std::vector<uint64_t> stored = {1, 2, 3};
  index.Insert("w", stored);
  EXPECT_EQ(index.MatchBlocks("w", std::vector<uint64_t>{1, 2, 3, 4}), 3);
  EXPECT_EQ(index.MatchBlocks("w", std::vector<uint64_t>{1, 9, 3}), 1);
  EXPECT_EQ(index.MatchBlocks("w", std::vector<uint64_t>{7, 2}), 0);
  EXPECT_EQ(index.MatchBlocks("other", std::vector<uint64_t>{1}), 0);
}

TEST(PrefixIndexTest, RemoveAndDrop) {
  PrefixIndex index;
  index.Insert("w", std::vector<uint64_t>{1, 2, 3});
  index.Remove("w", std::vector<uint64_t>{2});
  EXPECT_EQ(index.MatchBlocks("w", std::vector<uint64_t>{1, 2, 3}), 1);
  index.DropWorker("w");
  EXPECT_EQ(index.NumBlocks("w"), 0u);
}

TEST(PrefixIndexTest, BoundedPerWorkerOldestFirst) {
  PrefixIndex index(4);
  index.Insert("w", std::vector<uint64_t>{1, 2, 3, 4, 5, 6});
  EXPECT_EQ(index.NumBlocks("w"), 4u);
  EXPECT_EQ(index.MatchBlocks("w", std::vector<uint64_t>{1}), 0);
  EXPECT_EQ(index.MatchBlocks("w", std::vector<uint64_t>{3, 4, 5, 6}), 4);
  for (uint64_t i = 0; i < 1000; ++i) {
    index.Insert("w", std::vector<uint64_t>{100 + i});
    index.Remove("w", std::vector<uint64_t>{100 + i});
  }
  EXPECT_LE(index.NumBlocks("w"), 4u);
}

}  // namespace
}  // namespace ferry
