#include "benchmarks/loadgen/recovery_check.h"

#include "gtest/gtest.h"

namespace ferry::loadgen {
namespace {

using Chunks = std::vector<std::string>;

TEST(FaultRecoveryCheckTest, AlignChunksTheSameChunksMatchFully) {
  ChunkAlignment a =
      AlignChunks({"Once", " upon", " a", " time"}, {"Once", " upon", " a", " time"});
  EXPECT_EQ(a.matched, 4);
  EXPECT_EQ(a.lost, 0);
  EXPECT_EQ(a.duplicated, 0);
  a = AlignChunks({}, {});
  EXPECT_EQ(a.matched + a.lost + a.duplicated, 0);
}

TEST(FaultRecoveryCheckTest, AlignChunksTheSameTextSplitOtherwiseMatchesFully) {
  ChunkAlignment a = AlignChunks({"Once", " upon", " a", " time"}, {"Once upon", " a time"});
  EXPECT_EQ(a.matched, 4);
  EXPECT_EQ(a.lost, 0);
  EXPECT_EQ(a.duplicated, 0);
}

TEST(FaultRecoveryCheckTest, AlignChunksCountsLostAndRepeatedTokens) {
  const Chunks ref = {"a", "b", "c", "d", "e", "f"};
  // A token skipped at the recovery point.
  ChunkAlignment a = AlignChunks(ref, {"a", "b", "c", "e", "f"});
  EXPECT_EQ(a.matched, 5);
  EXPECT_EQ(a.lost, 1);
  EXPECT_EQ(a.duplicated, 0);
  // Two tokens sent again after the recovery.
  a = AlignChunks(ref, {"a", "b", "c", "d", "c", "d", "e", "f"});
  EXPECT_EQ(a.matched, 6);
  EXPECT_EQ(a.lost, 0);
  EXPECT_EQ(a.duplicated, 2);
  // A stream cut short, and one that diverged (each differing chunk counts
  // once as lost and once as extra).
  a = AlignChunks(ref, {"a", "b"});
  EXPECT_EQ(a.lost, 4);
  EXPECT_EQ(a.duplicated, 0);
  a = AlignChunks(ref, {"a", "b", "x", "y", "e", "f"});
  EXPECT_EQ(a.matched, 4);
  EXPECT_EQ(a.lost, 2);
  EXPECT_EQ(a.duplicated, 2);
  a = AlignChunks({}, {"a"});
  EXPECT_EQ(a.duplicated, 1);
}

TEST(FaultRecoveryCheckTest, OutputTimesRebuildsChunkTimesFromTtftAndGaps) {
  RequestResult r;
  r.start_s = 1.0;
  r.ttft_s = 0.5;
  r.itl_s = {0.1, 0.2};
  std::vector<double> t = OutputTimes(r);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_DOUBLE_EQ(t[0], 1.5);
  EXPECT_DOUBLE_EQ(t[1], 1.6);
  EXPECT_DOUBLE_EQ(t[2], 1.8);
  EXPECT_TRUE(OutputTimes(RequestResult{}).empty());
}

TEST(FaultRecoveryCheckTest, IsClusterRequestMatchesTheIdOrItsSamples) {
  EXPECT_TRUE(IsClusterRequest("cmpl-7", {"cmpl-3-0", "cmpl-7-0"}));
  EXPECT_TRUE(IsClusterRequest("cmpl-7", {"cmpl-7"}));
  EXPECT_FALSE(IsClusterRequest("cmpl-7", {"cmpl-70-0", "cmpl-7x"}));
  EXPECT_FALSE(IsClusterRequest("", {"cmpl-7-0"}));
}

// A stream sent at `start_s` whose chunks arrive at `times` (run seconds).
RequestResult Stream(const std::string& id, double start_s, std::vector<double> times,
                     bool ok = true) {
  RequestResult r;
  r.ok = ok;
  r.response_id = id;
  r.start_s = start_s;
  r.ttft_s = times.front() - start_s;
  for (size_t i = 1; i < times.size(); ++i) r.itl_s.push_back(times[i] - times[i - 1]);
  r.e2e_s = times.back() - start_s + 0.001;
  for (size_t i = 0; i < times.size(); ++i) r.output_chunks.push_back(std::to_string(i));
  return r;
}

TEST(FaultRecoveryCheckTest, MeasureKillsWaitsOfTheStreamsInFlight) {
  std::vector<RequestResult> results = {
      Stream("done-before", 0.0, {0.1, 0.2, 0.3}),       // ended before the kill
      Stream("survivor", 0.5, {0.6, 1.01, 1.03, 1.05}),  // on the other worker
      // On the killed worker: one last token after the kill was confirmed,
      // then nothing until the recovery.
      Stream("victim", 0.5, {0.7, 0.9, 1.005, 1.40, 1.42}),
      Stream("failed", 0.5, {0.8}, /*ok=*/false),  // on it, never recovered
      Stream("after", 1.2, {1.3, 1.4}),            // sent after the kill
  };
  results[3].e2e_s = 1.5 - 0.5;
  KillRecord kill;
  kill.worker.id = "w1";
  kill.worker.requests = {"victim-0", "failed-0"};
  kill.sent_s = 0.99;
  kill.at_s = 1.0;
  KillImpact impact = MeasureKills(results, {kill});
  EXPECT_EQ(impact.streams_in_flight, 3);
  EXPECT_EQ(impact.streams_on_killed_worker, 2);
  EXPECT_EQ(impact.streams_failed, 1);
  EXPECT_EQ(impact.to_check, (std::vector<int>{1, 2, 3}));
  // The next token after the kill: survivor 10 ms, victim 5 ms (its last
  // one before the death); the failed stream has none.
  EXPECT_EQ(impact.next_token_ms.count, 2);
  EXPECT_NEAR(impact.next_token_ms.max, 10, 1e-6);
  // The longest wait after the kill shows the victim's recovery: from its
  // last token (1.005) to its first after the recovery (1.40).
  EXPECT_EQ(impact.recovery_ms.count, 2);
  EXPECT_NEAR(impact.recovery_ms.median, (20 + 395) / 2.0, 1e-6);
  EXPECT_NEAR(impact.recovery_ms.max, 395, 1e-6);
  EXPECT_EQ(impact.recovery_on_killed_worker_ms.count, 1);
  EXPECT_NEAR(impact.recovery_on_killed_worker_ms.max, 395, 1e-6);

  // The fault-free reruns: the survivor matches, the victim repeated one
  // token, the failed stream is not compared, one rerun failed.
  std::vector<RequestResult> refs = {results[1], results[2], results[3]};
  results[2].output_chunks = {"0", "1", "2", "2", "3", "4"};
  refs[2].ok = true;
  CompareWithReferences(results, refs, &impact);
  EXPECT_EQ(impact.streams_checked, 2);
  EXPECT_EQ(impact.tokens_lost, 0);
  EXPECT_EQ(impact.tokens_duplicated, 1);
  EXPECT_EQ(impact.streams_with_duplicated_tokens, 1);
  refs[0].ok = false;
  KillImpact again = MeasureKills(results, {kill});
  CompareWithReferences(results, refs, &again);
  EXPECT_EQ(again.references_failed, 1);
  EXPECT_EQ(again.streams_checked, 1);
}

}  // namespace
}  // namespace ferry::loadgen
