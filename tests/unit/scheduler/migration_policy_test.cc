#include "scheduler/policy/migration_policy.h"

#include "gtest/gtest.h"
#include "tests/unit/scheduler/policy_test_util.h"

namespace ferry {
namespace {

using testing::MakeRequest;
using testing::MakeWorker;
const absl::Time kNow = absl::UnixEpoch() + absl::Hours(1);

TEST(MigrationPolicyTest, BalancedClusterMovesNothing) {
  ClusterView v;
  v.workers = {MakeWorker("a", 100, 2), MakeWorker("b", 110, 2)};
  v.requests = {MakeRequest("r1", "a", 0, 5), MakeRequest("r2", "a", 0, 5)};
  MigrationPolicy p;
  EXPECT_TRUE(p.Decide(v, kNow).empty());
}

TEST(MigrationPolicyTest, MovesLowestPriorityThenLeastKvFromMostLoaded) {
  ClusterView v;
  v.workers = {MakeWorker("busy", 20, 4), MakeWorker("idle", 900, 1), MakeWorker("mid", 400, 2)};
  v.requests = {MakeRequest("hi", "busy", 5, 2), MakeRequest("lo-big", "busy", 0, 30),
                MakeRequest("lo-small", "busy", 0, 10), MakeRequest("x", "idle", 0, 10)};
  MigrationPolicy p;
  auto orders = p.Decide(v, kNow);
  ASSERT_FALSE(orders.empty());
  EXPECT_EQ(orders[0].request_id, "lo-small");
  EXPECT_EQ(orders[0].source_worker_id, "busy");
  EXPECT_EQ(orders[0].destination_worker_id, "idle");
  EXPECT_EQ(orders[0].reason, "balance");
}

TEST(MigrationPolicyTest, RespectsInFlightLimitCooldownAndMigratable) {
  ClusterView v;
  v.workers = {MakeWorker("busy", 20, 4), MakeWorker("idle", 900, 1)};
  v.requests = {MakeRequest("a", "busy", 0, 2), MakeRequest("b", "busy", 0, 3)};
  MigrationPolicy p(MigrationOptions{.max_in_flight = 1});
  v.requests[0].migrating = true;
  EXPECT_TRUE(p.Decide(v, kNow).empty());  // budget used by the one in flight
  v.requests[0].migrating = false;
  v.requests[0].migratable = false;
  v.requests[1].last_migrated = kNow - absl::Seconds(1);
  EXPECT_TRUE(p.Decide(v, kNow).empty());
  v.requests[1].last_migrated = kNow - absl::Seconds(5);
  ASSERT_EQ(p.Decide(v, kNow).size(), 1u);
}

TEST(MigrationPolicyTest, DoesNotJustSwapTheImbalance) {
  ClusterView v;
  // One huge request on a worker with one request: moving it would make the
  // destination the loaded one.
  v.workers = {MakeWorker("a", 0, 1), MakeWorker("b", 100, 0)};
  v.requests = {MakeRequest("big", "a", 0, 900)};
  v.workers[0].load.blocks_free = 100;
  v.workers[1].load.blocks_free = 950;
  MigrationPolicy p(MigrationOptions{.freeness_gap_threshold = 1});
  EXPECT_TRUE(p.Decide(v, kNow).empty());
}

TEST(MigrationPolicyTest, DrainingWorkerMovesEverythingEvenWithBalanceOff) {
  ClusterView v;
  v.workers = {MakeWorker("d", 500, 3), MakeWorker("a", 500, 3), MakeWorker("b", 500, 3)};
  v.workers[0].draining = true;
  v.requests = {MakeRequest("r1", "d", 0, 5), MakeRequest("r2", "d", 1, 5), MakeRequest("r3", "d", 0, 1)};
  MigrationPolicy p(MigrationOptions{.balance = false, .max_in_flight = 8});
  auto orders = p.Decide(v, kNow);
  ASSERT_EQ(orders.size(), 3u);
  EXPECT_EQ(orders[0].request_id, "r3");
  EXPECT_EQ(orders[2].request_id, "r2");  // highest priority last
  for (const auto& o : orders) {
    EXPECT_EQ(o.reason, "drain");
    EXPECT_NE(o.destination_worker_id, "d");
  }
  // Spread by the loads updated in the same round.
  EXPECT_NE(orders[0].destination_worker_id, orders[1].destination_worker_id);
}

TEST(MigrationPolicyTest, NeverMovesIntoPrefillOrDrainingWorkers) {
  ClusterView v;
  v.workers = {MakeWorker("busy", 10, 5), MakeWorker("p", 990, 0, WorkerRoleKind::kPrefill),
               MakeWorker("dr", 990, 0)};
  v.workers[2].draining = true;
  v.requests = {MakeRequest("r", "busy", 0, 2)};
  MigrationPolicy p;
  EXPECT_TRUE(p.Decide(v, kNow).empty());
  EXPECT_EQ(p.ChooseDestination(v, v.requests[0]), std::nullopt);
  v.workers.push_back(MakeWorker("ok", 100, 1, WorkerRoleKind::kDecode));
  EXPECT_EQ(p.ChooseDestination(v, v.requests[0]), "ok");
}

}  // namespace
}  // namespace ferry
