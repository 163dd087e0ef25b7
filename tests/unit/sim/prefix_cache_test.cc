// Prefix caching in the simulated engine: the cache itself, the worker's
// use of it, and the block hashes datasets give simulated prompts.
#include <gtest/gtest.h>

#include <vector>

#include "benchmarks/loadgen/dataset.h"
#include "benchmarks/sim/sim_block_hashes.h"
#include "benchmarks/sim/sim_prefix_cache.h"
#include "benchmarks/sim/sim_worker.h"

namespace ferry::sim {
namespace {

SimProfile TestProfile() {
  absl::StatusOr<SimProfile> p = LookupSimProfile("h100-llama3-8b");
  EXPECT_TRUE(p.ok());
  return *p;
}

// `n` hashes: `shared` from group `group`, then the request's own.
std::vector<uint64_t> Hashes(int n, int shared, uint64_t group, uint64_t own) {
  std::vector<uint64_t> out;
  for (int i = 0; i < n; ++i) out.push_back(i < shared ? (group << 32) + i : (own << 48) + i);
  return out;
}

SimSeq MakeSeq(int64_t id, int prompt, int max_tokens, const std::vector<uint64_t>& hashes) {
  SimSeq s;
  s.id = id;
  s.prompt_tokens = prompt;
  s.max_tokens = max_tokens;
  s.block_hashes = hashes;
  return s;
}

void RunToIdle(SimWorker& w, std::vector<SimSeq>& seqs) {
  for (int i = 0; i < 100000 && w.has_work(); ++i) {
    StepOutcome pre, out;
    ASSERT_GT(w.StartStep(seqs, &pre), 0);
    w.FinishStep(seqs, &out);
  }
  ASSERT_FALSE(w.has_work());
}

// Nothing held: every block free, every cached block unreferenced.
void ExpectNoBlockHeld(const SimWorker& w, const std::vector<SimSeq>& seqs) {
  EXPECT_EQ(w.blocks_free(), w.blocks_total());
  EXPECT_EQ(w.prefix_cache().num_free_cached(), w.prefix_cache().num_cached());
  EXPECT_LE(w.prefix_cache().num_cached(), w.blocks_total());
  for (const SimSeq& s : seqs) {
    EXPECT_EQ(s.blocks, 0) << s.id;
    EXPECT_TRUE(s.cached_refs.empty()) << s.id;
  }
}

TEST(SimPrefixCacheTest, MatchesLeadingBlocksAndEvictsTheLastReleasedFirst) {
  SimPrefixCache c;
  const std::vector<uint64_t> a = {1, 2, 3, 4};
  for (uint64_t h : a) EXPECT_TRUE(c.Register(h));
  EXPECT_FALSE(c.Register(2));  // cached already: the copy stays private
  EXPECT_EQ(c.Match(a, 10).blocks, 4);
  EXPECT_EQ(c.Match(a, 10).free_blocks, 0);
  EXPECT_EQ(c.Match(a, 3).blocks, 3);
  EXPECT_EQ(c.Match(std::vector<uint64_t>{1, 9, 3}, 10).blocks, 1);
  EXPECT_EQ(c.Release(a), 4);
  EXPECT_EQ(c.num_free_cached(), 4);
  EXPECT_EQ(c.Match(a, 10).free_blocks, 4);
  // Released last block first, so the tail goes first and the head stays.
  EXPECT_EQ(c.Evict(2), 2);
  EXPECT_EQ(c.Match(a, 10).blocks, 2);
  c.Acquire(std::vector<uint64_t>{1});
  EXPECT_EQ(c.num_free_cached(), 1);
  EXPECT_EQ(c.Evict(5), 1);  // the referenced block cannot go
  EXPECT_EQ(c.Match(a, 10).blocks, 1);
  EXPECT_EQ(c.num_evicted(), 3);
  std::vector<uint64_t> stored, removed;
  c.TakeEvents(&stored, &removed);
  // The net change since the start: 2-4 were cached and evicted again, so
  // only 1 is stored (a heartbeat's lists never name a hash twice).
  EXPECT_EQ(stored, (std::vector<uint64_t>{1}));
  EXPECT_EQ(removed, (std::vector<uint64_t>{4, 3, 2}));
  // Evicted and cached again before the next heartbeat: stored, not removed.
  EXPECT_EQ(c.Release(std::vector<uint64_t>{1}), 1);
  EXPECT_EQ(c.Evict(1), 1);
  EXPECT_TRUE(c.Register(1));
  c.TakeEvents(&stored, &removed);
  EXPECT_EQ(stored, (std::vector<uint64_t>{1}));
  EXPECT_TRUE(removed.empty());
  c.TakeEvents(&stored, &removed);
  EXPECT_TRUE(stored.empty() && removed.empty());
}

TEST(SimWorkerPrefixTest, ARepeatedPrefixIsNotComputedAgain) {
  const SimProfile profile = TestProfile();
  SimEngineOptions o;
  o.num_blocks = 1000;
  SimWorker w(0, o, &profile);
  // 32 blocks of system prompt shared, then 8 blocks of each request's own.
  const std::vector<uint64_t> h0 = Hashes(40, 32, 7, 1), h1 = Hashes(40, 32, 7, 2),
                              h2 = Hashes(40, 32, 8, 3);
  std::vector<SimSeq> seqs = {MakeSeq(0, 640, 4, h0), MakeSeq(1, 640, 4, h1),
                              MakeSeq(2, 640, 4, h2)};
  w.Enqueue(seqs[0]);
  RunToIdle(w, seqs);
  EXPECT_EQ(w.prefix_hit_tokens(), 0);
  EXPECT_EQ(w.prefix_cache().num_cached(), 40);

  // Same group: the first step computes only the 128 tokens after the prefix.
  w.Enqueue(seqs[1]);
  StepOutcome pre, out;
  const double cached_step = w.StartStep(seqs, &pre);
  EXPECT_EQ(seqs[1].computed, 512);
  w.FinishStep(seqs, &out);
  EXPECT_EQ(out.tokens, std::vector<int64_t>{1});
  EXPECT_EQ(w.prefix_hit_tokens(), 512);
  RunToIdle(w, seqs);

  // Another group: computed in full, and the step takes longer.
  w.Enqueue(seqs[2]);
  const double full_step = w.StartStep(seqs, &pre);
  EXPECT_EQ(seqs[2].computed, 0);
  EXPECT_GT(full_step, cached_step);
  w.FinishStep(seqs, &out);
  RunToIdle(w, seqs);
  EXPECT_EQ(w.prefix_hit_tokens(), 512);
  EXPECT_EQ(w.prefix_prompt_tokens(), 3 * 640);
  ExpectNoBlockHeld(w, seqs);
}

TEST(SimWorkerPrefixTest, AFullyCachedPromptStillComputesItsLastToken) {
  const SimProfile profile = TestProfile();
  SimEngineOptions o;
  o.num_blocks = 100;
  SimWorker w(0, o, &profile);
  const std::vector<uint64_t> h = Hashes(4, 4, 1, 0);
  std::vector<SimSeq> seqs = {MakeSeq(0, 64, 2, h), MakeSeq(1, 64, 2, h)};
  w.Enqueue(seqs[0]);
  RunToIdle(w, seqs);
  w.Enqueue(seqs[1]);
  StepOutcome pre, out;
  w.StartStep(seqs, &pre);
  EXPECT_EQ(seqs[1].computed, 48);  // three blocks: the fourth holds the last token
  w.FinishStep(seqs, &out);
  EXPECT_EQ(out.tokens, std::vector<int64_t>{1});
  RunToIdle(w, seqs);
  ExpectNoBlockHeld(w, seqs);
}

TEST(SimWorkerPrefixTest, AllocationEvictsTheLeastRecentlyUsedCachedBlocks) {
  const SimProfile profile = TestProfile();
  SimEngineOptions o;
  o.num_blocks = 40;
  SimWorker w(0, o, &profile);
  const std::vector<uint64_t> a = Hashes(20, 20, 1, 0), b = Hashes(25, 0, 0, 2);
  std::vector<SimSeq> seqs = {MakeSeq(0, 320, 1, a), MakeSeq(1, 400, 1, b), MakeSeq(2, 320, 1, a)};
  w.Enqueue(seqs[0]);
  RunToIdle(w, seqs);
  EXPECT_EQ(w.prefix_cache().num_free_cached(), 20);
  EXPECT_EQ(w.blocks_free(), 40);  // cached blocks count as free
  // 25 blocks for b's prompt with 20 uncached free: five of a's evicted,
  // its last ones, so a's first 15 blocks are still there for its rerun.
  w.Enqueue(seqs[1]);
  RunToIdle(w, seqs);
  EXPECT_EQ(w.prefix_cache().num_evicted(), 5);
  EXPECT_EQ(w.prefix_cache().num_cached(), 40);
  w.Enqueue(seqs[2]);
  RunToIdle(w, seqs);
  EXPECT_EQ(w.prefix_hit_tokens(), 15 * 16);
  EXPECT_EQ(w.prefix_cache().num_evicted(), 10);  // a's last five again, in place of b's last five
  ExpectNoBlockHeld(w, seqs);
}

// Many requests on few blocks, two prefix groups, both step modes: blocks
// are shared while running, preempted and recomputed, and all come back.
TEST(SimWorkerPrefixTest, NoBlockLeaksUnderSharingAndPreemption) {
  const SimProfile profile = TestProfile();
  for (bool chunked : {true, false}) {
    SimEngineOptions o;
    o.num_blocks = 120;
    o.max_num_batched_tokens = 256;
    o.chunked_prefill = chunked;
    SimWorker w(0, o, &profile);
    std::vector<std::vector<uint64_t>> hashes;
    for (int i = 0; i < 24; ++i) hashes.push_back(Hashes(20, 16, i % 2, i));
    std::vector<SimSeq> seqs;
    for (int i = 0; i < 24; ++i) seqs.push_back(MakeSeq(i, 330, 60 + 7 * i, hashes[i]));
    for (SimSeq& s : seqs) w.Enqueue(s);
    RunToIdle(w, seqs);
    EXPECT_GT(w.preemptions(), 0);
    EXPECT_GT(w.prefix_hit_tokens(), 0);
    for (const SimSeq& s : seqs) {
      EXPECT_TRUE(s.finished);
      EXPECT_EQ(s.generated, s.max_tokens);
    }
    ExpectNoBlockHeld(w, seqs);
    EXPECT_EQ(w.blocks_needed_waiting(), 0);
  }
}

TEST(SimWorkerPrefixTest, MigratedSequencesReleaseAndRecacheTheirBlocks) {
  const SimProfile profile = TestProfile();
  SimEngineOptions o;
  o.num_blocks = 100;
  SimWorker src(0, o, &profile), dst(1, o, &profile);
  const std::vector<uint64_t> h = Hashes(10, 10, 3, 0);
  std::vector<SimSeq> seqs = {MakeSeq(0, 160, 20, h)};
  src.Enqueue(seqs[0]);
  StepOutcome pre, out;
  src.StartStep(seqs, &pre);
  src.FinishStep(seqs, &out);  // prefilled, blocks cached on src
  src.Detach(seqs[0]);
  EXPECT_EQ(src.blocks_free(), 100);
  EXPECT_EQ(src.prefix_cache().num_free_cached(), 10);
  ASSERT_TRUE(dst.AdmitMigrated(seqs[0]));
  RunToIdle(dst, seqs);
  EXPECT_EQ(dst.prefix_cache().num_cached(), 10);
  ExpectNoBlockHeld(dst, seqs);
}

TEST(SimWorkerPrefixTest, OffMeansNoLookupAndNoCache) {
  const SimProfile profile = TestProfile();
  SimEngineOptions o;
  o.num_blocks = 100;
  o.prefix_caching = false;
  SimWorker w(0, o, &profile);
  const std::vector<uint64_t> h = Hashes(10, 10, 3, 0);
  std::vector<SimSeq> seqs = {MakeSeq(0, 170, 2, h), MakeSeq(1, 170, 2, h)};
  w.Enqueue(seqs[0]);
  w.Enqueue(seqs[1]);
  RunToIdle(w, seqs);
  EXPECT_EQ(w.prefix_hit_tokens(), 0);
  EXPECT_EQ(w.prefix_cache().num_cached(), 0);
  ExpectNoBlockHeld(w, seqs);
}

TEST(SimBlockHashesTest, PrefixSetSharesTheSystemPromptBlocksOfAGroup) {
  loadgen::DatasetOptions d;
  d.name = "prefix";
  d.num_prompts = 40;
  d.num_prefixes = 2;
  d.prefix_len = 100;  // six full 16-token blocks, the seventh mixed
  d.input_len = 60;
  absl::StatusOr<std::vector<loadgen::BenchRequest>> set = loadgen::LoadDataset(d);
  ASSERT_TRUE(set.ok());
  std::vector<std::vector<uint64_t>> h;
  for (size_t i = 0; i < set->size(); ++i) h.push_back(SimBlockHashes((*set)[i], i, 16));
  int same_group = 0, other_group = 0;
  for (size_t i = 1; i < h.size(); ++i) {
    ASSERT_EQ(h[i].size(), 10u);  // 160 tokens
    const bool same = (*set)[i].hash_ids == (*set)[0].hash_ids;
    (same ? same_group : other_group) += 1;
    for (size_t b = 0; b < h[i].size(); ++b)
      EXPECT_EQ(h[i][b] == h[0][b], same && b < 6) << i << " " << b;
  }
  EXPECT_GT(same_group, 0);
  EXPECT_GT(other_group, 0);
}

TEST(SimBlockHashesTest, MooncakeHashIdsNameEach512TokenPiece) {
  const std::string trace =
      "{\"timestamp\": 0, \"input_length\": 1100, \"output_length\": 5, \"hash_ids\": [0, 1, 2]}\n"
      "{\"timestamp\": 5, \"input_length\": 1030, \"output_length\": 5, \"hash_ids\": [0, 1, 3]}\n"
      "{\"timestamp\": 9, \"input_length\": 700, \"output_length\": 5, \"hash_ids\": [0, 4]}\n"
      "{\"timestamp\": 9, \"input_length\": 700, \"output_length\": 5}\n";
  absl::StatusOr<std::vector<loadgen::BenchRequest>> rows = loadgen::ParseTrace(trace, "t", {});
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_EQ((*rows)[1].hash_ids, (std::vector<uint64_t>{0, 1, 3}));
  EXPECT_EQ((*rows)[1].hash_block_tokens, 512);
  // Block size 48 does not divide 512: a block is named by the piece it ends in.
  std::vector<std::vector<uint64_t>> h;
  for (size_t i = 0; i < rows->size(); ++i) h.push_back(SimBlockHashes((*rows)[i], i, 48));
  EXPECT_EQ(h[0].size(), 1100u / 48);
  EXPECT_EQ(h[1].size(), 1030u / 48);
  for (size_t b = 0; b < h[1].size(); ++b) {
    EXPECT_EQ(h[0][b] == h[1][b], (b + 1) * 48 - 1 < 1024) << b;  // pieces 0 and 1
    if (b < h[2].size()) EXPECT_EQ(h[0][b] == h[2][b], (b + 1) * 48 - 1 < 512) << b;
  }
  EXPECT_TRUE(h[3].empty());
  EXPECT_EQ(
      loadgen::ParseTrace(
          "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 5, \"hash_ids\": [-1]}", "t",
          {})
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::sim
