// Two in-process workers (engine + WorkerService behind real gRPC on
// loopback) on stories260K. A request aborted on its source during the last
// stage of a live migration, after the destination has already resumed it,
// is stopped on the destination at once: no block held there, nothing to
// attach to, instead of an orphan kept until the 30 s attach timeout.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server_builder.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/engine.h"
#include "engine/service/outbound_migrations.h"
#include "engine/service/worker_service.h"
#include "gtest/gtest.h"
#include "tests/integration/worker/in_process_worker.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

using testing::InProcessWorker;

std::unique_ptr<InProcessWorker> StartWorker(std::shared_ptr<const Model> model, WorkerServiceOptions options) {
  return testing::StartInProcessWorker(std::move(model), std::move(options));
}

v1::StatsResponse Stats(const InProcessWorker& w) { return w.Stats(); }

TEST(MigrationCancelTest, AbortDuringTheLastStageStopsTheRequestOnTheDestination) {
  FERRY_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto model = Model::Load(path);
  ASSERT_TRUE(model.ok()) << model.status();
  std::shared_ptr<const Model> shared(std::move(*model));

  // The source aborts the request (as its scheduler does when the client
  // goes away) inside the last stage: paused, its last chunk not yet sent.
  std::unique_ptr<InProcessWorker> source;
  WorkerServiceOptions so;
  std::atomic<int> last_stages{0};
  so.migration.on_last_stage = [&](const std::string& id) {
    ++last_stages;
    grpc::ClientContext ctx;
    v1::AbortRequest abort;
    abort.set_request_id(id);
    v1::AbortResponse response;
    EXPECT_TRUE(source->Stub()->Abort(&ctx, abort, &response).ok());
  };
  source = StartWorker(shared, so);
  std::unique_ptr<InProcessWorker> destination = StartWorker(shared, WorkerServiceOptions{});
  ASSERT_TRUE(source && destination);

  v1::GenerateRequest request;
  request.set_request_id("victim");
  request.set_prompt("Once upon a time");
  request.mutable_params()->set_temperature(0);
  request.mutable_params()->set_max_tokens(400);
  request.mutable_params()->set_ignore_eos(true);
  request.set_stream(true);
  auto source_stub = source->Stub();
  grpc::ClientContext stream_ctx;
  auto reader = source_stub->Generate(&stream_ctx, request);
  v1::TokenEvent ev;
  int tokens = 0;
  v1::FinishReason last = v1::FINISH_REASON_UNSPECIFIED;
  v1::MigrateOutResponse migrated;
  grpc::Status migrate_status;
  std::thread mover;
  while (reader->Read(&ev)) {
    tokens += ev.token_ids_size();
    if (ev.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) last = ev.finish_reason();
    if (tokens >= 20 && !mover.joinable()) {
      mover = std::thread([&] {
        grpc::ClientContext ctx;
        v1::MigrateOutRequest m;
        m.set_request_id("victim");
        m.set_destination(destination->address);
        migrate_status = source->Stub()->MigrateOut(&ctx, m, &migrated);
      });
    }
  }
  ASSERT_TRUE(mover.joinable());
  mover.join();
  reader->Finish();
  if (last_stages == 0)
    GTEST_SKIP() << "the request finished before its last stage: " << migrated.error();

  ASSERT_TRUE(migrate_status.ok()) << migrate_status.error_message();
  EXPECT_FALSE(migrated.migrated());
  EXPECT_TRUE(absl::StrContains(migrated.error(), "aborted during the last migration stage"))
      << migrated.error();
  EXPECT_EQ(last, v1::FINISH_REASON_ABORT);
  EXPECT_LT(tokens, 400);

  // The destination holds nothing within a moment, far below the attach timeout.
  const absl::Time end = absl::Now() + absl::Seconds(2);
  v1::StatsResponse dst = Stats(*destination);
  while ((dst.blocks_used() != 0 || dst.load().running_requests() != 0) && absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(10));
    dst = Stats(*destination);
  }
  EXPECT_EQ(dst.blocks_used(), 0);
  EXPECT_EQ(dst.load().running_requests(), 0);
  // ... and nothing waits there to be attached to.
  grpc::ClientContext attach_ctx;
  v1::GenerateRequest attach;
  attach.set_request_id("victim");
  attach.set_attach(true);
  auto attached = destination->Stub()->Generate(&attach_ctx, attach);
  while (attached->Read(&ev)) {
  }
  EXPECT_EQ(attached->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  // The source frees the request's blocks on its engine loop, which may run
  // just after the abort event reached the client.
  const absl::Time source_end = absl::Now() + absl::Seconds(2);
  int64_t source_blocks = Stats(*source).blocks_used();
  while (source_blocks != 0 && absl::Now() < source_end) {
    absl::SleepFor(absl::Milliseconds(10));
    source_blocks = Stats(*source).blocks_used();
  }
  EXPECT_EQ(source_blocks, 0);
}

TEST(OutboundMigrationsTest, AbortBeforeTheHandOverRefusesItAndAfterItFollowsTheRequest) {
  OutboundMigrations out;
  EXPECT_EQ(out.Cancel("r"), std::nullopt);  // not migrating: nothing to follow
  out.Begin("r", "10.0.0.2:1");
  EXPECT_EQ(out.Cancel("r"), std::nullopt);  // mid-copy: the hand-over will refuse
  EXPECT_FALSE(out.HandOver("r"));
  out.End("r");
  EXPECT_EQ(out.size(), 0u);

  out.Begin("s", "10.0.0.3:1");
  EXPECT_TRUE(out.HandOver("s"));
  EXPECT_EQ(out.Cancel("s"), std::optional<std::string>("10.0.0.3:1"));  // abort it there
  EXPECT_EQ(out.Cancel("s"), std::nullopt);                              // once

  out.Begin("t", "10.0.0.4:1");
  EXPECT_TRUE(out.HandOver("t"));
  EXPECT_EQ(out.Expire(absl::Hours(1)), 0);
  EXPECT_EQ(out.Expire(absl::ZeroDuration()), 1);
  EXPECT_EQ(out.Cancel("t"), std::nullopt);
  // A migration in progress never expires.
  out.Begin("u", "10.0.0.5:1");
  EXPECT_EQ(out.Expire(absl::ZeroDuration()), 0);
  EXPECT_EQ(out.size(), 1u);
}

}  // namespace
}  // namespace ferry
