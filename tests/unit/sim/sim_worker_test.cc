#include "benchmarks/sim/sim_worker.h"

#include <gtest/gtest.h>

#include <vector>

namespace ferry::sim {
namespace {

SimProfile TestProfile() {
  absl::StatusOr<SimProfile> p = LookupSimProfile("h100-llama3-8b");
  EXPECT_TRUE(p.ok());
  return *p;
}

SimSeq MakeSeq(int64_t id, int prompt, int max_tokens) {
  SimSeq s;
  s.id = id;
  s.prompt_tokens = prompt;
  s.max_tokens = max_tokens;
  return s;
}

// Runs steps until the worker is idle; returns, per step, the ids that got a token.
std::vector<std::vector<int64_t>> RunToIdle(SimWorker& w, std::vector<SimSeq>& seqs, int max_steps = 10000) {
  std::vector<std::vector<int64_t>> steps;
  for (int i = 0; i < max_steps && w.has_work(); ++i) {
    StepOutcome pre;
    const double dt = w.StartStep(seqs, &pre);
    EXPECT_GT(dt, 0);
    StepOutcome out;
    w.FinishStep(seqs, &out);
    steps.push_back(out.tokens);
  }
  return steps;
}

TEST(SimWorkerTest, ChunkedPrefillSplitsALongPromptByTheBudget) {
  const SimProfile profile = TestProfile();
  SimEngineOptions o;
  o.num_blocks = 1000;
  o.max_num_batched_tokens = 512;
  SimWorker w(0, o, &profile);
  std::vector<SimSeq> seqs = {MakeSeq(0, 1300, 4)};
  w.Enqueue(seqs[0]);
  auto steps = RunToIdle(w, seqs);
  // 512 + 512 + 276 prompt tokens, the first token with the last chunk,
  // then three decode steps.
  ASSERT_EQ(steps.size(), 6u);
  EXPECT_TRUE(steps[0].empty());
  EXPECT_TRUE(steps[1].empty());
  EXPECT_EQ(steps[2].size(), 1u);
  EXPECT_TRUE(seqs[0].finished);
  EXPECT_EQ(seqs[0].generated, 4);
  EXPECT_EQ(w.blocks_free(), 1000);
  EXPECT_EQ(w.steps(), 6);
}

// A decoding request keeps producing tokens while another prefills in
// chunks; without chunking the prefill step stalls it.
TEST(SimWorkerTest, ChunkedPrefillDoesNotStallDecodes) {
  const SimProfile profile = TestProfile();
  for (bool chunked : {true, false}) {
    SimEngineOptions o;
    o.num_blocks = 1000;
    o.max_num_batched_tokens = 512;
    o.chunked_prefill = chunked;
    SimWorker w(0, o, &profile);
    std::vector<SimSeq> seqs = {MakeSeq(0, 16, 50), MakeSeq(1, 2000, 2)};
    w.Enqueue(seqs[0]);
    StepOutcome pre, out;
    w.StartStep(seqs, &pre);
    w.FinishStep(seqs, &out);  // seq 0 prefilled, first token
    ASSERT_EQ(out.tokens.size(), 1u);
    w.Enqueue(seqs[1]);
    int stalled_steps = 0;
    for (int i = 0; i < 4; ++i) {
      StepOutcome p2, o2;
      w.StartStep(seqs, &p2);
      w.FinishStep(seqs, &o2);
      bool seq0 = false;
      for (int64_t id : o2.tokens) seq0 |= id == 0;
      if (!seq0) ++stalled_steps;
    }
    if (chunked) {
      EXPECT_EQ(stalled_steps, 0);
    } else {
      EXPECT_EQ(stalled_steps, 1);  // the whole 2000-token prompt in one step
    }
  }
}

TEST(SimWorkerTest, RunningOutOfBlocksPreemptsAndEveryoneStillFinishes) {
  const SimProfile profile = TestProfile();
  SimEngineOptions o;
  o.block_size = 16;
  o.num_blocks = 20;  // 320 tokens for three requests that want 3 x 200
  SimWorker w(0, o, &profile);
  std::vector<SimSeq> seqs = {MakeSeq(0, 40, 160), MakeSeq(1, 40, 160), MakeSeq(2, 40, 160)};
  for (SimSeq& s : seqs) w.Enqueue(s);
  RunToIdle(w, seqs);
  EXPECT_GT(w.preemptions(), 0);
  for (const SimSeq& s : seqs) {
    EXPECT_TRUE(s.finished);
    EXPECT_EQ(s.generated, 160);
    EXPECT_EQ(s.blocks, 0);
  }
  EXPECT_EQ(w.blocks_free(), 20);
  EXPECT_EQ(w.num_running(), 0);
  EXPECT_EQ(w.blocks_needed_waiting(), 0);
}

TEST(SimWorkerTest, ReservationsHideBlocksUntilReleased) {
  const SimProfile profile = TestProfile();
  SimEngineOptions o;
  o.num_blocks = 10;
  SimWorker w(0, o, &profile);
  EXPECT_TRUE(w.Reserve(8));
  EXPECT_EQ(w.blocks_free(), 2);
  EXPECT_FALSE(w.Reserve(3));
  w.Unreserve(8);
  EXPECT_EQ(w.blocks_free(), 10);
}

}  // namespace
}  // namespace ferry::sim
