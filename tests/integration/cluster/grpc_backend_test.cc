// The gateway's gRPC client (server/grpc_backend.cc) against an in-process
// fake worker over real gRPC on loopback: concurrent streams arrive whole
// and in order, Abort ends a stream with FINISH_REASON_ABORT and frees the
// worker, a worker that dies mid-stream ends each unfinished stream with an
// error, and destroying the backend with calls still running cancels them.
// Runs under TSan too (scripts/sanitize thread): the client's reactions run
// on gRPC's threads while the test's threads start and abort calls.
#include "server/grpc_backend.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_worker.h"

namespace ferry {
namespace {

using testing::FakeWorker;
using testing::FakeWorkerOptions;

v1::GenerateRequest Request(const std::string& id, int max_tokens, uint64_t seed) {
  v1::GenerateRequest r;
  r.set_request_id(id);
  for (int i = 0; i < 8; ++i) r.add_prompt_ids(10 + i);
  r.mutable_params()->set_max_tokens(max_tokens);
  r.mutable_params()->set_seed(seed);
  r.mutable_params()->set_n(1);
  r.set_stream(true);
  return r;
}

// What one stream delivered, filled from the backend's threads.
struct Stream {
  absl::Mutex mu;
  std::vector<int32_t> tokens;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  std::string error;
  absl::Notification done;

  GenerateBackend::EventCallback Callback() {
    return [this](const v1::TokenEvent& ev) {
      absl::MutexLock lock(&mu);
      ASSERT_FALSE(done.HasBeenNotified()) << "an event after the finishing one";
      for (int32_t t : ev.token_ids()) tokens.push_back(t);
      if (ev.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        finish = ev.finish_reason();
        error = ev.error();
        done.Notify();
      }
    };
  }
  size_t NumTokens() {
    absl::MutexLock lock(&mu);
    return tokens.size();
  }
};

std::unique_ptr<GrpcBackend> Connect(const FakeWorker& worker) {
  GrpcBackendOptions o;
  o.target = BackendTarget::kWorker;
  o.address = worker.address();
  auto backend = GrpcBackend::Create(o);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

TEST(GrpcBackendTest, ConcurrentStreamsArriveWholeAndInOrder) {
  auto worker = FakeWorker::Start(FakeWorkerOptions{.step = absl::Milliseconds(1)});
  auto backend = Connect(*worker);
  ASSERT_NE(backend, nullptr);
  constexpr int kStreams = 12, kTokens = 40;
  std::vector<std::unique_ptr<Stream>> streams;
  std::vector<std::thread> starters;
  for (int i = 0; i < kStreams; ++i) streams.push_back(std::make_unique<Stream>());
  // Started from several threads at once, as the gateway's HTTP threads do.
  for (int i = 0; i < kStreams; ++i) {
    starters.emplace_back([&, i] {
      EXPECT_TRUE(backend->Generate(Request(absl::StrCat("s", i), kTokens, 100 + i), streams[i]->Callback()).ok());
    });
  }
  for (std::thread& t : starters) t.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(streams[i]->done.WaitForNotificationWithTimeout(absl::Seconds(30))) << i;
    absl::MutexLock lock(&streams[i]->mu);
    EXPECT_EQ(streams[i]->finish, v1::FINISH_REASON_LENGTH) << streams[i]->error;
    std::vector<int32_t> expected;
    for (int p = 0; p < kTokens; ++p) expected.push_back(FakeWorker::TokenAt(100 + i, 0, p));
    EXPECT_EQ(streams[i]->tokens, expected) << i;
  }
}

TEST(GrpcBackendTest, AbortEndsTheStreamAndFreesTheWorker) {
  auto worker = FakeWorker::Start(FakeWorkerOptions{.step = absl::Milliseconds(5)});
  auto backend = Connect(*worker);
  ASSERT_NE(backend, nullptr);
  Stream stream;
  ASSERT_TRUE(backend->Generate(Request("aborted", 100000, 7), stream.Callback()).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (stream.NumTokens() < 3 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  ASSERT_GE(stream.NumTokens(), 3u);
  backend->Abort("aborted");
  ASSERT_TRUE(stream.done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  {
    absl::MutexLock lock(&stream.mu);
    EXPECT_EQ(stream.finish, v1::FINISH_REASON_ABORT) << stream.error;
  }
  const absl::Time freed = absl::Now() + absl::Seconds(10);
  while (worker->num_active() > 0 && absl::Now() < freed) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(worker->num_active(), 0);
  // Aborting an unknown or finished request is harmless.
  backend->Abort("aborted");
  backend->Abort("never-started");
}

TEST(GrpcBackendTest, AWorkerThatDiesEndsItsStreamsWithAnError) {
  auto worker = FakeWorker::Start(FakeWorkerOptions{.step = absl::Milliseconds(5)});
  auto backend = Connect(*worker);
  ASSERT_NE(backend, nullptr);
  Stream a, b;
  ASSERT_TRUE(backend->Generate(Request("a", 100000, 1), a.Callback()).ok());
  ASSERT_TRUE(backend->Generate(Request("b", 100000, 2), b.Callback()).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((a.NumTokens() < 2 || b.NumTokens() < 2) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  worker->Die();
  for (Stream* s : {&a, &b}) {
    ASSERT_TRUE(s->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
    absl::MutexLock lock(&s->mu);
    EXPECT_EQ(s->finish, v1::FINISH_REASON_ERROR);
    EXPECT_FALSE(s->error.empty());
  }
}

TEST(GrpcBackendTest, DestroyingTheBackendCancelsItsCalls) {
  auto worker = FakeWorker::Start(FakeWorkerOptions{.step = absl::Milliseconds(5)});
  auto backend = Connect(*worker);
  ASSERT_NE(backend, nullptr);
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < 4; ++i) {
    streams.push_back(std::make_unique<Stream>());
    ASSERT_TRUE(backend->Generate(Request(absl::StrCat("d", i), 100000, i), streams.back()->Callback()).ok());
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (streams.back()->NumTokens() < 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  backend.reset();  // waits for its calls to end
  for (auto& s : streams) {
    EXPECT_TRUE(s->done.HasBeenNotified());
  }
  const absl::Time freed = absl::Now() + absl::Seconds(10);
  while (worker->num_active() > 0 && absl::Now() < freed) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(worker->num_active(), 0);
}

}  // namespace
}  // namespace ferry
