// Real `ferry worker` processes on loopback, driven over gRPC: streaming
// generation, validation errors, cancellation freeing blocks, resume after a
// lost worker, and live migration between two workers mid-stream.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "ferry/v1/worker.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/process_util.h"
#include "tests/integration/worker/generate_client.h"
#include "tests/test_support.h"

namespace ferry::testing {
namespace {

// A `ferry worker` child process on a free loopback port; killed at the end.
class WorkerProcess {
 public:
  explicit WorkerProcess(const std::string& model, std::vector<std::string> extra_flags = {}) {
    port_file_ = std::string(::testing::TempDir()) + "/ferry-worker-port-" + std::to_string(::getpid()) +
                 "-" + std::to_string(counter_++);
    std::remove(port_file_.c_str());
    pid_ = ::fork();
    if (pid_ == 0) {
      std::string bin = FerryBinary();
      std::vector<std::string> args = {bin,          "worker",    "--model", model, "--listen", "127.0.0.1:0",
                                       "--port-file", port_file_, "--threads", "1", "--log-level", "warn"};
      args.insert(args.end(), extra_flags.begin(), extra_flags.end());
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    for (int i = 0; i < 300 && port_ == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      std::ifstream in(port_file_);
      in >> port_;
      if (port_ == 0 && ::waitpid(pid_, nullptr, WNOHANG) == pid_) {  // it exited (cannot start)
        pid_ = -1;
        break;
      }
    }
  }
  ~WorkerProcess() { Kill(); }
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::unique_ptr<v1::Worker::Stub> Stub() const {
    return v1::Worker::NewStub(grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()));
  }

 private:
  static inline int counter_ = 0;
  std::string port_file_;
  pid_t pid_ = -1;
  int port_ = 0;
};

using Output = GenerateOutput;

v1::GenerateRequest Request(const std::string& id, int max_tokens, float temperature = 0) {
  return StoryRequest(id, max_tokens, temperature);
}

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_SHARED(path, "models/stories260K.gguf");
    model_ = path;
  }
  std::string model_;
};

TEST_F(WorkerTest, GeneratesStreamsAndRejectsBadRequests) {
  WorkerProcess w(model_);
  ASSERT_GT(w.port(), 0);
  auto stub = w.Stub();
  Output out = ReadStream(*stub, Request("a", 20));
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.tokens.size(), 20u);
  EXPECT_EQ(out.last.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(out.last.usage().completion_tokens(), 20);
  EXPECT_NE(out.text.find("there was a little girl"), std::string::npos) << out.text;

  v1::GenerateRequest bad = Request("b", 10);
  bad.mutable_params()->set_temperature(-1);
  Output rejected = ReadStream(*stub, bad);
  EXPECT_EQ(rejected.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(rejected.status.error_message().find("temperature"), std::string::npos);
  v1::GenerateRequest empty = Request("c", 10);
  empty.clear_prompt();
  EXPECT_EQ(ReadStream(*stub, empty).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::HealthResponse health;
  grpc::ClientContext hctx;
  ASSERT_TRUE(stub->Health(&hctx, v1::HealthRequest(), &health).ok());
  EXPECT_TRUE(health.ready());
  EXPECT_FALSE(health.incarnation_id().empty());
}

TEST_F(WorkerTest, ClientThatGoesAwayFreesItsBlocks) {
  WorkerProcess w(model_);
  auto stub = w.Stub();
  {
    grpc::ClientContext ctx;
    auto reader = stub->Generate(&ctx, Request("long", 1500));
    v1::TokenEvent ev;
    ASSERT_TRUE(reader->Read(&ev));
    ctx.TryCancel();
  }
  v1::StatsResponse stats;
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext sctx;
    ASSERT_TRUE(stub->Stats(&sctx, v1::StatsRequest(), &stats).ok());
    if (stats.blocks_used() == 0 && stats.load().running_requests() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(stats.blocks_used(), 0);
  EXPECT_EQ(stats.load().running_requests(), 0);
}

// After a worker dies, the sample continues elsewhere from its tokens so far.
TEST_F(WorkerTest, ResumeOnAnotherWorkerContinuesTheStream) {
  WorkerProcess a(model_), b(model_);
  Output full = ReadStream(*a.Stub(), Request("ref", 40, 0.8f));
  ASSERT_EQ(full.tokens.size(), 40u);
  Output part = ReadStream(*a.Stub(), Request("p", 13, 0.8f));
  v1::GenerateRequest resume = Request("r", 40, 0.8f);
  v1::RequestState* st = resume.mutable_resume();
  for (int i = 0; i < 13; ++i) st->add_output_ids(full.tokens[i]);
  st->set_emitted_text_bytes(static_cast<int64_t>(part.text.size()));
  a.Kill();
  // A resume state carries the prompt as ids ("Once upon a time" with BOS).
  for (int32_t id : {1, 403, 407, 261, 378}) st->add_prompt_ids(id);
  *st->mutable_params() = resume.params();
  Output rest = ReadStream(*b.Stub(), resume);
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  std::vector<int32_t> all(full.tokens.begin(), full.tokens.begin() + 13);
  all.insert(all.end(), rest.tokens.begin(), rest.tokens.end());
  EXPECT_EQ(all, full.tokens);
  EXPECT_EQ(part.text + rest.text, full.text);
}

// Live migration over gRPC: the source streams until MIGRATED, the rest
// comes from the destination after attaching; together they are the
// uninterrupted stream. Both workers run on this host, so the destination
// copies the blocks out of the source's shared KV pool; with the pool off
// (--no-shared-kv-pool) they come through the stream, with the same result.
// Two GPU workers (skipped without a GPU) copy them device to device (CUDA
// IPC).
enum class KvPath { kSharedPool, kStream, kCudaIpc };

class WorkerMigrationTest : public WorkerTest, public ::testing::WithParamInterface<KvPath> {};

TEST_P(WorkerMigrationTest, LiveMigrationMidStream) {
  const KvPath path = GetParam();
  std::vector<std::string> flags_a, flags_b;
  if (path == KvPath::kStream) flags_a = {"--no-shared-kv-pool"};
  if (path == KvPath::kCudaIpc) {
    // Both on one GPU: each takes a small KV cache, not most of the memory.
    flags_a = {"--device", "cuda:0", "--kv-cache-memory", "256MiB"};
    flags_b = flags_a;
  }
  WorkerProcess a(model_, flags_a), b(model_, flags_b);
  if (path == KvPath::kCudaIpc && (a.port() == 0 || b.port() == 0)) {
    GTEST_SKIP() << "no worker starts on cuda:0 (no GPU, or a build without CUDA)";
  }
  Output full = ReadStream(*a.Stub(), Request("ref", 300, 0.7f));
  auto stub_a = a.Stub();
  v1::MigrateOutResponse migrated;
  grpc::Status migrate_status;
  std::thread migrate;
  Output first = ReadStream(*stub_a, Request("m", 300, 0.7f), 40, [&] {
    migrate = std::thread([&] {
      grpc::ClientContext ctx;
      v1::MigrateOutRequest req;
      req.set_request_id("m");
      req.set_destination(b.address());
      migrate_status = stub_a->MigrateOut(&ctx, req, &migrated);
    });
  });
  migrate.join();
  ASSERT_TRUE(migrate_status.ok());
  if (!migrated.migrated()) {
    // It may have finished before the copy completed; then there is nothing to attach to.
    EXPECT_EQ(first.tokens, full.tokens) << migrated.error();
    GTEST_SKIP() << "request finished before migrating: " << migrated.error();
  }
  EXPECT_EQ(first.last.finish_reason(), v1::FINISH_REASON_MIGRATED);
  EXPECT_EQ(first.last.migrated_to(), b.address());
  v1::GenerateRequest attach;
  attach.set_request_id("m");
  attach.set_attach(true);
  Output second = ReadStream(*b.Stub(), attach);
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  std::vector<int32_t> all = first.tokens;
  all.insert(all.end(), second.tokens.begin(), second.tokens.end());
  EXPECT_EQ(all, full.tokens);
  EXPECT_EQ(first.text + second.text, full.text);
  EXPECT_GT(migrated.downtime_micros(), 0);
  EXPECT_EQ(migrated.shared_pool(), path == KvPath::kSharedPool);
  EXPECT_EQ(migrated.device_pool(), path == KvPath::kCudaIpc);
  EXPECT_GT(migrated.kv_blocks_sent(), 0);
  // Both workers end with every block free.
  for (WorkerProcess* w : {&a, &b}) {
    v1::StatsResponse stats;
    for (int i = 0; i < 200; ++i) {
      grpc::ClientContext sctx;
      ASSERT_TRUE(w->Stub()->Stats(&sctx, v1::StatsRequest(), &stats).ok());
      if (stats.blocks_used() == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(stats.blocks_used(), 0);
  }
  // Attaching twice, or to something that never came, fails cleanly.
  EXPECT_EQ(ReadStream(*b.Stub(), attach).status.error_code(), grpc::StatusCode::NOT_FOUND);
}

INSTANTIATE_TEST_SUITE_P(Kv, WorkerMigrationTest,
                         ::testing::Values(KvPath::kSharedPool, KvPath::kStream, KvPath::kCudaIpc),
                         [](const ::testing::TestParamInfo<KvPath>& info) {
                           return std::string(info.param == KvPath::kSharedPool ? "SharedPool"
                                              : info.param == KvPath::kStream   ? "Stream"
                                                                                : "CudaIpc");
                         });

}  // namespace
}  // namespace ferry::testing
