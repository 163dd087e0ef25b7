#include "scheduler/policy/dispatch_policy.h"

#include "gtest/gtest.h"
#include "tests/unit/scheduler/policy_test_util.h"

namespace ferry {
namespace {

using testing::MakeWorker;
const absl::Time kNow = absl::UnixEpoch();

TEST(FreenessTest, FollowsLlumnix) {
  WorkerLoad l;
  l.blocks_free = 100;
  l.blocks_needed_waiting = 20;
  l.running_requests = 4;
  EXPECT_DOUBLE_EQ(Freeness(l), 20.0);
  l.running_requests = 0;  // max(running, 1): no division by zero
  EXPECT_DOUBLE_EQ(Freeness(l), 80.0);
  l.blocks_needed_waiting = 150;
  EXPECT_LT(Freeness(l), 0);
  l.blocks_needed_waiting = 0;
  l.pending_requests = 1;
  l.pending_blocks = 10;
  EXPECT_DOUBLE_EQ(Freeness(l), 90.0);
}

TEST(RoundRobinTest, CyclesAndSkipsDrainingAndDead) {
  ClusterView v;
  v.workers = {MakeWorker("a", 10, 0), MakeWorker("b", 10, 0), MakeWorker("c", 10, 0)};
  v.workers[1].draining = true;
  RoundRobinPolicy p;
  std::vector<std::string> got;
  for (int i = 0; i < 4; ++i) got.push_back(p.Decide(v, {}, kNow)->worker_id);
  EXPECT_EQ(got, (std::vector<std::string>{"a", "c", "a", "c"}));
  v.workers[2].alive = false;
  EXPECT_EQ(p.Decide(v, {}, kNow)->worker_id, "a");
}

TEST(RoundRobinTest, KeepsRotationWhenAWorkerJoins) {
  ClusterView v;
  v.workers = {MakeWorker("a", 10, 0), MakeWorker("c", 10, 0)};
  RoundRobinPolicy p;
  EXPECT_EQ(p.Decide(v, {}, kNow)->worker_id, "a");
  v.workers.push_back(MakeWorker("b", 10, 0));
  EXPECT_EQ(p.Decide(v, {}, kNow)->worker_id, "b");
  EXPECT_EQ(p.Decide(v, {}, kNow)->worker_id, "c");
}

TEST(DispatchPolicyTest, NoWorkerIsUnavailable) {
  ClusterView v;
  for (const char* name : {"round-robin", "least-loaded", "prefix-aware"}) {
    auto p = MakeDispatchPolicy(name);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ((*p)->Decide(v, {}, kNow).status().code(), absl::StatusCode::kUnavailable) << name;
  }
  EXPECT_EQ(MakeDispatchPolicy("random").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LeastLoadedTest, PicksHighestFreeness) {
  ClusterView v;
  v.workers = {MakeWorker("a", 100, 10), MakeWorker("b", 100, 2), MakeWorker("c", 500, 50)};
  LeastLoadedPolicy p;
  EXPECT_EQ(p.Decide(v, {}, kNow)->worker_id, "b");  // 50 > 10 = 10
  v.workers[1].load.blocks_needed_waiting = 90;      // b: 5 per request now
  EXPECT_EQ(p.Decide(v, {}, kNow)->worker_id, "a");  // a and c tie at 10: lower id
}

TEST(LeastLoadedTest, PendingDispatchesSpreadABurst) {
  ClusterView v;
  v.workers = {MakeWorker("a", 100, 1), MakeWorker("b", 100, 1)};
  LeastLoadedPolicy p;
  std::string first = p.Decide(v, {}, kNow)->worker_id;
  for (WorkerView& w : v.workers) {
    if (w.worker_id == first) {
      w.load.pending_requests = 1;
      w.load.pending_blocks = 4;
    }
  }
  EXPECT_NE(p.Decide(v, {}, kNow)->worker_id, first);
}

TEST(PrefixAwareTest, PrefersLongestCachedPrefix) {
  ClusterView v;
  v.workers = {MakeWorker("a", 100, 1), MakeWorker("b", 90, 1), MakeWorker("c", 90, 1)};
  DispatchRequest r;
  r.cached_prefix_blocks = {{"b", 3}, {"c", 5}};
  PrefixAwarePolicy p;
  auto d = p.Decide(v, r, kNow);
  EXPECT_EQ(d->worker_id, "c");
  EXPECT_EQ(d->reason, "prefix-hit");
}

TEST(PrefixAwareTest, FallsBackToLeastLoadedWithoutAMatch) {
  ClusterView v;
  v.workers = {MakeWorker("a", 100, 1), MakeWorker("b", 200, 1)};
  PrefixAwarePolicy p;
  EXPECT_EQ(p.Decide(v, {}, kNow)->worker_id, "b");
}

TEST(PrefixAwareTest, AvoidsAHotSpot) {
  ClusterView v;
  v.workers = {MakeWorker("a", 1000, 1), MakeWorker("hot", 100, 10)};
  DispatchRequest r;
  r.cached_prefix_blocks = {{"hot", 8}};
  PrefixAwarePolicy p(PrefixAwareOptions{.max_freeness_gap = 100});
  auto d = p.Decide(v, r, kNow);
  EXPECT_EQ(d->worker_id, "a");  // hot: 10 per request vs 1000
  EXPECT_EQ(d->reason, "prefix-overloaded");
  // A long queue on the cached worker also sends the request elsewhere.
  v.workers[1].load = v.workers[0].load;
  v.workers[1].load.waiting_requests = 5;
  v.workers[1].load.blocks_free = 1000;
  EXPECT_EQ(p.Decide(v, r, kNow)->worker_id, "a");
  v.workers[1].load.waiting_requests = 1;
  EXPECT_EQ(p.Decide(v, r, kNow)->worker_id, "hot");
}

TEST(PrefixAwareTest, AQuietClusterStillUsesTheCache) {
  // The cache holder runs one request and has 900 blocks for it, the other
  // is idle with 1000: a gap of 100 blocks, but the holder has plenty.
  ClusterView v;
  v.workers = {MakeWorker("idle", 1000, 0), MakeWorker("holder", 900, 1)};
  DispatchRequest r;
  r.cached_prefix_blocks = {{"holder", 8}};
  PrefixAwarePolicy p;
  auto d = p.Decide(v, r, kNow);
  EXPECT_EQ(d->worker_id, "holder");
  EXPECT_EQ(d->reason, "prefix-hit");
  // Under pressure (40 blocks per request against 1000) it goes elsewhere.
  v.workers[1].load.blocks_free = 40;
  EXPECT_EQ(p.Decide(v, r, kNow)->worker_id, "idle");
}

TEST(PrefixAwareTest, IgnoresMatchesOnDrainingWorkers) {
  ClusterView v;
  v.workers = {MakeWorker("a", 100, 1), MakeWorker("b", 100, 1)};
  v.workers[1].draining = true;
  DispatchRequest r;
  r.cached_prefix_blocks = {{"b", 8}};
  PrefixAwarePolicy p;
  EXPECT_EQ(p.Decide(v, r, kNow)->worker_id, "a");
}

}  // namespace
}  // namespace ferry
