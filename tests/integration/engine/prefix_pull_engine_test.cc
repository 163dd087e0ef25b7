// The engine half of a prefix pull (stories260K): blocks exported by one
// engine install in another only when every checksum holds and, for a
// partial pull, only after the blocks the destination caches itself; then a
// request hits them and gives the tokens the first engine computed. No path
// leaves a block referenced.
#include <functional>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/engine.h"
#include "gtest/gtest.h"
#include "kvcache/block_pool.h"
#include "tests/integration/engine/greedy_run.h"
#include "tests/integration/engine/shared_model.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

constexpr int kBlock = 16;

using Outcome = testing::GreedyOutcome;
using testing::RunGreedy;

std::vector<int32_t> Prompt(int len, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < len; ++i) ids.push_back(3 + (i * 31 + salt * 17) % 400);
  return ids;
}

// `prompt`'s first `shared` tokens followed by others.
std::vector<int32_t> Diverging(const std::vector<int32_t>& prompt, int shared, int len) {
  std::vector<int32_t> ids(prompt.begin(), prompt.begin() + shared);
  for (int i = shared; i < len; ++i) ids.push_back(3 + (i * 53 + 7) % 400);
  return ids;
}

using testing::ChainHashes;

// Statistics are published after each loop iteration, a moment after a
// call's future is ready: waits (up to 5 s) until they satisfy `ok`.
bool StatsSettle(const Engine& engine, const std::function<bool(const EngineStats&)>& ok) {
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (!ok(engine.Stats())) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

int64_t BlocksUsedSettling(const Engine& engine, int64_t blocks_used) {
  StatsSettle(engine, [&](const EngineStats& s) { return s.blocks_used == blocks_used; });
  return engine.Stats().blocks_used;
}

// Every chunk of an export, `per_chunk` blocks each, as the puller collects them.
std::vector<std::pair<int64_t, std::string>> AllChunks(const Engine::KvExport& e,
                                                       int64_t per_chunk) {
  std::vector<std::pair<int64_t, std::string>> chunks;
  for (int64_t b = e.first_block(); b < e.end_block(); b += per_chunk) {
    auto chunk = e.EncodeChunk(b, per_chunk);
    EXPECT_TRUE(chunk.ok()) << chunk.status();
    if (chunk.ok()) chunks.emplace_back(b, std::move(*chunk));
  }
  return chunks;
}

class PrefixPullEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { FERRY_LOAD_SHARED_MODEL(model_, "models/stories260K.gguf"); }

  std::unique_ptr<Engine> NewEngine(int64_t kv_blocks = 0) {
    EngineOptions o;
    o.threads = 1;
    if (kv_blocks > 0) {
      auto probe = Engine::Create(model_, o);
      EXPECT_TRUE(probe.ok());
      o.kv_cache_bytes = (*probe)->kv_shape().bytes_per_block() * kv_blocks;
    }
    auto e = Engine::Create(model_, o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  std::shared_ptr<const Model> model_;
};

TEST_F(PrefixPullEngineTest, ExportedPrefixInstallsOnlyWhenIntact) {
  auto holder = NewEngine();
  auto puller = NewEngine();
  const std::vector<int32_t> a = Prompt(100, 3);
  Outcome computed = RunGreedy(*holder, "h", a);
  ASSERT_EQ(computed.finish, FinishReason::kLength);
  const std::vector<uint64_t> hashes = ChainHashes(*holder, a, 99 / kBlock);
  auto exported = holder->OpenPrefixExport(a, hashes).get();
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ((*exported)->first_block(), 0);
  EXPECT_EQ((*exported)->end_block(), 6);
  std::vector<uint64_t> wrong = hashes;
  wrong[0] ^= 1;
  EXPECT_EQ(holder->OpenPrefixExport(a, wrong).get().status().code(), absl::StatusCode::kNotFound);
  auto chunk = (*exported)->EncodeChunk(0, 6);
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  EXPECT_EQ(chunk->size(),
            static_cast<size_t>(EncodedBlocksSize((*exported)->bytes_per_block(), 6)));

  std::string corrupt = *chunk;
  corrupt[corrupt.size() / 2] ^= 0x5a;
  auto bad = puller->InstallCachedPrefix(a, (*exported)->header(), {{0, corrupt}}).get();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << bad.status();
  EXPECT_EQ(BlocksUsedSettling(*puller, 0), 0);
  auto good = puller->InstallCachedPrefix(a, (*exported)->header(), {{0, *chunk}}).get();
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(*good, 6);
  exported->reset();
  EXPECT_EQ(BlocksUsedSettling(*holder, 0), 0);
  Outcome pulled = RunGreedy(*puller, "p", a);
  EXPECT_EQ(pulled.tokens, computed.tokens);
  EXPECT_EQ(pulled.cached_prompt_tokens, 96);
}

// The destination caches the first three blocks of the prompt (another
// prompt shared them): only blocks [3, 6) travel, and they chain after its own.
TEST_F(PrefixPullEngineTest, PartialPullInstallsOnlyTheMissingBlocksAfterTheCachedOnes) {
  auto holder = NewEngine();
  auto puller = NewEngine();
  const std::vector<int32_t> a = Prompt(100, 4);
  Outcome computed = RunGreedy(*holder, "h", a);
  ASSERT_EQ(computed.finish, FinishReason::kLength);
  ASSERT_EQ(RunGreedy(*puller, "b", Diverging(a, 3 * kBlock, 100)).finish, FinishReason::kLength);

  auto exported = holder->OpenPrefixExport(a, ChainHashes(*holder, a, 6), 3).get();
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ((*exported)->first_block(), 3);
  EXPECT_EQ((*exported)->num_blocks(), 3);
  EXPECT_EQ((*exported)->EncodeChunk(2, 1).status().code(), absl::StatusCode::kInvalidArgument);
  auto chunks = AllChunks(**exported, 2);  // [3, 5) and [5, 6)
  ASSERT_EQ(chunks.size(), 2u);
  const std::string header = (*exported)->header();
  EXPECT_TRUE(
      StatsSettle(*holder, [](const EngineStats& s) { return s.prefix_blocks_exported == 3; }));
  exported->reset();
  EXPECT_EQ(BlocksUsedSettling(*holder, 0), 0);

  // A chunk missing: nothing is cached, nothing stays referenced.
  auto short_of_one = puller->InstallCachedPrefix(a, header, {chunks[0]}, 3).get();
  EXPECT_EQ(short_of_one.status().code(), absl::StatusCode::kDataLoss) << short_of_one.status();
  EXPECT_EQ(BlocksUsedSettling(*puller, 0), 0);
  auto installed = puller->InstallCachedPrefix(a, header, chunks, 3).get();
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(*installed, 6);
  EXPECT_TRUE(StatsSettle(*puller, [](const EngineStats& s) {
    return s.prefix_blocks_imported == 3 && s.blocks_used == 0;
  })) << puller->Stats().prefix_blocks_imported;
  Outcome pulled = RunGreedy(*puller, "p", a);
  EXPECT_EQ(pulled.tokens, computed.tokens);
  EXPECT_EQ(pulled.cached_prompt_tokens, 96);
}

// Between the scheduler's decision and the install, the destination evicted
// blocks the pulled ones follow: the install fails, caches nothing and holds
// nothing, and the request computes the prefix with the same tokens.
TEST_F(PrefixPullEngineTest, PartialPullAfterTheLocalBlocksWereEvictedFailsCleanly) {
  auto holder = NewEngine();
  auto puller = NewEngine(/*kv_blocks=*/12);
  const std::vector<int32_t> a = Prompt(100, 5);
  Outcome computed = RunGreedy(*holder, "h", a);
  ASSERT_EQ(computed.finish, FinishReason::kLength);
  auto exported = holder->OpenPrefixExport(a, ChainHashes(*holder, a, 6), 3).get();
  ASSERT_TRUE(exported.ok()) << exported.status();
  const std::string header = (*exported)->header();
  auto chunks = AllChunks(**exported, 8);
  exported->reset();

  ASSERT_EQ(RunGreedy(*puller, "b", Diverging(a, 3 * kBlock, 100)).finish, FinishReason::kLength);
  // 166 tokens need 11 of the 12 blocks: most of the shared blocks go.
  ASSERT_EQ(RunGreedy(*puller, "c", Prompt(150, 6)).finish, FinishReason::kLength);
  ASSERT_EQ(BlocksUsedSettling(*puller, 0), 0);
  const int64_t cached_before = puller->Stats().blocks_cached;

  auto installed = puller->InstallCachedPrefix(a, header, chunks, 3).get();
  EXPECT_EQ(installed.status().code(), absl::StatusCode::kFailedPrecondition) << installed.status();
  absl::SleepFor(absl::Milliseconds(50));  // statistics follow the loop iteration
  EXPECT_EQ(puller->Stats().blocks_used, 0);
  EXPECT_EQ(puller->Stats().blocks_cached, cached_before);
  EXPECT_EQ(puller->Stats().prefix_blocks_imported, 0);
  Outcome recomputed = RunGreedy(*puller, "p", a);
  EXPECT_EQ(recomputed.tokens, computed.tokens);
  EXPECT_LT(recomputed.cached_prompt_tokens, 3 * kBlock);
}

// An export streamed a block at a time installs the same as one chunk; one
// given up halfway releases what it held.
TEST_F(PrefixPullEngineTest, ExportInSmallChunksInstallsTheSameAndReleasesItsBlocks) {
  auto holder = NewEngine();
  auto puller = NewEngine();
  const std::vector<int32_t> a = Prompt(300, 7);
  Outcome computed = RunGreedy(*holder, "h", a);
  ASSERT_EQ(computed.finish, FinishReason::kLength);
  const std::vector<uint64_t> hashes = ChainHashes(*holder, a, 299 / kBlock);
  ASSERT_EQ(BlocksUsedSettling(*holder, 0), 0);
  {
    auto abandoned = holder->OpenPrefixExport(a, hashes).get();
    ASSERT_TRUE(abandoned.ok()) << abandoned.status();
    EXPECT_EQ(BlocksUsedSettling(*holder, 18), 18);  // referenced while open
    ASSERT_TRUE((*abandoned)->EncodeChunk(0, 1).ok());
  }
  EXPECT_EQ(BlocksUsedSettling(*holder, 0), 0);

  auto exported = holder->OpenPrefixExport(a, hashes).get();
  ASSERT_TRUE(exported.ok()) << exported.status();
  auto chunks = AllChunks(**exported, 1);
  EXPECT_EQ(chunks.size(), 18u);
  // At the end, a chunk of no blocks (what a migration's last stage sends
  // when no block is left); past it, or a count beyond it from there, nothing.
  auto empty = (*exported)->EncodeChunk(18, 0);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->size(), static_cast<size_t>(EncodedBlocksSize((*exported)->bytes_per_block(), 0)));
  EXPECT_EQ((*exported)->EncodeChunk(18, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*exported)->EncodeChunk(19, 0).status().code(), absl::StatusCode::kInvalidArgument);
  auto installed = puller->InstallCachedPrefix(a, (*exported)->header(), chunks).get();
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(*installed, 18);
  exported->reset();
  EXPECT_EQ(BlocksUsedSettling(*holder, 0), 0);
  Outcome pulled = RunGreedy(*puller, "p", a);
  EXPECT_EQ(pulled.tokens, computed.tokens);
  EXPECT_EQ(pulled.cached_prompt_tokens, 18 * kBlock);
}

// A streamed install: blocks written chunk by chunk from this thread while
// the puller serves another request, held (and uncached) until the commit;
// an install abandoned or committed with a block missing caches nothing and
// gives its blocks back.
TEST_F(PrefixPullEngineTest, StreamedInstallCachesOnlyOnACompleteCommit) {
  auto holder = NewEngine();
  auto puller = NewEngine();
  const std::vector<int32_t> a = Prompt(300, 5);
  Outcome computed = RunGreedy(*holder, "h", a);
  ASSERT_EQ(computed.finish, FinishReason::kLength);
  const std::vector<uint64_t> hashes = ChainHashes(*holder, a, 299 / kBlock);
  auto exported = holder->OpenPrefixExport(a, hashes).get();
  ASSERT_TRUE(exported.ok()) << exported.status();
  const auto chunks = AllChunks(**exported, 4);
  ASSERT_EQ(chunks.size(), 5u);  // 18 blocks: 4 + 4 + 4 + 4 + 2

  {
    auto abandoned = puller->OpenPrefixInstall(a, (*exported)->header()).get();
    ASSERT_TRUE(abandoned.ok()) << abandoned.status();
    EXPECT_EQ(BlocksUsedSettling(*puller, 18), 18);  // taken when it opens
    ASSERT_TRUE((*abandoned)->WriteChunk(chunks[0].first, chunks[0].second).ok());
  }
  EXPECT_EQ(BlocksUsedSettling(*puller, 0), 0);
  auto missing = puller->OpenPrefixInstall(a, (*exported)->header()).get();
  ASSERT_TRUE(missing.ok()) << missing.status();
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    ASSERT_TRUE((*missing)->WriteChunk(chunks[i].first, chunks[i].second).ok());
  }
  EXPECT_EQ((*missing)->Commit().get().status().code(), absl::StatusCode::kDataLoss);
  missing->reset();
  EXPECT_EQ(BlocksUsedSettling(*puller, 0), 0);
  EXPECT_EQ(puller->Stats().prefix_blocks_imported, 0);

  std::thread busy([&] { EXPECT_EQ(RunGreedy(*puller, "busy", Prompt(40, 9), 64).tokens.size(), 64u); });
  auto install = puller->OpenPrefixInstall(a, (*exported)->header()).get();
  ASSERT_TRUE(install.ok()) << install.status();
  std::string corrupt = chunks[2].second;
  corrupt[corrupt.size() / 2] ^= 0x5a;
  EXPECT_EQ((*install)->WriteChunk(chunks[2].first, corrupt).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ((*install)->WriteChunk(18, chunks[0].second).code(), absl::StatusCode::kInvalidArgument);
  for (const auto& [first, payload] : chunks) ASSERT_TRUE((*install)->WriteChunk(first, payload).ok());
  auto committed = (*install)->Commit().get();
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(*committed, 18);
  install->reset();
  exported->reset();
  busy.join();
  Outcome pulled = RunGreedy(*puller, "p", a);
  EXPECT_EQ(pulled.tokens, computed.tokens);
  EXPECT_EQ(pulled.cached_prompt_tokens, 18 * kBlock);
}

}  // namespace
}  // namespace ferry
