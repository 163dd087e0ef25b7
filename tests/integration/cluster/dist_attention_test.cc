// DistAttention end to end: `ferry scheduler` and two or three `ferry worker`
// processes on loopback with the built-in model and a KV cache of 8 blocks
// each (--kv-cache-memory 256KiB, 16-token blocks). A greedy request whose
// context is larger than one worker's cache borrows blocks on the others and
// gives exactly the tokens of a single worker with a large cache; the leases
// are reclaimed afterwards (scheduler metrics, every worker's used blocks back
// to 0). A request larger than the whole cluster is refused clearly, and a
// lender killed mid-request makes the request fail with an error naming the
// lost lender instead of hanging.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "ferry/v1/worker.grpc.pb.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/integration/cluster/child_process.h"
#include "tests/process_util.h"

namespace ferry {
namespace {

using testing::FreePort;
using testing::Process;
using testing::TempPath;
using testing::WaitForPort;

constexpr int kBlockSize = 16;
// The built-in model's blocks are 32 KiB (4 layers x K,V x 16 tokens x 64
// floats): 8 blocks, 128 tokens per worker.
constexpr const char* kSmallKv = "256KiB";
constexpr int kTokensPerWorker = 8 * kBlockSize;

struct GenRun {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::string error;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
};

template <typename Stub>
GenRun Generate(Stub& stub, const v1::GenerateRequest& request, const std::function<void(int)>& on_tokens = nullptr) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = stub.Generate(&ctx, request);
  GenRun out;
  v1::TokenEvent ev;
  while (reader->Read(&ev)) {
    for (int32_t t : ev.token_ids()) out.tokens.push_back(t);
    if (!ev.error().empty()) out.error = ev.error();
    if (ev.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) out.finish = ev.finish_reason();
    if (on_tokens) on_tokens(static_cast<int>(out.tokens.size()));
  }
  out.status = reader->Finish();
  return out;
}

v1::GenerateRequest Greedy(const std::string& id, int prompt_len, int max_tokens) {
  v1::GenerateRequest r;
  r.set_request_id(id);
  // A prompt with some structure so attention has something to look at.
  for (int i = 0; i < prompt_len; ++i) r.add_prompt_ids(3 + (i * 37 + i / 7) % 900);
  r.mutable_params()->set_temperature(0);
  r.mutable_params()->set_max_tokens(max_tokens);
  r.mutable_params()->set_ignore_eos(true);
  r.set_stream(true);
  return r;
}

// The value of an unlabelled Prometheus sample, or -1.
double MetricValue(const std::string& text, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, name + " ")) return std::stod(std::string(line.substr(name.size() + 1)));
  }
  return -1;
}

class DistAttentionTest : public ::testing::Test {
 protected:
  // A worker of its own with a KV cache big enough for everything.
  std::vector<int32_t> ReferenceTokens(const v1::GenerateRequest& request) {
    const std::string pf = TempPath("reference.port");
    std::remove(pf.c_str());
    Process worker({testing::FerryBinary(), "worker", "--listen", "127.0.0.1:0", "--port-file", pf, "--threads", "1",
                    "--block-size", std::to_string(kBlockSize), "--log-level", "warn"});
    const int port = WaitForPort(pf);
    EXPECT_GT(port, 0) << "reference worker did not start";
    auto stub = v1::Worker::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    GenRun run = Generate(*stub, request);
    EXPECT_TRUE(run.status.ok()) << run.status.error_message();
    EXPECT_EQ(static_cast<int>(run.tokens.size()), request.params().max_tokens());
    return run.tokens;
  }

  void StartCluster(int num_workers, const std::string& kv_memory = kSmallKv) {
    const std::string sched_port = TempPath("dist_sched.port");
    std::remove(sched_port.c_str());
    scheduler_metrics_port_ = FreePort();
    scheduler_ = std::make_unique<Process>(std::vector<std::string>{
        testing::FerryBinary(), "scheduler", "--listen", "127.0.0.1:0", "--port-file", sched_port, "--worker-timeout",
        "500ms", "--migration", "off", "--metrics-port", std::to_string(scheduler_metrics_port_), "--log-level",
        "warn"});
    const int port = WaitForPort(sched_port);
    ASSERT_GT(port, 0) << "ferry scheduler did not start";
    sched_address_ = absl::StrCat("127.0.0.1:", port);
    std::vector<std::string> port_files;
    for (int i = 0; i < num_workers; ++i) {
      const std::string pf = TempPath(absl::StrCat("dist_worker", i, ".port"));
      std::remove(pf.c_str());
      port_files.push_back(pf);
      workers_.push_back(std::make_unique<Process>(std::vector<std::string>{
          testing::FerryBinary(), "worker", "--listen", "127.0.0.1:0", "--port-file", pf, "--scheduler",
          sched_address_, "--kv-cache-memory", kv_memory, "--block-size", std::to_string(kBlockSize),
          "--kv-borrowing", "--no-prefix-caching", "--threads", "1", "--log-level", "warn"}));
    }
    for (const std::string& pf : port_files) {
      const int wp = WaitForPort(pf);
      ASSERT_GT(wp, 0) << "ferry worker did not start";
      worker_addresses_.push_back(absl::StrCat("127.0.0.1:", wp));
    }
    stub_ = v1::Scheduler::NewStub(grpc::CreateChannel(sched_address_, grpc::InsecureChannelCredentials()));
    // Alive, and each has reported its free blocks at least once.
    const absl::Time end = absl::Now() + absl::Seconds(20);
    while (absl::Now() < end && ReadyWorkers() < num_workers) absl::SleepFor(absl::Milliseconds(20));
    ASSERT_EQ(ReadyWorkers(), num_workers);
  }

  int ReadyWorkers() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListWorkersResponse list;
    if (!stub_->ListWorkers(&ctx, {}, &list).ok()) return 0;
    int n = 0;
    for (const auto& w : list.workers()) n += w.alive() && w.load().blocks_total() > 0 ? 1 : 0;
    return n;
  }

  // The index of the worker the scheduler runs something on (-1: none).
  int BusyWorker() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListWorkersResponse list;
    if (!stub_->ListWorkers(&ctx, {}, &list).ok()) return -1;
    for (const auto& w : list.workers()) {
      if (!w.alive() || w.num_requests() == 0) continue;
      for (size_t i = 0; i < worker_addresses_.size(); ++i) {
        if (worker_addresses_[i] == w.address()) return static_cast<int>(i);
      }
    }
    return -1;
  }

  std::string SchedulerMetrics() {
    httplib::Client client("127.0.0.1", scheduler_metrics_port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(5);
    auto res = client.Get("/metrics");
    return res && res->status == 200 ? res->body : "";
  }

  // Waits until the scheduler's ledger is empty; returns the last count.
  double WaitForNoLeases() {
    const absl::Time end = absl::Now() + absl::Seconds(10);
    double leases = -1;
    while (absl::Now() < end) {
      leases = MetricValue(SchedulerMetrics(), "ferry_scheduler_kv_leases_active");
      if (leases == 0) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return leases;
  }

  // blocks_used of worker i once it reaches 0, or the last value seen.
  int64_t WaitForZeroBlocksUsed(int i) {
    auto stub = v1::Worker::NewStub(grpc::CreateChannel(worker_addresses_[i], grpc::InsecureChannelCredentials()));
    const absl::Time end = absl::Now() + absl::Seconds(10);
    int64_t used = -1;
    while (true) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      v1::StatsResponse stats;
      if (stub->Stats(&ctx, {}, &stats).ok()) used = stats.blocks_used();
      if (used == 0 || absl::Now() > end) return used;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  std::unique_ptr<Process> scheduler_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::string sched_address_;
  std::vector<std::string> worker_addresses_;
  int scheduler_metrics_port_ = 0;
  std::unique_ptr<v1::Scheduler::Stub> stub_;
};

TEST_F(DistAttentionTest, ContextLargerThanOneWorkerMatchesASingleBigWorker) {
  // 190 tokens: 12 blocks, 8 local and 4 on one lender.
  const v1::GenerateRequest request = Greedy("dist-two", 150, 40);
  ASSERT_GT(150 + 40, kTokensPerWorker);
  const std::vector<int32_t> expected = ReferenceTokens(request);
  ASSERT_EQ(expected.size(), 40u);
  StartCluster(2);
  GenRun run = Generate(*stub_, request);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  EXPECT_EQ(run.finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(run.tokens, expected);
  const std::string metrics = SchedulerMetrics();
  EXPECT_EQ(MetricValue(metrics, "ferry_scheduler_kv_leases_granted_total"), 1) << metrics;
  EXPECT_EQ(MetricValue(metrics, "ferry_scheduler_kv_blocks_granted_total"), 4) << metrics;
  // Reclaimed: no lease left, no block held anywhere.
  EXPECT_EQ(WaitForNoLeases(), 0);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(WaitForZeroBlocksUsed(i), 0) << "worker " << i;
}

TEST_F(DistAttentionTest, ThreeWorkersServeAContextOfTwoAndAHalfWorkers) {
  // 300 tokens: 19 blocks, 8 local, 7 on one lender (it keeps one of its 8)
  // and 4 on the other.
  const v1::GenerateRequest request = Greedy("dist-three", 260, 40);
  ASSERT_GT(260 + 40, 2 * kTokensPerWorker);
  const std::vector<int32_t> expected = ReferenceTokens(request);
  StartCluster(3);
  GenRun run = Generate(*stub_, request);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  EXPECT_EQ(run.tokens, expected);
  const std::string metrics = SchedulerMetrics();
  EXPECT_EQ(MetricValue(metrics, "ferry_scheduler_kv_leases_granted_total"), 2) << metrics;
  EXPECT_EQ(MetricValue(metrics, "ferry_scheduler_kv_blocks_granted_total"), 11) << metrics;
  EXPECT_EQ(WaitForNoLeases(), 0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(WaitForZeroBlocksUsed(i), 0) << "worker " << i;

  // Larger than the whole cluster: refused with the reason, nothing held.
  GenRun too_big = Generate(*stub_, Greedy("dist-too-big", 400, 40));
  EXPECT_FALSE(too_big.status.ok() && too_big.error.empty());
  const std::string why = too_big.status.error_message() + too_big.error;
  EXPECT_NE(why.find("KV blocks"), std::string::npos) << why;
  EXPECT_EQ(WaitForNoLeases(), 0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(WaitForZeroBlocksUsed(i), 0) << "worker " << i;
}

TEST_F(DistAttentionTest, LenderKilledMidRequestFailsTheRequestClearly) {
  // 512 KiB: 16 blocks per worker. 100 + 300 tokens: 25 blocks, 9 borrowed.
  StartCluster(2, "512KiB");
  std::atomic<bool> killed{false};
  const v1::GenerateRequest request = Greedy("dist-kill", 100, 300);
  GenRun run = Generate(*stub_, request, [&](int tokens) {
    if (tokens < 3 || killed.exchange(true)) return;
    const int owner = BusyWorker();
    ASSERT_GE(owner, 0);
    workers_[1 - owner]->Kill(SIGKILL);  // the lender
  });
  ASSERT_TRUE(killed.load()) << "the request ended before the lender could be killed";
  EXPECT_LT(static_cast<int>(run.tokens.size()), 300);
  EXPECT_FALSE(run.status.ok() && run.error.empty()) << "the request went on without its lender";
  EXPECT_NE(run.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  const std::string why = run.status.error_message() + run.error;
  EXPECT_TRUE(why.find("lender") != std::string::npos || why.find("KV blocks") != std::string::npos) << why;
  // The lease is gone from the ledger (lender lost), and the owner holds no block.
  EXPECT_EQ(WaitForNoLeases(), 0);
}

TEST_F(DistAttentionTest, LenderStoppedMidRequestFailsTheRequestInsteadOfHanging) {
  // As above, but the lender hangs (SIGSTOP) with its connection open: the
  // owner must not wait on it forever.
  StartCluster(2, "512KiB");
  std::atomic<bool> stopped{false};
  int lender = -1;
  const v1::GenerateRequest request = Greedy("dist-stop", 100, 300);
  const auto start = std::chrono::steady_clock::now();
  GenRun run = Generate(*stub_, request, [&](int tokens) {
    if (tokens < 3 || stopped.exchange(true)) return;
    const int owner = BusyWorker();
    ASSERT_GE(owner, 0);
    lender = 1 - owner;
    workers_[lender]->Signal(SIGSTOP);
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (lender >= 0) workers_[lender]->Signal(SIGCONT);
  ASSERT_TRUE(stopped.load()) << "the request ended before the lender could be stopped";
  EXPECT_LT(static_cast<int>(run.tokens.size()), 300);
  EXPECT_FALSE(run.status.ok() && run.error.empty()) << "the request went on without its lender";
  EXPECT_NE(run.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << "hung for " << seconds << " s";
  const std::string why = run.status.error_message() + run.error;
  EXPECT_TRUE(why.find("lender") != std::string::npos || why.find("KV blocks") != std::string::npos) << why;
  EXPECT_EQ(WaitForNoLeases(), 0);
}

}  // namespace
}  // namespace ferry
