#include "benchmarks/sim/event_queue.h"

#include <gtest/gtest.h>

namespace ferry::sim {
namespace {

TEST(EventQueueTest, PopsInTimeOrder) {
  EventQueue q;
  q.Push(3.0, EventKind::kStepDone, 3);
  q.Push(1.0, EventKind::kArrival, 1);
  q.Push(2.0, EventKind::kHeartbeat, 2);
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.Pop().a, 1);
  EXPECT_EQ(q.Pop().a, 2);
  Event last = q.Pop();
  EXPECT_EQ(last.a, 3);
  EXPECT_EQ(last.kind, EventKind::kStepDone);
  EXPECT_TRUE(q.empty());
}

TEST(EventQueueTest, EqualTimesPopInSchedulingOrder) {
  EventQueue q;
  for (int i = 0; i < 100; ++i) q.Push(5.0, EventKind::kArrival, i);
  q.Push(4.0, EventKind::kHeartbeat, -1);
  EXPECT_EQ(q.Pop().a, -1);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(q.Pop().a, i);
}

}  // namespace
}  // namespace ferry::sim
