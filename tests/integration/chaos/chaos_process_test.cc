// Chaos under load: real `ferry` processes on loopback (stories260K), four
// clients streaming greedy completions through the gateway(s) without pause,
// and one fault each: SIGKILL a worker, the scheduler (then restart it) or a
// gateway; SIGSTOP a worker until its heartbeats time out, then SIGCONT; a
// slow worker (stopped most of the time, never long enough to time out).
// Every request is checked against a reference greedy run (chaos_cluster.h).
#include <signal.h>

#include "tests/integration/chaos/chaos_cluster.h"

namespace ferry::testing {
namespace {

constexpr int kMaxTokens = 160;
constexpr int kClients = 4;
// New requests must succeed again this soon after a fault (or a restart).
constexpr absl::Duration kRecoveryBound = absl::Seconds(10);
// Workers free every block this soon after the load stops.
constexpr absl::Duration kIdleBound = absl::Seconds(10);

class ChaosProcessTest : public ::testing::Test {
 protected:
  void StartCluster(ChaosClusterOptions options) {
    std::string why;
    if (!cluster_.Start(options, &why)) {
      if (absl::StrContains(why, "absent")) GTEST_SKIP() << why;
      FAIL() << why;
    }
    ASSERT_TRUE(cluster_.ComputeReferences(kMaxTokens));
  }

  ChaosCluster cluster_;
};

TEST_F(ChaosProcessTest, WorkerKilledUnderLoadItsStreamsFinishElsewhere) {
  StartCluster({.num_workers = 2, .num_gateways = 1});
  if (IsSkipped() || HasFatalFailure()) return;
  cluster_.StartLoad(kClients);
  ASSERT_TRUE(cluster_.WaitForCompleted(4, absl::Seconds(60)));
  ASSERT_TRUE(cluster_.WaitForRequestsOn(1, 1, absl::Seconds(10))) << "no request ever ran on worker 1";
  cluster_.KillWorker(1);
  const absl::Duration recovered = cluster_.TimeToServe(0, kRecoveryBound);
  EXPECT_LT(recovered, kRecoveryBound);
  const int before = cluster_.NumCompleted();
  EXPECT_TRUE(cluster_.WaitForCompleted(before + 8, absl::Seconds(60)));
  cluster_.StopLoad();
  std::printf("worker killed: new requests served %s after the kill\n",
              absl::FormatDuration(recovered).c_str());
  // The dead worker's streams were resumed on the other one (recompute):
  // every request completes, none fails.
  ChaosCluster::Tally t = cluster_.CheckOutcomes();
  EXPECT_EQ(t.failed_clean, 0);
  EXPECT_GE(t.completed, before + 8);
  EXPECT_TRUE(cluster_.WaitForNoBlocksUsed(kIdleBound, {0}));
  EXPECT_TRUE(cluster_.WaitForAliveWorkers(1, absl::Seconds(5))) << "the killed worker is still listed alive";
}

TEST_F(ChaosProcessTest, SchedulerKilledUnderLoadAndRestarted) {
  StartCluster({.num_workers = 2, .num_gateways = 1});
  if (IsSkipped() || HasFatalFailure()) return;
  cluster_.StartLoad(kClients);
  ASSERT_TRUE(cluster_.WaitForCompleted(4, absl::Seconds(60)));
  cluster_.KillScheduler(SIGKILL);
  // Streams in flight end with an error event; new requests get 503.
  absl::SleepFor(absl::Milliseconds(500));
  // The workers abort what the dead scheduler ran there.
  EXPECT_TRUE(cluster_.WaitForNoBlocksUsed(kIdleBound));
  const int port = cluster_.sched_port();
  ASSERT_TRUE(cluster_.StartScheduler(absl::StrCat("127.0.0.1:", port)));
  ASSERT_EQ(cluster_.sched_port(), port);
  const absl::Duration recovered = cluster_.TimeToServe(0, kRecoveryBound);
  EXPECT_LT(recovered, kRecoveryBound);
  const int before = cluster_.NumCompleted();
  EXPECT_TRUE(cluster_.WaitForCompleted(before + 8, absl::Seconds(60)));
  cluster_.StopLoad();
  std::printf("scheduler restarted: requests served again %s after the restart\n",
              absl::FormatDuration(recovered).c_str());
  ChaosCluster::Tally t = cluster_.CheckOutcomes();
  EXPECT_GT(t.failed_clean, 0) << "the kill should have broken some streams";
  EXPECT_TRUE(cluster_.WaitForNoBlocksUsed(kIdleBound));
  EXPECT_TRUE(cluster_.WaitForAliveWorkers(2, absl::Seconds(5)));
}

TEST_F(ChaosProcessTest, GatewayKilledUnderLoadTheOtherKeepsServing) {
  StartCluster({.num_workers = 2, .num_gateways = 2});
  if (IsSkipped() || HasFatalFailure()) return;
  cluster_.StartLoad(kClients);
  ASSERT_TRUE(cluster_.WaitForCompleted(4, absl::Seconds(60)));
  const int port = cluster_.gateway_port(1);
  cluster_.KillGateway(1);
  // Gateway 0 never stops serving.
  const absl::Duration served = cluster_.TimeToServe(0, kRecoveryBound);
  EXPECT_LT(served, kRecoveryBound);
  absl::SleepFor(absl::Milliseconds(300));
  // The scheduler aborts the dead gateway's streams: no block stays held
  // once the surviving gateway's load is stopped too.
  const int before = cluster_.NumCompleted();
  EXPECT_TRUE(cluster_.WaitForCompleted(before + 4, absl::Seconds(60)));
  // A gateway restarted on the same port serves at once.
  ASSERT_TRUE(cluster_.StartGateway(1, absl::StrCat("127.0.0.1:", port)));
  ASSERT_EQ(cluster_.gateway_port(1), port);
  const absl::Duration restarted = cluster_.TimeToServe(1, kRecoveryBound);
  EXPECT_LT(restarted, kRecoveryBound);
  const int before_restart = cluster_.NumCompleted();
  EXPECT_TRUE(cluster_.WaitForCompleted(before_restart + 8, absl::Seconds(60)));
  cluster_.StopLoad();
  std::printf("gateway killed: the other served %s later; the restarted one %s after its start\n",
              absl::FormatDuration(served).c_str(), absl::FormatDuration(restarted).c_str());
  ChaosCluster::Tally t = cluster_.CheckOutcomes(/*may_cut=*/{1});
  EXPECT_EQ(t.failed_clean, 0);
  EXPECT_TRUE(cluster_.WaitForNoBlocksUsed(kIdleBound));
}

TEST_F(ChaosProcessTest, WorkerHangFoundByHeartbeatTimeoutThenResumed) {
  StartCluster({.num_workers = 2, .num_gateways = 1, .worker_timeout = "500ms"});
  if (IsSkipped() || HasFatalFailure()) return;
  cluster_.StartLoad(kClients);
  ASSERT_TRUE(cluster_.WaitForCompleted(4, absl::Seconds(60)));
  ASSERT_TRUE(cluster_.WaitForRequestsOn(1, 1, absl::Seconds(10))) << "no request ever ran on worker 1";
  cluster_.SignalWorker(1, SIGSTOP);
  const absl::Time stopped = absl::Now();
  // Found dead by the heartbeat timeout; its requests continue on worker 0.
  EXPECT_TRUE(cluster_.WaitForAliveWorkers(1, absl::Seconds(5)));
  const absl::Duration detected = absl::Now() - stopped;
  const int before = cluster_.NumCompleted();
  EXPECT_TRUE(cluster_.WaitForCompleted(before + 8, absl::Seconds(60)));
  // Resumed: it registers again and frees what it held for the old streams.
  cluster_.SignalWorker(1, SIGCONT);
  const absl::Time resumed = absl::Now();
  EXPECT_TRUE(cluster_.WaitForAliveWorkers(2, kRecoveryBound));
  const absl::Duration rejoined = absl::Now() - resumed;
  const int after = cluster_.NumCompleted();
  EXPECT_TRUE(cluster_.WaitForCompleted(after + 8, absl::Seconds(60)));
  cluster_.StopLoad();
  std::printf("worker hang: declared dead %s after SIGSTOP; alive again %s after SIGCONT\n",
              absl::FormatDuration(detected).c_str(), absl::FormatDuration(rejoined).c_str());
  ChaosCluster::Tally t = cluster_.CheckOutcomes();
  EXPECT_EQ(t.failed_clean, 0);
  EXPECT_TRUE(cluster_.WaitForNoBlocksUsed(kIdleBound));
}

TEST_F(ChaosProcessTest, SlowWorkerGivesTheSameTextAndHoldsNothing) {
  StartCluster({.num_workers = 2, .num_gateways = 1, .worker_timeout = "2s"});
  if (IsSkipped() || HasFatalFailure()) return;
  cluster_.StartLoad(kClients);
  ASSERT_TRUE(cluster_.WaitForCompleted(4, absl::Seconds(60)));
  // Worker 1 runs 20 ms of every 200 ms (ten times slower), never stopped
  // long enough for the heartbeat timeout.
  std::atomic<bool> stop{false};
  std::thread slower([&] {
    while (!stop) {
      cluster_.SignalWorker(1, SIGSTOP);
      absl::SleepFor(absl::Milliseconds(180));
      cluster_.SignalWorker(1, SIGCONT);
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  EXPECT_TRUE(cluster_.WaitForRequestsOn(1, 1, absl::Seconds(10))) << "nothing ran on the slow worker";
  const int before = cluster_.NumCompleted();
  EXPECT_TRUE(cluster_.WaitForCompleted(before + 12, absl::Seconds(90)));
  const bool both_alive = cluster_.AliveWorkers() == 2;
  stop = true;
  slower.join();
  cluster_.SignalWorker(1, SIGCONT);
  cluster_.StopLoad();
  EXPECT_TRUE(both_alive) << "a slow worker was taken for a dead one";
  ChaosCluster::Tally t = cluster_.CheckOutcomes();
  EXPECT_EQ(t.failed_clean, 0);
  EXPECT_TRUE(cluster_.WaitForNoBlocksUsed(kIdleBound));
}

}  // namespace
}  // namespace ferry::testing
