#include "scheduler/service/worker_registry.h"

#include "common/clock.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

WorkerRegistration Reg(std::string address, std::string incarnation) {
  WorkerRegistration r;
  r.address = std::move(address);
  r.incarnation_id = std::move(incarnation);
  return r;
}

TEST(WorkerRegistryTest, RegisterHeartbeatAndTimeout) {
  FakeClock clock;
  WorkerRegistry reg(WorkerRegistryOptions{.worker_timeout = absl::Seconds(1)});
  auto a = reg.Register(Reg("h:1", "i1"), clock.Now());
  ASSERT_TRUE(a.ok());
  WorkerLoad load;
  load.blocks_free = 7;
  clock.Advance(absl::Milliseconds(800));
  ASSERT_TRUE(reg.Heartbeat(a->worker_id, "i1", load, clock.Now()).ok());
  EXPECT_EQ(reg.Find(a->worker_id)->load.blocks_free, 7);
  clock.Advance(absl::Milliseconds(900));
  EXPECT_TRUE(reg.ExpireSilent(clock.Now()).empty());
  clock.Advance(absl::Milliseconds(200));
  EXPECT_EQ(reg.ExpireSilent(clock.Now()), std::vector<std::string>{a->worker_id});
  EXPECT_FALSE(reg.Find(a->worker_id)->alive);
  // A dead worker's heartbeat is refused: it must register again.
  EXPECT_EQ(reg.Heartbeat(a->worker_id, "i1", load, clock.Now()).status().code(), absl::StatusCode::kNotFound);
  auto again = reg.Register(Reg("h:1", "i1"), clock.Now());
  EXPECT_EQ(again->worker_id, a->worker_id);
  EXPECT_TRUE(reg.Find(a->worker_id)->alive);
}

TEST(WorkerRegistryTest, NewIncarnationReplacesTheOldOne) {
  FakeClock clock;
  WorkerRegistry reg;
  auto a = reg.Register(Reg("h:1", "i1"), clock.Now());
  auto b = reg.Register(Reg("h:1", "i2"), clock.Now());
  EXPECT_NE(a->worker_id, b->worker_id);
  EXPECT_EQ(b->replaced, std::vector<std::string>{a->worker_id});
  EXPECT_FALSE(reg.Find(a->worker_id)->alive);
  EXPECT_EQ(reg.FindByAddress("h:1")->worker_id, b->worker_id);
  EXPECT_EQ(reg.Heartbeat(b->worker_id, "i1", {}, clock.Now()).status().code(), absl::StatusCode::kNotFound);
}

TEST(WorkerRegistryTest, RejectsIncompleteRegistrations) {
  WorkerRegistry reg;
  EXPECT_EQ(reg.Register(Reg("", "i"), absl::UnixEpoch()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reg.Register(Reg("h:1", ""), absl::UnixEpoch()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WorkerRegistryTest, DrainingPendingAndForgetting) {
  FakeClock clock;
  WorkerRegistry reg(WorkerRegistryOptions{.worker_timeout = absl::Seconds(1), .forget_after = absl::Seconds(10)});
  auto a = reg.Register(Reg("h:1", "i1"), clock.Now());
  EXPECT_EQ(reg.SetDraining("nope", true).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(reg.SetDraining(a->worker_id, true).ok());
  EXPECT_TRUE(reg.Find(a->worker_id)->draining);
  reg.AddPending(a->worker_id, 5);
  EXPECT_EQ(reg.Find(a->worker_id)->load.pending_blocks, 5);
  ASSERT_TRUE(reg.Heartbeat(a->worker_id, "i1", {}, clock.Now()).ok());
  EXPECT_EQ(reg.Find(a->worker_id)->load.pending_blocks, 0);
  clock.Advance(absl::Seconds(2));
  reg.ExpireSilent(clock.Now());
  clock.Advance(absl::Seconds(11));
  reg.ExpireSilent(clock.Now());
  EXPECT_EQ(reg.Find(a->worker_id), nullptr);
}

}  // namespace
}  // namespace ferry
