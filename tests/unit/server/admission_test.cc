#include "server/admission.h"

#include <thread>

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

TEST(AdmissionTest, CloseRefusesNewRequests) {
  Admission a(AdmissionOptions{});
  a.Close();
  EXPECT_EQ(a.Acquire(-1).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ferry
