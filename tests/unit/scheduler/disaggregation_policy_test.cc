#include "scheduler/policy/disaggregation_policy.h"

#include "gtest/gtest.h"
#include "tests/unit/scheduler/policy_test_util.h"

namespace ferry {
namespace {

using testing::MakeRequest;
using testing::MakeWorker;
const absl::Time kNow = absl::UnixEpoch();

DisaggregationPolicy Make(int64_t threshold = 64) {
  return DisaggregationPolicy(std::make_unique<LeastLoadedPolicy>(),
                              DisaggregationOptions{.enabled = true, .min_prompt_tokens = threshold});
}

ClusterView PdCluster() {
  ClusterView v;
  v.workers = {MakeWorker("p1", 500, 1, WorkerRoleKind::kPrefill), MakeWorker("p2", 600, 1, WorkerRoleKind::kPrefill),
               MakeWorker("d1", 300, 4, WorkerRoleKind::kDecode), MakeWorker("d2", 800, 4, WorkerRoleKind::kDecode)};
  return v;
}

TEST(DisaggregationTest, LongPromptsStartOnAPrefillWorker) {
  auto p = Make();
  DispatchRequest r{.num_prompt_tokens = 200};
  auto placement = p.Place(PdCluster(), r, kNow);
  ASSERT_TRUE(placement.ok());
  EXPECT_EQ(placement->worker_id, "p2");
  EXPECT_TRUE(placement->hand_off_after_prefill);
}

TEST(DisaggregationTest, ShortPromptsStayColocated) {
  auto p = Make();
  ClusterView v = PdCluster();
  DispatchRequest r{.num_prompt_tokens = 10};
  auto placement = p.Place(v, r, kNow);
  EXPECT_FALSE(placement->hand_off_after_prefill);
  EXPECT_EQ(placement->worker_id, "d2");  // no mixed worker: a decode worker
  v.workers.push_back(MakeWorker("m", 100, 1));
  EXPECT_EQ(p.Place(v, r, kNow)->worker_id, "m");  // a mixed one first
}

TEST(DisaggregationTest, ParallelSamplesAreNotHandedOff) {
  auto p = Make();
  DispatchRequest r{.num_prompt_tokens = 200, .num_samples = 3};
  EXPECT_FALSE(p.Place(PdCluster(), r, kNow)->hand_off_after_prefill);
}

TEST(DisaggregationTest, NoPrefillWorkersMeansColocated) {
  auto p = Make();
  ClusterView v;
  v.workers = {MakeWorker("m1", 100, 1), MakeWorker("m2", 200, 1)};
  auto placement = p.Place(v, DispatchRequest{.num_prompt_tokens = 1000}, kNow);
  EXPECT_EQ(placement->worker_id, "m2");
  EXPECT_FALSE(placement->hand_off_after_prefill);
}

TEST(DisaggregationTest, OnlyPrefillWorkersKeepShortPrompts) {
  auto p = Make();
  ClusterView v;
  v.workers = {MakeWorker("p1", 100, 1, WorkerRoleKind::kPrefill)};
  auto placement = p.Place(v, DispatchRequest{.num_prompt_tokens = 4}, kNow);
  EXPECT_EQ(placement->worker_id, "p1");
  EXPECT_FALSE(placement->hand_off_after_prefill);
}

TEST(DisaggregationTest, ChoosesTheFreestDecodeWorkerThatFits) {
  auto p = Make();
  ClusterView v = PdCluster();
  RequestView r = MakeRequest("r", "p1", 0, 20);
  EXPECT_EQ(p.ChooseDecodeWorker(v, r, kNow), "d2");
  v.workers[3].load.blocks_free = 10;  // d2 cannot hold 20 blocks now
  EXPECT_EQ(p.ChooseDecodeWorker(v, r, kNow), "d1");
  v.workers[2].draining = true;
  EXPECT_EQ(p.ChooseDecodeWorker(v, r, kNow), std::nullopt);  // prefill worker keeps decoding
}

TEST(DisaggregationTest, DisabledNeverHandsOff) {
  DisaggregationPolicy p(std::make_unique<LeastLoadedPolicy>(), DisaggregationOptions{.enabled = false});
  auto placement = p.Place(PdCluster(), DispatchRequest{.num_prompt_tokens = 1000}, kNow);
  EXPECT_FALSE(placement->hand_off_after_prefill);
  EXPECT_EQ(placement->worker_id, "d2");
}

}  // namespace
}  // namespace ferry
