// KV blocks between workers whose backends keep them in a device pool
// (ForwardBackend::DeviceKvPool; CUDA IPC between GPU workers on one host),
// through the workers' real RPCs on loopback. Two in-process workers run
// HostDevicePoolBackend, which exports its pool to other backends of this
// process as CUDA IPC exports it to other processes, so the protocol runs
// here without a GPU: ReserveKv offers the pool, chunks name blocks by id,
// blocks past the reservation go through the destination's loop, and the
// stream continues on the destination with exactly the tokens of a run
// that never moved.
#include <grpcpp/client_context.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "engine/engine.h"
#include "engine/service/worker_service.h"
#include "gtest/gtest.h"
#include "tests/integration/engine/host_device_pool_backend.h"
#include "tests/integration/worker/in_process_worker.h"
#include "tests/test_support.h"

namespace ferry::testing {
namespace {

struct Output {
  std::vector<int32_t> tokens;
  std::string text;
  v1::TokenEvent last;
  grpc::Status status;
};

// Reads a Generate stream to its end; `at` runs once after `after` tokens.
Output ReadStream(v1::Worker::Stub& stub, const v1::GenerateRequest& request, int after = -1,
                  const std::function<void()>& at = nullptr) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub.Generate(&ctx, request);
  Output out;
  v1::TokenEvent ev;
  bool fired = false;
  while (reader->Read(&ev)) {
    out.tokens.insert(out.tokens.end(), ev.token_ids().begin(), ev.token_ids().end());
    out.text += ev.text();
    if (ev.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) out.last = ev;
    if (!fired && at && static_cast<int>(out.tokens.size()) >= after) {
      fired = true;
      at();
    }
  }
  out.status = reader->Finish();
  return out;
}

v1::GenerateRequest Request(const std::string& id, int max_tokens) {
  v1::GenerateRequest r;
  r.set_request_id(id);
  r.set_prompt("Once upon a time");
  r.mutable_params()->set_temperature(0.7f);
  r.mutable_params()->set_seed(11);
  r.mutable_params()->set_max_tokens(max_tokens);
  r.mutable_params()->set_ignore_eos(true);
  r.set_stream(true);
  return r;
}

class DevicePoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_SHARED(path, "models/stories260K.gguf");
    auto m = Model::Load(path, LoadOptions{.progress = false});
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::shared_ptr<const Model>(std::move(*m));
  }
  std::unique_ptr<InProcessWorker> Start(std::atomic<int64_t>* copied, WorkerServiceOptions options = {}) {
    EngineOptions eo;
    eo.threads = 1;
    eo.min_step_micros = 2000;  // paced: still running when the last stage comes
    return StartInProcessWorker(model_, std::move(options), eo, HostDevicePoolBackend::Factory(40 << 20, copied));
  }
  std::shared_ptr<const Model> model_;
};

TEST_F(DevicePoolTest, LiveMigrationCopiesBlocksOutOfTheSourcesDevicePool) {
  std::atomic<int64_t> copied_to_a{0}, copied_to_b{0};
  auto a = Start(&copied_to_a);
  auto b = Start(&copied_to_b);
  ASSERT_TRUE(a && b);
  const Output full = ReadStream(*a->Stub(), Request("ref", 300));
  ASSERT_TRUE(full.status.ok()) << full.status.error_message();
  ASSERT_EQ(full.tokens.size(), 300u);

  auto stub_a = a->Stub();
  v1::MigrateOutResponse migrated;
  grpc::Status migrate_status;
  std::thread mover;
  const Output first = ReadStream(*stub_a, Request("m", 300), 40, [&] {
    mover = std::thread([&] {
      grpc::ClientContext ctx;
      v1::MigrateOutRequest req;
      req.set_request_id("m");
      req.set_destination(b->address);
      migrate_status = stub_a->MigrateOut(&ctx, req, &migrated);
    });
  });
  ASSERT_TRUE(mover.joinable());
  mover.join();
  ASSERT_TRUE(migrate_status.ok()) << migrate_status.error_message();
  ASSERT_TRUE(migrated.migrated()) << migrated.error();
  EXPECT_TRUE(migrated.device_pool());
  EXPECT_FALSE(migrated.shared_pool());
  EXPECT_EQ(first.last.finish_reason(), v1::FINISH_REASON_MIGRATED);

  v1::GenerateRequest attach;
  attach.set_request_id("m");
  attach.set_attach(true);
  const Output second = ReadStream(*b->Stub(), attach);
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  std::vector<int32_t> all = first.tokens;
  all.insert(all.end(), second.tokens.begin(), second.tokens.end());
  EXPECT_EQ(all, full.tokens);
  EXPECT_EQ(first.text + second.text, full.text);
  // Every block sent went device to device, none the other way.
  EXPECT_GT(migrated.kv_blocks_sent(), 0);
  EXPECT_EQ(copied_to_b.load(), migrated.kv_blocks_sent());
  EXPECT_EQ(copied_to_a.load(), 0);
  // Both workers end with every block free.
  for (InProcessWorker* w : {a.get(), b.get()}) {
    int64_t used = -1;
    for (int i = 0; i < 200 && used != 0; ++i) {
      used = w->Stats().blocks_used();
      if (used != 0) absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_EQ(used, 0);
  }
}

}  // namespace
}  // namespace ferry::testing
