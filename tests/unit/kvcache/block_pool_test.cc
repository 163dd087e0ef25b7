#include "kvcache/block_pool.h"

#include <cstring>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

std::unique_ptr<BlockPool> MakePool(int64_t num_blocks, int block_size,
                                    std::string model_key = "test-model") {
  BlockPoolOptions options;
  options.num_blocks = num_blocks;
  options.block_size = block_size;
  options.model_key = std::move(model_key);
  return BlockPool::Create(options).value();
}

// Gives `table` blocks for `tokens`, records them as stored and commits the
// full ones, as the engine does after a step.
void Fill(BlockPool& pool, BlockTable& table, const std::vector<int32_t>& tokens) {
  auto blocks = pool.Allocate(table.NumBlocksToAdd(static_cast<int64_t>(tokens.size())));
  ASSERT_TRUE(blocks.has_value());
  table.Append(std::move(*blocks));
  table.set_num_tokens(static_cast<int64_t>(tokens.size()));
  ASSERT_TRUE(pool.CommitFullBlocks(table, tokens).ok());
}

TEST(BlockPoolTest, CreateRejectsBadOptions) {
  BlockPoolOptions options;
  EXPECT_EQ(BlockPool::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.num_blocks = 4;
  options.block_size = 0;
  EXPECT_EQ(BlockPool::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.block_size = 16;
  options.num_blocks = int64_t{1} << 40;
  EXPECT_EQ(BlockPool::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BlockPoolTest, RefsReleaseOnDestructionAndShareCounts) {
  auto pool = MakePool(4, 2);
  {
    auto refs = pool->Allocate(3);
    ASSERT_TRUE(refs.has_value());
    EXPECT_EQ(pool->num_free(), 1);
    EXPECT_EQ(pool->num_used(), 3);
    BlockRef shared = (*refs)[0].Share();
    EXPECT_EQ(shared.id(), (*refs)[0].id());
    EXPECT_EQ(shared.ref_count(), 2);
    BlockRef moved = std::move(shared);
    EXPECT_FALSE(shared.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
    EXPECT_EQ(moved.ref_count(), 2);
    moved.Reset();
    EXPECT_EQ((*refs)[0].ref_count(), 1);
    EXPECT_TRUE(pool->CheckInvariants().ok());
  }
  EXPECT_EQ(pool->num_free(), 4);
  EXPECT_TRUE(pool->CheckInvariants().ok());
}

TEST(BlockPoolTest, AllocationIsAllOrNothing) {
  auto pool = MakePool(4, 2);
  auto a = pool->Allocate(3);
  ASSERT_TRUE(a.has_value());
  const std::vector<int32_t> free_before = pool->FreeListForTest();
  EXPECT_FALSE(pool->CanAllocate(2));
  EXPECT_FALSE(pool->Allocate(2).has_value());
  EXPECT_EQ(pool->FreeListForTest(), free_before);
  EXPECT_EQ(pool->num_free(), 1);
  EXPECT_FALSE(pool->Allocate(-1).has_value());
  EXPECT_TRUE(pool->Allocate(0).has_value());
  EXPECT_TRUE(pool->CanAllocate(1));
  EXPECT_EQ(pool->Allocate(1)->size(), 1u);
}

TEST(BlockPoolTest, PrefixHitAfterFreeAndMissAfterEviction) {
  auto pool = MakePool(4, 2);
  const std::vector<int32_t> a = {1, 2, 3, 4};
  const std::vector<int32_t> b = {5, 6, 7, 8};
  {
    BlockTable ta = pool->NewTable();
    BlockTable tb = pool->NewTable();
    Fill(*pool, ta, a);
    Fill(*pool, tb, b);
    EXPECT_EQ(pool->num_cached(), 4);
    ta.Clear();
    tb.Clear();
  }
  // Both freed; cached blocks stay findable. Each table was freed last block
  // first, A before B.
  EXPECT_EQ(pool->num_free(), 4);
  EXPECT_EQ(pool->num_cached(), 4);
  EXPECT_EQ(pool->CountCachedPrefixTokens(a), 4);
  EXPECT_EQ(pool->FreeListForTest(), (std::vector<int32_t>{1, 0, 3, 2}));

  // Allocating one block evicts the least recently freed: A's second block.
  auto one = pool->Allocate(1);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ((*one)[0].id(), 1);
  EXPECT_EQ(pool->num_cached(), 3);
  EXPECT_EQ(pool->stats().num_evictions, 1);

  BlockTable ta = pool->NewTable();
  EXPECT_EQ(pool->MatchPrefix(a, ta).value(), 2);  // only the first block is left
  EXPECT_EQ(ta.BlockIds(), (std::vector<int32_t>{0}));
  EXPECT_EQ(ta.num_tokens(), 2);
  EXPECT_EQ(pool->ref_count(0), 1);  // touched: out of the free list
  BlockTable tb = pool->NewTable();
  EXPECT_EQ(pool->MatchPrefix(b, tb).value(), 4);
  EXPECT_EQ(tb.BlockIds(), (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(pool->num_free(), 0);
  EXPECT_TRUE(pool->CheckInvariants().ok());

  BlockPoolStats s = pool->stats();
  EXPECT_EQ(s.prefix_queries, 2);
  EXPECT_EQ(s.prefix_query_blocks, 4);
  EXPECT_EQ(s.prefix_hit_blocks, 3);
  EXPECT_EQ(s.prefix_query_tokens, 8);
  EXPECT_EQ(s.prefix_hit_tokens, 6);

  // A non-empty table is refused.
  EXPECT_EQ(pool->MatchPrefix(a, ta).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(BlockPoolTest, LruOrderFollowsLastUse) {
  auto pool = MakePool(3, 1);
  std::vector<BlockTable> tables;
  for (int32_t t = 0; t < 3; ++t) {
    tables.push_back(pool->NewTable());
    Fill(*pool, tables.back(), {t});
  }
  for (BlockTable& t : tables) t.Clear();  // freed in order 0, 1, 2
  EXPECT_EQ(pool->FreeListForTest(), (std::vector<int32_t>{0, 1, 2}));
  {
    // Reusing prefix 0 moves its block to the most recently used end.
    BlockTable t = pool->NewTable();
    EXPECT_EQ(pool->MatchPrefix(std::vector<int32_t>{0}, t).value(), 1);
  }
  EXPECT_EQ(pool->FreeListForTest(), (std::vector<int32_t>{1, 2, 0}));
  auto two = pool->Allocate(2);
  EXPECT_EQ((*two)[0].id(), 1);
  EXPECT_EQ((*two)[1].id(), 2);
  EXPECT_EQ(pool->CountCachedPrefixTokens(std::vector<int32_t>{0}), 1);
  EXPECT_EQ(pool->CountCachedPrefixTokens(std::vector<int32_t>{1}), 0);
}

TEST(BlockPoolTest, UncachedFreedBlocksAreReusedFirst) {
  auto pool = MakePool(4, 2);
  BlockTable cached = pool->NewTable();
  Fill(*pool, cached, {1, 2});     // block 0, cached
  auto plain = pool->Allocate(1);  // block 1, never filled
  cached.Clear();
  plain.reset();
  // Block 1 holds nothing worth keeping, so it goes before the cached block 0
  // and even before never-used blocks.
  EXPECT_EQ(pool->FreeListForTest(), (std::vector<int32_t>{1, 2, 3, 0}));
  EXPECT_TRUE(pool->CheckInvariants().ok());
}

TEST(BlockPoolTest, IdenticalBlocksFilledTwiceAreCachedOnce) {
  auto pool = MakePool(4, 2);
  const std::vector<int32_t> tokens = {7, 8, 9};
  BlockTable t1 = pool->NewTable();
  BlockTable t2 = pool->NewTable();
  Fill(*pool, t1, tokens);
  Fill(*pool, t2, tokens);
  EXPECT_EQ(pool->num_cached(), 1);
  EXPECT_TRUE(pool->is_cached(t1.blocks()[0].id()));
  EXPECT_FALSE(pool->is_cached(t2.blocks()[0].id()));
  EXPECT_EQ(t1.block_hashes(), t2.block_hashes());
  const int32_t private_block = t2.blocks()[0].id();
  t2.Clear();
  EXPECT_EQ(pool->FreeListForTest().front(), private_block);
  BlockHashEvents events = pool->DrainEvents();
  ASSERT_EQ(events.events.size(), 1u);
  EXPECT_EQ(events.events[0].kind, BlockHashEvent::Kind::kStored);
  EXPECT_EQ(events.events[0].hash, t1.block_hashes()[0]);
  EXPECT_TRUE(pool->CheckInvariants().ok());
}

TEST(BlockPoolTest, EventsAreOrderedAndDrained) {
  auto pool = MakePool(2, 1);
  std::vector<uint64_t> hashes;
  {
    BlockTable t = pool->NewTable();
    Fill(*pool, t, {1, 2});
    hashes = t.block_hashes();
  }
  auto all = pool->Allocate(2);  // evicts both, the tail block first
  BlockHashEvents events = pool->DrainEvents();
  ASSERT_EQ(events.events.size(), 4u);
  EXPECT_FALSE(events.overflowed);
  EXPECT_EQ(events.events[0].kind, BlockHashEvent::Kind::kStored);
  EXPECT_EQ(events.events[0].hash, hashes[0]);
  EXPECT_EQ(events.events[1].hash, hashes[1]);
  EXPECT_EQ(events.events[2].kind, BlockHashEvent::Kind::kRemoved);
  EXPECT_EQ(events.events[2].hash, hashes[1]);
  EXPECT_EQ(events.events[3].hash, hashes[0]);
  EXPECT_TRUE(pool->DrainEvents().events.empty());
  EXPECT_TRUE(pool->CachedHashes().empty());
}

TEST(BlockPoolTest, EventOverflowIsReported) {
  BlockPoolOptions options;
  options.num_blocks = 8;
  options.block_size = 1;
  options.max_pending_events = 3;
  auto pool = BlockPool::Create(options).value();
  BlockTable t = pool->NewTable();
  Fill(*pool, t, {1, 2, 3, 4, 5});
  BlockHashEvents events = pool->DrainEvents();
  EXPECT_TRUE(events.overflowed);
  EXPECT_LE(events.events.size(), 3u);
  EXPECT_EQ(pool->CachedHashes().size(), 5u);
  EXPECT_FALSE(pool->DrainEvents().overflowed);
}

TEST(BlockPoolTest, NetHashChangesKeepEachHashsLastEvent) {
  using K = BlockHashEvent::Kind;
  // 1: evicted, then cached again (ends stored); 2: cached, then evicted
  // (ends removed); 3: stored, removed, stored; 4: only removed.
  const std::vector<BlockHashEvent> events = {
      {K::kRemoved, 1}, {K::kStored, 2}, {K::kStored, 3}, {K::kStored, 1},
      {K::kRemoved, 3}, {K::kRemoved, 2}, {K::kRemoved, 4}, {K::kStored, 3}};
  std::vector<uint64_t> stored, removed;
  NetBlockHashChanges(events, &stored, &removed);
  EXPECT_EQ(stored, (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(removed, (std::vector<uint64_t>{2, 4}));

  // Applied in either order to what a consumer knew before (2 and 4
  // cached), the lists give the pool's set: {1, 3}.
  for (bool stored_first : {true, false}) {
    std::set<uint64_t> view = {2, 4};
    auto add = [&] { view.insert(stored.begin(), stored.end()); };
    auto drop = [&] { for (uint64_t h : removed) view.erase(h); };
    if (stored_first) {
      add();
      drop();
    } else {
      drop();
      add();
    }
    EXPECT_EQ(view, (std::set<uint64_t>{1, 3})) << "stored first: " << stored_first;
  }

  stored.clear();
  removed.clear();
  NetBlockHashChanges({}, &stored, &removed);
  EXPECT_TRUE(stored.empty());
  EXPECT_TRUE(removed.empty());
}

TEST(BlockPoolTest, EvictedAndCachedAgainBetweenDrainsStaysCached) {
  // One block of capacity: caching B evicts A, caching A again evicts B.
  auto pool = MakePool(1, 1, "model");
  std::vector<uint64_t> a_hashes;
  {
    BlockTable t = pool->NewTable();
    Fill(*pool, t, {7});
    a_hashes = t.block_hashes();
  }
  {
    BlockTable t = pool->NewTable();
    Fill(*pool, t, {8});
  }
  {
    BlockTable t = pool->NewTable();
    Fill(*pool, t, {7});
  }
  std::vector<uint64_t> stored, removed;
  NetBlockHashChanges(pool->DrainEvents().events, &stored, &removed);
  EXPECT_EQ(stored, a_hashes);
  std::vector<uint64_t> cached = pool->CachedHashes();
  EXPECT_EQ(cached, a_hashes);
  for (uint64_t h : removed) EXPECT_NE(h, a_hashes[0]);
}

TEST(BlockPoolTest, HashesDependOnModelAndExtraKey) {
  auto pool = MakePool(8, 2, "model-a");
  auto other = MakePool(8, 2, "model-b");
  EXPECT_NE(pool->root_hash(), other->root_hash());
  EXPECT_EQ(pool->root_hash(), MakePool(1, 2, "model-a")->root_hash());

  const std::vector<int32_t> tokens = {1, 2, 3, 4};
  BlockTable salted = pool->NewTable(/*extra_key=*/42);
  Fill(*pool, salted, tokens);
  EXPECT_EQ(pool->CountCachedPrefixTokens(tokens, 42), 4);
  EXPECT_EQ(pool->CountCachedPrefixTokens(tokens, 0), 0);
  BlockTable plain = pool->NewTable();
  EXPECT_EQ(pool->MatchPrefix(tokens, plain).value(), 0);

  // The chain: the second block's hash depends on the first block's tokens.
  const uint64_t h0 = HashBlockTokens(pool->root_hash(), std::vector<int32_t>{1, 2}, 42);
  EXPECT_EQ(salted.block_hashes()[0], h0);
  EXPECT_EQ(salted.block_hashes()[1], HashBlockTokens(h0, std::vector<int32_t>{3, 4}, 42));
  EXPECT_NE(HashBlockTokens(h0, std::vector<int32_t>{3, 4}, 42),
            HashBlockTokens(h0 + 1, std::vector<int32_t>{3, 4}, 42));
}

TEST(BlockPoolTest, CommitChecksItsInputs) {
  auto pool = MakePool(4, 2);
  BlockTable t = pool->NewTable();
  t.Append(std::move(*pool->Allocate(1)));
  t.set_num_tokens(2);
  EXPECT_EQ(pool->CommitFullBlocks(t, std::vector<int32_t>{1}).code(),
            absl::StatusCode::kInvalidArgument);
  t.set_num_tokens(3);
  EXPECT_EQ(pool->CommitFullBlocks(t, std::vector<int32_t>{1, 2, 3}).code(),
            absl::StatusCode::kInvalidArgument);
  BlockTable wrong(4);
  EXPECT_EQ(pool->CommitFullBlocks(wrong, {}).code(), absl::StatusCode::kFailedPrecondition);

  // A matched (cached) block committed with other tokens is refused.
  t.set_num_tokens(2);
  ASSERT_TRUE(pool->CommitFullBlocks(t, std::vector<int32_t>{1, 2}).ok());
  BlockTable m = pool->NewTable();
  ASSERT_EQ(pool->MatchPrefix(std::vector<int32_t>{1, 2}, m).value(), 2);
  BlockTable fresh = pool->NewTable();
  fresh.Append(m.blocks()[0].Share());
  fresh.set_num_tokens(2);
  EXPECT_EQ(pool->CommitFullBlocks(fresh, std::vector<int32_t>{9, 9}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fresh.num_hashed_blocks(), 0);
  EXPECT_TRUE(pool->CheckInvariants().ok());
}

TEST(BlockPoolTest, CopyOnWriteOfSharedPartialLastBlock) {
  KvCacheShape shape;
  shape.num_layers = 1;
  shape.num_kv_heads = 1;
  shape.head_dim = 2;
  shape.block_size = 4;
  shape.num_blocks = 4;
  auto cache = KvCache::Create(shape).value();
  auto pool = MakePool(4, 4);

  BlockTable parent = pool->NewTable();
  Fill(*pool, parent, {1, 2, 3, 4, 5, 6});  // one full block, one partial
  const int32_t partial = parent.blocks()[1].id();
  for (int64_t i = 0; i < shape.floats_per_block(); ++i) cache->Block(partial)[i] = 1.0f + i;

  BlockTable child = parent.Fork();
  EXPECT_EQ(child.BlockIds(), parent.BlockIds());
  EXPECT_EQ(pool->ref_count(partial), 2);

  auto copies = pool->MakeWritable(child);
  ASSERT_TRUE(copies.has_value());
  ASSERT_EQ(copies->size(), 1u);
  EXPECT_EQ((*copies)[0].src, partial);
  const int32_t copy = (*copies)[0].dst;
  EXPECT_NE(copy, partial);
  EXPECT_EQ(child.blocks()[1].id(), copy);
  EXPECT_EQ(child.blocks()[0].id(), parent.blocks()[0].id());  // full block stays shared
  EXPECT_EQ(pool->ref_count(partial), 1);
  CopyBlocks(*cache, *copies);
  EXPECT_EQ(std::memcmp(cache->Block(copy), cache->Block(partial), shape.bytes_per_block()), 0);

  // The parent is now the only owner: nothing to copy.
  auto none = pool->MakeWritable(parent);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  EXPECT_TRUE(pool->CheckInvariants().ok());
}

TEST(BlockPoolTest, CopyOnWriteFailsCleanlyWhenFull) {
  auto pool = MakePool(2, 4);
  BlockTable parent = pool->NewTable();
  Fill(*pool, parent, {1, 2});
  auto rest = pool->Allocate(1);
  BlockTable child = parent.Fork();
  const std::vector<int32_t> before = child.BlockIds();
  EXPECT_FALSE(pool->MakeWritable(child).has_value());
  EXPECT_EQ(child.BlockIds(), before);
  rest.reset();
  auto copies = pool->MakeWritable(child);
  ASSERT_TRUE(copies.has_value());
  EXPECT_EQ(copies->size(), 1u);
}

TEST(BlockPoolTest, ForkAtBlockBoundaryNeedsNoCopy) {
  auto pool = MakePool(4, 2);
  BlockTable parent = pool->NewTable();
  Fill(*pool, parent, {1, 2});
  parent.Append(std::move(*pool->Allocate(1)));  // empty lookahead block, not shared
  BlockTable child = parent.Fork();
  EXPECT_EQ(child.num_blocks(), 1);
  auto copies = pool->MakeWritable(child);
  ASSERT_TRUE(copies.has_value());
  EXPECT_TRUE(copies->empty());
}

}  // namespace
}  // namespace ferry
