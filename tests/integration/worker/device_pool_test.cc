// KV blocks between workers whose backends keep them in a device pool
// (ForwardBackend::DeviceKvPool; CUDA IPC between GPU workers on one host),
// through the workers' real RPCs on loopback. Two in-process workers run
// HostDevicePoolBackend, which exports its pool to other backends of this
// process as CUDA IPC exports it to other processes, so the protocol runs
// here without a GPU: ReserveKv offers the pool, chunks name blocks by id,
// blocks past the reservation go through the destination's loop, and the
// stream continues on the destination with exactly the tokens of a run
// that never moved. Prefix pulls between such workers name the holder's
// blocks by id too, and the holder keeps them until the puller releases
// them (or its hold runs out).
#include <grpcpp/client_context.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/engine.h"
#include "engine/service/prefix_pull.h"
#include "engine/service/worker_service.h"
#include "gtest/gtest.h"
#include "kvcache/shared_pool.h"
#include "tests/integration/engine/greedy_run.h"
#include "tests/integration/engine/host_device_pool_backend.h"
#include "tests/integration/engine/shared_model.h"
#include "tests/integration/worker/generate_client.h"
#include "tests/integration/worker/in_process_worker.h"
#include "tests/integration/worker/one_chunk_exporter.h"
#include "tests/test_support.h"

namespace ferry::testing {
namespace {

using Output = GenerateOutput;

v1::GenerateRequest Request(const std::string& id, int max_tokens) {
  v1::GenerateRequest r = StoryRequest(id, max_tokens, 0.7f);
  r.set_stream(true);
  return r;
}

class DevicePoolTest : public ::testing::Test {
 protected:
  void SetUp() override { FERRY_LOAD_SHARED_MODEL(model_, "models/stories260K.gguf"); }
  std::unique_ptr<InProcessWorker> Start(std::atomic<int64_t>* copied, WorkerServiceOptions options = {}) {
    EngineOptions eo;
    eo.threads = 1;
    eo.min_step_micros = 2000;  // paced: still running when the last stage comes
    return StartInProcessWorker(model_, std::move(options), eo, HostDevicePoolBackend::Factory(40 << 20, copied));
  }
  std::unique_ptr<Engine> StartEngine(std::atomic<int64_t>* copied) {
    EngineOptions eo;
    eo.threads = 1;
    auto e = Engine::Create(model_, eo, HostDevicePoolBackend::Factory(40 << 20, copied));
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  std::shared_ptr<const Model> model_;
};

constexpr int kBlock = 16;

std::vector<int32_t> Prompt(int len, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < len; ++i) ids.push_back(3 + (i * 31 + salt * 17) % 400);
  return ids;
}

bool Eventually(const std::function<bool()>& ok) {
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (!ok()) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// A holder worker caching 18 blocks of a prompt, and a puller engine; both
// with device pools.
class DevicePoolPrefixTest : public DevicePoolTest {
 protected:
  void SetUp() override {
    DevicePoolTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    WorkerServiceOptions options;
    options.prefix_export_hold = Hold();
    holder_ = Start(&copied_to_holder_, options);
    puller_ = StartEngine(&copied_to_puller_);
    ASSERT_TRUE(holder_ && puller_);
    prompt_ = Prompt(300, 9);
    computed_ = RunGreedy(*holder_->engine, "h", prompt_, 8);
    ASSERT_EQ(computed_.tokens.size(), 8u);
    hashes_ = ChainHashes(*holder_->engine, prompt_, 18, kBlock);
  }
  // Long enough that no hold runs out while a test looks at it, on a loaded
  // machine too; the test of a hold running out shortens it.
  virtual absl::Duration Hold() const { return absl::Seconds(30); }
  v1::PrefixPull Pull(const std::string& address) const {
    v1::PrefixPull pull;
    pull.set_peer_address(address);
    for (uint64_t h : hashes_) pull.add_block_hashes(h);
    return pull;
  }
  v1::ExportPrefixRequest ExportRequest(const std::string& kind, int max_blocks_per_chunk) const {
    v1::ExportPrefixRequest r;
    r.mutable_token_ids()->Add(prompt_.begin(), prompt_.begin() + 18 * kBlock);
    for (uint64_t h : hashes_) r.add_block_hashes(h);
    r.set_max_blocks_per_chunk(max_blocks_per_chunk);
    r.set_device_pool_host(SharedPoolHostKey());
    r.set_device_pool_kind(kind);
    return r;
  }
  grpc::Status ReadAll(const v1::ExportPrefixRequest& request, std::vector<v1::KvChunk>* chunks) const {
    auto stub = holder_->Stub();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto reader = stub->ExportPrefix(&ctx, request);
    v1::KvChunk chunk;
    while (reader->Read(&chunk)) chunks->push_back(chunk);
    return reader->Finish();
  }
  // Whether the holder still held the transfer's blocks.
  bool Release(const std::string& transfer_id) const {
    auto stub = holder_->Stub();
    grpc::ClientContext ctx;
    v1::ReleasePrefixExportRequest request;
    request.set_transfer_id(transfer_id);
    v1::ReleasePrefixExportResponse response;
    EXPECT_TRUE(stub->ReleasePrefixExport(&ctx, request, &response).ok());
    return response.held();
  }
  bool HolderBlocksUsedIs(int64_t n) const {
    return Eventually([&] { return holder_->engine->Stats().blocks_used == n; });
  }

  std::atomic<int64_t> copied_to_holder_{0}, copied_to_puller_{0};
  std::unique_ptr<InProcessWorker> holder_;
  std::unique_ptr<Engine> puller_;
  std::vector<int32_t> prompt_;
  std::vector<uint64_t> hashes_;
  GreedyOutcome computed_;
};

TEST_F(DevicePoolPrefixTest, SameHostPullCopiesOutOfTheHoldersDevicePoolAndReleasesIt) {
  auto pulled = PullPrefix(*puller_, Pull(holder_->address), prompt_, PrefixPullOptions{});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_TRUE(pulled->device_pool);
  EXPECT_FALSE(pulled->shared_pool);
  EXPECT_EQ(pulled->blocks_received, 18);
  EXPECT_EQ(pulled->blocks_cached, 18);
  EXPECT_EQ(copied_to_puller_.load(), 18);
  EXPECT_EQ(copied_to_holder_.load(), 0);
  // Released by the puller, not by the hold running out.
  EXPECT_EQ(holder_->service->held_prefix_exports(), 0u);
  EXPECT_TRUE(HolderBlocksUsedIs(0));
  GreedyOutcome run = RunGreedy(*puller_, "p", prompt_, 8);
  EXPECT_EQ(run.tokens, computed_.tokens);
  EXPECT_EQ(run.cached_prompt_tokens, 18 * kBlock);
}

// The stream as the puller sees it: ids in chunks of one transfer, the pool
// named once, the blocks held after the stream until released; a puller of
// another kind gets bytes.
TEST_F(DevicePoolPrefixTest, TheHolderKeepsTheBlocksUntilReleased) {
  ASSERT_TRUE(HolderBlocksUsedIs(0)) << "the holder's request still holds blocks";
  const int64_t used_before = 0;
  std::vector<v1::KvChunk> chunks;
  ASSERT_TRUE(ReadAll(ExportRequest(HostDevicePoolBackend::kKind, 4), &chunks).ok());
  ASSERT_EQ(chunks.size(), 5u);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_TRUE(chunks[i].device_blocks());
    EXPECT_TRUE(chunks[i].data().empty());
    EXPECT_EQ(chunks[i].has_device_pool(), i == 0);
    EXPECT_EQ(chunks[i].first_block(), static_cast<int64_t>(4 * i));
    EXPECT_EQ(chunks[i].transfer_id(), chunks[0].transfer_id());
    ids.insert(ids.end(), chunks[i].pool_blocks().begin(), chunks[i].pool_blocks().end());
  }
  EXPECT_EQ(ids.size(), 18u);
  EXPECT_EQ(chunks[0].device_pool().kind(), HostDevicePoolBackend::kKind);
  EXPECT_FALSE(chunks[0].transfer_id().empty());
  // Held after the stream ended, until released, once.
  EXPECT_EQ(holder_->service->held_prefix_exports(), 1u);
  EXPECT_EQ(holder_->engine->Stats().blocks_used, used_before + 18);
  EXPECT_TRUE(Release(chunks[0].transfer_id()));
  EXPECT_FALSE(Release(chunks[0].transfer_id()));
  EXPECT_TRUE(HolderBlocksUsedIs(used_before));

  // A puller whose backend opens another kind of pool gets bytes.
  chunks.clear();
  ASSERT_TRUE(ReadAll(ExportRequest("cuda-ipc", 0), &chunks).ok());
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_FALSE(chunks[0].device_blocks());
  EXPECT_FALSE(chunks[0].data().empty());
  EXPECT_EQ(holder_->service->held_prefix_exports(), 0u);
}

class DevicePoolPrefixShortHoldTest : public DevicePoolPrefixTest {
 protected:
  absl::Duration Hold() const override { return absl::Milliseconds(200); }
};

// Never released: let go after the hold, and a late release learns that the
// blocks may have moved.
TEST_F(DevicePoolPrefixShortHoldTest, AnExportNeverReleasedIsLetGoWhenTheHoldRunsOut) {
  ASSERT_TRUE(HolderBlocksUsedIs(0)) << "the holder's request still holds blocks";
  const int64_t used_before = 0;
  std::vector<v1::KvChunk> chunks;
  ASSERT_TRUE(ReadAll(ExportRequest(HostDevicePoolBackend::kKind, 0), &chunks).ok());
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_TRUE(chunks[0].device_blocks());
  EXPECT_TRUE(Eventually([&] { return holder_->service->held_prefix_exports() == 0; }));
  EXPECT_TRUE(HolderBlocksUsedIs(used_before));
  EXPECT_FALSE(Release(chunks[0].transfer_id()));
}

// An exporter naming a device pool that does not open here (its handle is
// unknown): the puller asks again for bytes.
TEST_F(DevicePoolPrefixTest, APoolThatDoesNotOpenIsPulledAgainAsBytes) {
  auto exported = holder_->engine->OpenPrefixExport(
      std::vector<int32_t>(prompt_.begin(), prompt_.begin() + 18 * kBlock), hashes_).get();
  ASSERT_TRUE(exported.ok()) << exported.status();
  OneChunkExporter exporter([header = (*exported)->header(),
                             bytes = puller_->kv_shape().bytes_per_block()](const v1::ExportPrefixRequest& request) {
    v1::KvChunk chunk;
    if (request.device_pool_kind().empty()) return chunk;  // nothing for a bytes request
    chunk.set_header(header);
    chunk.add_pool_blocks(0);
    chunk.set_device_blocks(true);
    chunk.set_transfer_id("t");
    v1::DeviceKvPool* pool = chunk.mutable_device_pool();
    pool->set_host(SharedPoolHostKey());
    pool->set_kind(request.device_pool_kind());
    pool->set_handle("no-such-pool");
    pool->set_dtype("float32");
    pool->set_bytes_per_block(bytes);
    pool->set_num_blocks(64);
    return chunk;
  });
  exported->reset();
  ASSERT_FALSE(exporter.address().empty());
  auto pulled = PullPrefix(*puller_, Pull(exporter.address()), prompt_, PrefixPullOptions{});
  // The second, bytes-only, answer holds nothing: a clean failure.
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kDataLoss) << pulled.status();
  std::vector<std::string> kinds_asked;
  for (const v1::ExportPrefixRequest& r : exporter.requests()) kinds_asked.push_back(r.device_pool_kind());
  EXPECT_EQ(kinds_asked, (std::vector<std::string>{HostDevicePoolBackend::kKind, ""}));
  EXPECT_EQ(copied_to_puller_.load(), 0);
  EXPECT_TRUE(Eventually([&] { return puller_->Stats().blocks_used == 0; })) << puller_->Stats().blocks_used;
}

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
