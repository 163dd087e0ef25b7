#include "server/admission.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/openai_error.h"

namespace ferry {
namespace {

TEST(AdmissionTest, RefusesWhenTheQueueIsFull) {
  Admission a(AdmissionOptions{.max_running = 1, .max_waiting = 0, .max_wait = absl::Milliseconds(50)});
  auto first = a.Acquire(-1);
  ASSERT_TRUE(first.ok());
  auto second = a.Acquire(-1);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  HttpResponse r = ErrorResponse(second.status());
  EXPECT_EQ(r.status, 429);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Retry-After");
}

TEST(AdmissionTest, WaitsForASlotUntilTheDeadline) {
  Admission a(AdmissionOptions{.max_running = 1, .max_waiting = 4, .max_wait = absl::Milliseconds(100)});
  auto first = a.Acquire(-1);
  ASSERT_TRUE(first.ok());
  absl::Time start = absl::Now();
  auto timed_out = a.Acquire(-1);
  EXPECT_EQ(timed_out.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(90));
  std::thread releaser([&] {
    absl::SleepFor(absl::Milliseconds(20));
    first->Release();
  });
  auto later = a.Acquire(-1);
  EXPECT_TRUE(later.ok());
  releaser.join();
  EXPECT_EQ(a.running(), 1);
}

TEST(AdmissionTest, PerKeyLimitLeavesOtherKeysAlone) {
  Admission a(AdmissionOptions{.max_running = 10, .max_running_per_key = 1, .max_waiting = 0});
  auto k0 = a.Acquire(0);
  ASSERT_TRUE(k0.ok());
  EXPECT_FALSE(a.Acquire(0).ok());
  auto k1 = a.Acquire(1);
  EXPECT_TRUE(k1.ok());
  EXPECT_EQ(a.running(), 2);
}

TEST(AdmissionTest, PerKeyQueueFullIsRefusedWhileOtherKeysStillQueue) {
  Admission a(AdmissionOptions{.max_running = 1, .max_waiting = 10, .max_waiting_per_key = 1,
                               .max_wait = absl::Seconds(5)});
  auto running = a.Acquire(0);
  ASSERT_TRUE(running.ok());
  std::thread k0([&] { EXPECT_TRUE(a.Acquire(0).ok()); });
  std::thread k1([&] { EXPECT_TRUE(a.Acquire(1).ok()); });
  while (a.waiting() < 2) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(a.waiting(0), 1);
  EXPECT_EQ(a.waiting(1), 1);
  // Key 0's queue is full; key 2's is not.
  auto refused = a.Acquire(0);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("this API key already has 1 requests waiting"), std::string::npos)
      << refused.status();
  HttpResponse r = ErrorResponse(refused.status());
  EXPECT_EQ(r.status, 429);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Retry-After");
  EXPECT_EQ(a.counts().refused_queue_full, 1);
  running->Release();
  k0.join();
  k1.join();
  EXPECT_EQ(a.running(), 0);
  EXPECT_EQ(a.waiting(), 0);
  EXPECT_EQ(a.counts().waited, 2);
}

TEST(AdmissionTest, WaiterPastItsDeadlineLeavesTheQueue) {
  Admission a(AdmissionOptions{.max_running = 1, .max_waiting = 4, .max_wait = absl::Seconds(30)});
  auto running = a.Acquire(3);
  ASSERT_TRUE(running.ok());
  const absl::Time start = absl::Now();
  // An explicit deadline earlier than max_wait wins.
  auto late = a.Acquire(3, start + absl::Milliseconds(60));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(55));
  ASSERT_EQ(late.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorResponse(late.status()).status, 429);
  EXPECT_EQ(ErrorResponse(late.status()).headers.size(), 1u);
  EXPECT_EQ(a.waiting(), 0);
  EXPECT_EQ(a.waiting(3), 0);
  EXPECT_EQ(a.counts().refused_deadline, 1);
  // The slot it gave up is not lost: the next request of the key gets it.
  running->Release();
  EXPECT_TRUE(a.Acquire(3).ok());
}

// Key 0 queues many requests before key 1 queues a few: as slots free, the
// keys take turns, so key 1 is not served only after all of key 0.
TEST(AdmissionTest, KeysTakeTurnsForFreedSlots) {
  Admission a(AdmissionOptions{.max_running = 1, .max_waiting = 64, .max_wait = absl::Seconds(30)});
  auto first = a.Acquire(0);
  ASSERT_TRUE(first.ok());
  absl::Mutex mu;
  std::vector<int> order;
  std::vector<std::thread> threads;
  auto enqueue = [&](int key, int count) {
    for (int i = 0; i < count; ++i) {
      const int before = a.waiting();
      threads.emplace_back([&, key] {
        auto p = a.Acquire(key);
        ASSERT_TRUE(p.ok()) << p.status();
        absl::MutexLock lock(&mu);
        order.push_back(key);
        // The permit is released at the end of this scope, handing the slot on.
      });
      while (a.waiting() == before) absl::SleepFor(absl::Milliseconds(1));
    }
  };
  enqueue(0, 6);
  enqueue(1, 3);
  first->Release();
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(order.size(), 9u);
  // Key 0 had the first turn (admitted at once), so key 1 goes next; turns
  // then alternate while both keys wait: 1 0 1 0 1 0 0 0 0.
  const std::vector<int> expected = {1, 0, 1, 0, 1, 0, 0, 0, 0};
  EXPECT_EQ(order, expected);
  EXPECT_EQ(a.running(), 0);
}

// A key at its running limit does not block other keys behind it.
TEST(AdmissionTest, KeyAtItsRunningLimitDoesNotBlockOthers) {
  Admission a(AdmissionOptions{.max_running = 4, .max_running_per_key = 1, .max_waiting = 8,
                               .max_wait = absl::Seconds(30)});
  auto k0 = a.Acquire(0);
  ASSERT_TRUE(k0.ok());
  std::thread waiter([&] { EXPECT_TRUE(a.Acquire(0).ok()); });
  while (a.waiting(0) < 1) absl::SleepFor(absl::Milliseconds(1));
  // Key 1 goes straight in although key 0 has a waiter.
  auto k1 = a.Acquire(1);
  EXPECT_TRUE(k1.ok());
  EXPECT_EQ(a.waiting(0), 1);
  k0->Release();
  waiter.join();
  EXPECT_EQ(a.waiting(), 0);
}

TEST(AdmissionTest, CloseWakesWaitersWithUnavailable) {
  Admission a(AdmissionOptions{.max_running = 1, .max_waiting = 4, .max_wait = absl::Seconds(30)});
  auto running = a.Acquire(-1);
  ASSERT_TRUE(running.ok());
  std::thread waiter([&] { EXPECT_EQ(a.Acquire(-1).status().code(), absl::StatusCode::kUnavailable); });
  while (a.waiting() < 1) absl::SleepFor(absl::Milliseconds(1));
  a.Close();
  waiter.join();
  EXPECT_EQ(a.waiting(), 0);
}

TEST(AdmissionTest, CloseRefusesNewRequests) {
  Admission a(AdmissionOptions{});
  a.Close();
  EXPECT_EQ(a.Acquire(-1).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ferry
