#include "scheduler/policy/migration_tracker.h"

#include "common/clock.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

int64_t Aborted(const MigrationTracker& t, MigrationAbortReason r) {
  return t.counts().aborted[static_cast<int>(r)];
}

TEST(MigrationTrackerTest, StartThenCommit) {
  FakeClock clock;
  MigrationTracker t;
  ASSERT_TRUE(t.Start("r", "a", "b", "admin", clock.Now()).ok());
  EXPECT_EQ(t.Start("r", "a", "c", "admin", clock.Now()).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(t.Start("q", "a", "a", "admin", clock.Now()).code(), absl::StatusCode::kInvalidArgument);
  auto rec = t.Commit("r", clock.Now());
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->destination_worker_id, "b");
  EXPECT_EQ(t.Commit("r", clock.Now()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t.counts().started, 1);
  EXPECT_EQ(t.counts().committed, 1);
  // A committed request can move again.
  EXPECT_TRUE(t.Start("r", "b", "a", "balance", clock.Now()).ok());
}

TEST(MigrationTrackerTest, DestinationRefuses) {
  FakeClock clock;
  MigrationTracker t;
  ASSERT_TRUE(t.Start("r", "a", "b", "pd", clock.Now()).ok());
  ASSERT_TRUE(t.Abort("r", MigrationAbortReason::kRefused, clock.Now()).ok());
  EXPECT_EQ(t.Find("r"), nullptr);
  EXPECT_EQ(Aborted(t, MigrationAbortReason::kRefused), 1);
  EXPECT_EQ(t.Abort("r", MigrationAbortReason::kRefused, clock.Now()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(MigrationTrackerTest, EitherSideLost) {
  FakeClock clock;
  MigrationTracker t;
  ASSERT_TRUE(t.Start("r1", "a", "b", "balance", clock.Now()).ok());
  ASSERT_TRUE(t.Start("r2", "c", "a", "balance", clock.Now()).ok());
  ASSERT_TRUE(t.Start("r3", "c", "d", "balance", clock.Now()).ok());
  auto lost = t.OnWorkerLost("a", clock.Now());
  EXPECT_EQ(lost.size(), 2u);
  EXPECT_EQ(Aborted(t, MigrationAbortReason::kSourceLost), 1);
  EXPECT_EQ(Aborted(t, MigrationAbortReason::kDestinationLost), 1);
  EXPECT_EQ(t.num_in_flight(), 1u);
}

TEST(MigrationTrackerTest, RequestFinishesMidCopy) {
  FakeClock clock;
  MigrationTracker t;
  ASSERT_TRUE(t.Start("r", "a", "b", "drain", clock.Now()).ok());
  ASSERT_TRUE(t.Abort("r", MigrationAbortReason::kRequestFinished, clock.Now()).ok());
  EXPECT_EQ(Aborted(t, MigrationAbortReason::kRequestFinished), 1);
}

TEST(MigrationTrackerTest, TimesOutOnTheInjectedClock) {
  FakeClock clock;
  MigrationTracker t(MigrationTrackerOptions{.timeout = absl::Seconds(10)});
  ASSERT_TRUE(t.Start("old", "a", "b", "balance", clock.Now()).ok());
  clock.Advance(absl::Seconds(6));
  ASSERT_TRUE(t.Start("new", "a", "b", "balance", clock.Now()).ok());
  EXPECT_TRUE(t.Expire(clock.Now()).empty());
  clock.Advance(absl::Seconds(5));
  auto expired = t.Expire(clock.Now());
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].request_id, "old");
  EXPECT_EQ(Aborted(t, MigrationAbortReason::kTimeout), 1);
  EXPECT_NE(t.Find("new"), nullptr);
  EXPECT_EQ(MigrationAbortReasonName(MigrationAbortReason::kTimeout), "timeout");
}

}  // namespace
}  // namespace ferry
