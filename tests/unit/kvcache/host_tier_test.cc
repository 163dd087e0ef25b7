#include "kvcache/host_tier.h"

#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "kvcache/block_pool.h"

namespace ferry {
namespace {

constexpr int64_t kBytesPerBlock = 16;

// Fake device memory: one byte array per pool block. A block's bytes start
// with a tag the test writes, so a copy back can be checked.
class FakeBlockMemory final : public KvBlockIo {
 public:
  explicit FakeBlockMemory(int64_t num_blocks) : bytes_(static_cast<size_t>(num_blocks * kBytesPerBlock)) {}
  absl::Status ReadBlock(int32_t block, std::span<std::byte> out) override {
    ++reads;
    if (fail_reads) return absl::InternalError("read failed (fake)");
    std::memcpy(out.data(), &bytes_[static_cast<size_t>(block) * kBytesPerBlock], out.size());
    return absl::OkStatus();
  }
  absl::Status WriteBlock(int32_t block, std::span<const std::byte> in) override {
    ++writes;
    if (fail_writes) return absl::InternalError("write failed (fake)");
    std::memcpy(&bytes_[static_cast<size_t>(block) * kBytesPerBlock], in.data(), in.size());
    return absl::OkStatus();
  }
  void Tag(int32_t block, uint32_t tag) {
    std::memcpy(&bytes_[static_cast<size_t>(block) * kBytesPerBlock], &tag, sizeof(tag));
  }
  uint32_t TagOf(int32_t block) const {
    uint32_t tag;
    std::memcpy(&tag, &bytes_[static_cast<size_t>(block) * kBytesPerBlock], sizeof(tag));
    return tag;
  }
  int reads = 0, writes = 0;
  bool fail_reads = false, fail_writes = false;

 private:
  std::vector<std::byte> bytes_;
};

struct Tiers {
  Tiers(int64_t pool_blocks, int64_t host_blocks, int block_size = 2) : memory(pool_blocks) {
    if (host_blocks > 0) {
      host = HostTier::Create({host_blocks, kBytesPerBlock, block_size}, &memory).value();
    }
    BlockPoolOptions o;
    o.num_blocks = pool_blocks;
    o.block_size = block_size;
    o.model_key = "host-tier-test";
    o.host_tier = host.get();
    pool = BlockPool::Create(o).value();
  }
  // Computes `tokens` into a fresh table (each block tagged with its first
  // token) and releases it: the full blocks stay cached and free.
  void Cache(const std::vector<int32_t>& tokens) {
    BlockTable table = pool->NewTable();
    auto blocks = pool->Allocate(table.NumBlocksToAdd(static_cast<int64_t>(tokens.size())));
    ASSERT_TRUE(blocks.has_value());
    table.Append(std::move(*blocks));
    for (int i = 0; i < table.num_blocks(); ++i) {
      memory.Tag(table.blocks()[i].id(), static_cast<uint32_t>(tokens[static_cast<size_t>(i) * pool->block_size()]));
    }
    table.set_num_tokens(static_cast<int64_t>(tokens.size()));
    ASSERT_TRUE(pool->CommitFullBlocks(table, tokens).ok());
  }
  // Takes every free block once (evicting whatever is cached) and gives them back.
  void Flush() {
    auto all = pool->Allocate(pool->num_free());
    ASSERT_TRUE(all.has_value());
  }
  FakeBlockMemory memory;
  std::unique_ptr<HostTier> host;
  std::unique_ptr<BlockPool> pool;
};

std::vector<BlockHashEvent::Kind> Kinds(const BlockHashEvents& e) {
  std::vector<BlockHashEvent::Kind> out;
  for (const auto& ev : e.events) out.push_back(ev.kind);
  return out;
}

int CountKind(const BlockHashEvents& e, BlockHashEvent::Kind kind) {
  int n = 0;
  for (const auto& ev : e.events) n += ev.kind == kind;
  return n;
}

TEST(HostTierTest, CreateRejectsBadOptions) {
  FakeBlockMemory memory(1);
  EXPECT_EQ(HostTier::Create({0, kBytesPerBlock, 2}, &memory).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HostTier::Create({4, 0, 2}, &memory).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HostTier::Create({4, kBytesPerBlock, 2}, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  auto tier = HostTier::Create({4, kBytesPerBlock, 4}, &memory).value();
  BlockPoolOptions o;
  o.num_blocks = 2;
  o.block_size = 2;  // differs from the tier's 4
  o.host_tier = tier.get();
  EXPECT_EQ(BlockPool::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HostTierTest, EvictedBlocksMoveToHostAndComeBackOnAHit) {
  Tiers t(/*pool_blocks=*/2, /*host_blocks=*/4);
  const std::vector<int32_t> prompt = {10, 11, 20, 21};
  t.Cache(prompt);
  EXPECT_EQ(Kinds(t.pool->DrainEvents()),
            (std::vector{BlockHashEvent::Kind::kStored, BlockHashEvent::Kind::kStored}));
  const std::vector<uint64_t> hashes = t.pool->CachedHashes();
  t.Flush();  // both cached blocks are reused: their content goes to the host tier
  EXPECT_EQ(t.pool->num_cached(), 0);
  EXPECT_EQ(t.host->num_used(), 2);
  EXPECT_EQ(t.host->stats().swap_out_blocks, 2);
  EXPECT_EQ(t.host->stats().swap_out_bytes(), 2 * kBytesPerBlock);
  // Still stored for the cluster: no event at all.
  EXPECT_TRUE(t.pool->DrainEvents().events.empty());
  EXPECT_EQ(t.pool->CachedHashes(), hashes);
  EXPECT_EQ(t.pool->CountCachedPrefixTokens(prompt), 4);
  // Overwrite the device memory, as other requests would.
  t.memory.Tag(0, 999);
  t.memory.Tag(1, 999);

  BlockTable table = t.pool->NewTable();
  ASSERT_EQ(t.pool->MatchPrefix(prompt, table).value(), 4);
  ASSERT_EQ(table.num_blocks(), 2);
  EXPECT_EQ(t.memory.TagOf(table.blocks()[0].id()), 10u);
  EXPECT_EQ(t.memory.TagOf(table.blocks()[1].id()), 20u);
  EXPECT_EQ(t.host->num_used(), 0);
  EXPECT_EQ(t.pool->num_cached(), 2);
  BlockPoolStats s = t.pool->stats();
  EXPECT_EQ(s.prefix_hit_blocks, 2);
  EXPECT_EQ(s.prefix_hit_blocks_host, 2);
  EXPECT_EQ(s.prefix_hit_tokens_host, 4);
  EXPECT_EQ(t.host->stats().swap_in_blocks, 2);
  EXPECT_TRUE(t.pool->DrainEvents().events.empty());
  EXPECT_EQ(t.pool->CachedHashes(), hashes);
  EXPECT_TRUE(t.pool->CheckInvariants().ok());
}

TEST(HostTierTest, FullHostTierDropsLeastRecentlyStoredFirst) {
  Tiers t(/*pool_blocks=*/1, /*host_blocks=*/2);
  t.Cache({1, 1});
  t.Cache({2, 2});  // evicts {1,1} to the host
  t.Cache({3, 3});  // evicts {2,2}
  const std::vector<uint64_t> stored = [&] {
    std::vector<uint64_t> h;
    for (const auto& e : t.pool->DrainEvents().events) h.push_back(e.hash);
    return h;
  }();
  ASSERT_EQ(stored.size(), 3u);
  EXPECT_EQ(t.host->LruHashesForTest(), (std::vector<uint64_t>{stored[0], stored[1]}));
  t.Cache({4, 4});  // evicts {3,3}: the host tier drops {1,1}
  BlockHashEvents events = t.pool->DrainEvents();
  ASSERT_EQ(CountKind(events, BlockHashEvent::Kind::kRemoved), 1);
  for (const auto& e : events.events) {
    if (e.kind == BlockHashEvent::Kind::kRemoved) EXPECT_EQ(e.hash, stored[0]);
  }
  EXPECT_EQ(t.host->LruHashesForTest(), (std::vector<uint64_t>{stored[1], stored[2]}));
  EXPECT_EQ(t.host->stats().num_evictions, 1);
  EXPECT_EQ(t.pool->CountCachedPrefixTokens(std::vector<int32_t>{1, 1}), 0);
  EXPECT_EQ(t.pool->CountCachedPrefixTokens(std::vector<int32_t>{2, 2}), 2);
  EXPECT_TRUE(t.pool->CheckInvariants().ok());
}

TEST(HostTierTest, FindChecksTheWholeContentNotOnlyTheHash) {
  FakeBlockMemory memory(1);
  auto tier = HostTier::Create({2, kBytesPerBlock, 2}, &memory).value();
  const std::vector<int32_t> tokens = {5, 6};
  ASSERT_TRUE(tier->Store(BlockContentKey{42, 7, 0, tokens}, 0).stored);
  EXPECT_NE(tier->Find(BlockContentKey{42, 7, 0, tokens}), HostTier::kNoSlot);
  const std::vector<int32_t> other = {5, 9};
  EXPECT_EQ(tier->Find(BlockContentKey{42, 7, 0, other}), HostTier::kNoSlot);   // other tokens
  EXPECT_EQ(tier->Find(BlockContentKey{42, 8, 0, tokens}), HostTier::kNoSlot);  // other parent
  EXPECT_EQ(tier->Find(BlockContentKey{42, 7, 1, tokens}), HostTier::kNoSlot);  // other extra key
  // A colliding store keeps the first content.
  EXPECT_FALSE(tier->Store(BlockContentKey{42, 7, 0, other}, 0).stored);
  EXPECT_NE(tier->Find(BlockContentKey{42, 7, 0, tokens}), HostTier::kNoSlot);
  EXPECT_TRUE(tier->CheckInvariants().ok());
}

TEST(HostTierTest, WithoutAHostTierEvictionRemovesTheHash) {
  Tiers t(/*pool_blocks=*/1, /*host_blocks=*/0);
  t.Cache({1, 2});
  t.Cache({3, 4});
  EXPECT_EQ(Kinds(t.pool->DrainEvents()),
            (std::vector{BlockHashEvent::Kind::kStored, BlockHashEvent::Kind::kRemoved,
                         BlockHashEvent::Kind::kStored}));
  EXPECT_EQ(t.pool->CountCachedPrefixTokens(std::vector<int32_t>{1, 2}), 0);
  EXPECT_EQ(t.pool->stats().prefix_hit_blocks_host, 0);
}

TEST(HostTierTest, OneMatchSpansBothTiers) {
  Tiers t(/*pool_blocks=*/4, /*host_blocks=*/4);
  const std::vector<int32_t> prompt = {1, 1, 2, 2, 3, 3};
  t.Cache(prompt);
  // Push the chain's last two blocks to the host: hold the first, then take
  // every other free block.
  BlockTable keep = t.pool->NewTable();
  ASSERT_EQ(t.pool->MatchPrefix(std::span(prompt).first(2), keep).value(), 2);
  t.Flush();
  EXPECT_EQ(t.host->num_used(), 2);
  keep.Clear();
  t.pool->DrainEvents();

  BlockTable table = t.pool->NewTable();
  ASSERT_EQ(t.pool->MatchPrefix(prompt, table).value(), 6);
  EXPECT_EQ(t.memory.TagOf(table.blocks()[0].id()), 1u);
  EXPECT_EQ(t.memory.TagOf(table.blocks()[1].id()), 2u);
  EXPECT_EQ(t.memory.TagOf(table.blocks()[2].id()), 3u);
  BlockPoolStats s = t.pool->stats();
  EXPECT_EQ(s.prefix_hit_blocks - s.prefix_hit_blocks_host, 1 + 1);  // two queries hit block 0 on the device
  EXPECT_EQ(s.prefix_hit_blocks_host, 2);
  EXPECT_TRUE(t.pool->DrainEvents().events.empty());
  EXPECT_TRUE(t.pool->CheckInvariants().ok());
}

TEST(HostTierTest, HitStopsWhenNoBlockIsFree) {
  Tiers t(/*pool_blocks=*/2, /*host_blocks=*/4);
  const std::vector<int32_t> prompt = {1, 1, 2, 2};
  t.Cache(prompt);
  t.Flush();
  auto held = t.pool->Allocate(2);  // nothing free now
  ASSERT_TRUE(held.has_value());
  BlockTable table = t.pool->NewTable();
  EXPECT_EQ(t.pool->MatchPrefix(prompt, table).value(), 0);
  EXPECT_EQ(t.host->num_used(), 2);  // kept for later
  EXPECT_TRUE(t.pool->CheckInvariants().ok());
  held.reset();
  ASSERT_EQ(t.pool->MatchPrefix(prompt, table).value(), 4);
  EXPECT_TRUE(t.pool->CheckInvariants().ok());
}

TEST(HostTierTest, FailedCopiesFallBackToForgettingTheBlock) {
  Tiers t(/*pool_blocks=*/1, /*host_blocks=*/2);
  t.memory.fail_reads = true;
  t.Cache({1, 1});
  t.Cache({2, 2});  // the copy out fails: {1,1} is gone
  EXPECT_EQ(CountKind(t.pool->DrainEvents(), BlockHashEvent::Kind::kRemoved), 1);
  EXPECT_EQ(t.host->num_used(), 0);
  EXPECT_EQ(t.host->stats().swap_out_failures, 1);
  t.memory.fail_reads = false;
  t.Cache({3, 3});  // {2,2} goes to the host
  EXPECT_EQ(t.host->num_used(), 1);
  t.memory.fail_writes = true;
  BlockTable table = t.pool->NewTable();
  const std::vector<int32_t> two = {2, 2};
  EXPECT_EQ(t.pool->MatchPrefix(two, table).value(), 0);  // copy back failed: a miss
  EXPECT_EQ(t.host->stats().swap_in_failures, 1);
  // Kept, plus {3,3}, pushed out for the block the copy was meant for.
  EXPECT_EQ(t.host->num_used(), 2);
  EXPECT_TRUE(t.pool->CheckInvariants().ok());
  t.memory.fail_writes = false;
  EXPECT_EQ(t.pool->MatchPrefix(two, table).value(), 2);
  EXPECT_TRUE(t.pool->CheckInvariants().ok());
}

TEST(HostTierTest, RecomputingABlockHeldOnTheHostKeepsTheTiersExclusive) {
  Tiers t(/*pool_blocks=*/1, /*host_blocks=*/2);
  t.Cache({1, 1});
  t.Cache({2, 2});  // {1,1} to the host
  t.pool->DrainEvents();
  t.Cache({1, 1});  // computed again instead of matched: the host copy goes, no new "stored"
  BlockHashEvents events = t.pool->DrainEvents();
  EXPECT_EQ(CountKind(events, BlockHashEvent::Kind::kStored), 0);
  EXPECT_EQ(CountKind(events, BlockHashEvent::Kind::kRemoved), 0);  // {2,2} went to the host
  EXPECT_TRUE(t.pool->CheckInvariants().ok());
  EXPECT_EQ(t.host->num_used(), 1);
}

// Random operations on two tiers: the invariants hold after each, and the
// stored/removed events replayed give exactly CachedHashes().
TEST(HostTierTest, RandomOperationsKeepInvariantsAndTruthfulEvents) {
  std::mt19937 rng(1234);
  Tiers t(/*pool_blocks=*/6, /*host_blocks=*/5);
  std::set<uint64_t> replayed;
  std::vector<BlockTable> live;
  for (int step = 0; step < 3000; ++step) {
    const int op = static_cast<int>(rng() % 4);
    if (op == 0 && !live.empty()) {
      live.erase(live.begin() + static_cast<ptrdiff_t>(rng() % live.size()));
    } else {
      // Prompts from a small alphabet so that prefixes repeat.
      std::vector<int32_t> tokens(static_cast<size_t>(2 + 2 * (rng() % 3)));
      for (auto& tok : tokens) tok = static_cast<int32_t>(rng() % 2);
      BlockTable table = t.pool->NewTable();
      auto matched = t.pool->MatchPrefix(tokens, table);
      ASSERT_TRUE(matched.ok());
      auto more = t.pool->Allocate(table.NumBlocksToAdd(static_cast<int64_t>(tokens.size())));
      if (more) {
        table.Append(std::move(*more));
        table.set_num_tokens(static_cast<int64_t>(tokens.size()));
        ASSERT_TRUE(t.pool->CommitFullBlocks(table, tokens).ok());
        if (rng() % 2) live.push_back(std::move(table));
      } else if (!live.empty()) {
        live.erase(live.begin());
      }
    }
    ASSERT_TRUE(t.pool->CheckInvariants().ok()) << "step " << step;
    BlockHashEvents events = t.pool->DrainEvents();
    ASSERT_FALSE(events.overflowed);
    for (const auto& e : events.events) {
      if (e.kind == BlockHashEvent::Kind::kStored) {
        ASSERT_TRUE(replayed.insert(e.hash).second) << "stored twice at step " << step;
      } else {
        ASSERT_EQ(replayed.erase(e.hash), 1u) << "removed while not stored at step " << step;
      }
    }
    const std::vector<uint64_t> cached = t.pool->CachedHashes();
    ASSERT_EQ(std::vector<uint64_t>(replayed.begin(), replayed.end()), cached) << "step " << step;
  }
  EXPECT_GT(t.host->stats().swap_in_blocks, 0);
  EXPECT_GT(t.host->stats().swap_out_blocks, 0);
}

}  // namespace
}  // namespace ferry
