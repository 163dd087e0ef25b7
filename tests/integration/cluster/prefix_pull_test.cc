// Prefix pull across `ferry worker` processes on loopback with the built-in
// model: a prompt computed on one worker, then sent again through the
// scheduler to the other worker (round-robin), makes that worker pull the
// cached prefix from the first instead of computing it (seen in both
// workers' metrics), with exactly the greedy tokens of the first run. When
// the peer is gone before the pull, the request computes the prefix and
// still completes with the same tokens. A worker that caches the start of
// the prefix pulls only the rest.
#include <grpcpp/grpcpp.h>

#include <map>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ferry/v1/scheduler.grpc.pb.h"
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

struct StreamOutcome {
  grpc::Status status;
  std::vector<int32_t> tokens;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
};

// A 150-token prompt (nine full 16-token blocks) of ids within the
// built-in model's vocabulary.
v1::GenerateRequest Greedy(const std::string& id) {
  v1::GenerateRequest r;
  r.set_request_id(id);
  for (int i = 0; i < 150; ++i) r.add_prompt_ids(3 + (i * 37) % 200);
  r.mutable_params()->set_temperature(0);
  r.mutable_params()->set_max_tokens(12);
  r.mutable_params()->set_ignore_eos(true);
  r.mutable_params()->set_seed(1);
  r.set_stream(true);
  return r;
}

// Greedy's prompt up to `shared` tokens, then others.
v1::GenerateRequest Diverging(const std::string& id, int shared) {
  v1::GenerateRequest r = Greedy(id);
  for (int i = shared; i < r.prompt_ids_size(); ++i) r.set_prompt_ids(i, 3 + (i * 53 + 7) % 200);
  return r;
}

// The value of one sample line (`name{labels} value`) in a scrape, or -1.
double MetricValue(const std::string& scrape, const std::string& series) {
  size_t at = 0;
  while ((at = scrape.find(series, at)) != std::string::npos) {
    const bool line_start = at == 0 || scrape[at - 1] == '\n';
    const size_t after = at + series.size();
    if (line_start && after < scrape.size() && scrape[after] == ' ') {
      return std::stod(scrape.substr(after + 1, scrape.find('\n', after) - after - 1));
    }
    at = after;
  }
  return -1;
}

class PrefixPullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string sched_port = TempPath("pull_sched.port");
    std::remove(sched_port.c_str());
    // Prefill priced at 1 token/s: whenever a peer caches more, the pull wins.
    scheduler_ = std::make_unique<Process>(std::vector<std::string>{
        testing::FerryBinary(), "scheduler", "--listen", "127.0.0.1:0", "--port-file", sched_port,
        "--worker-timeout", "2s", "--log-level", "warn", "--policy", "round-robin", "--migration", "off",
        "--pd-threshold", "0", "--prefix-pull", "on", "--prefix-pull-prefill-rate", "1",
        "--prefix-pull-min-blocks", "1"});
    const int port = WaitForPort(sched_port);
    ASSERT_GT(port, 0) << "ferry scheduler did not start";
    const std::string sched_address = absl::StrCat("127.0.0.1:", port);
    std::vector<std::string> port_files;
    for (int i = 0; i < 2; ++i) {
      const std::string pf = TempPath(absl::StrCat("pull_worker", i, ".port"));
      std::remove(pf.c_str());
      port_files.push_back(pf);
      metrics_ports_.push_back(FreePort());
      // No --model: the built-in model.
      workers_.push_back(std::make_unique<Process>(std::vector<std::string>{
          testing::FerryBinary(), "worker", "--listen", "127.0.0.1:0", "--port-file", pf, "--scheduler",
          sched_address, "--threads", "1", "--log-level", "warn", "--metrics-port",
          std::to_string(metrics_ports_.back())}));
    }
    for (const std::string& pf : port_files) ASSERT_GT(WaitForPort(pf), 0) << "ferry worker did not start";
    stub_ = v1::Scheduler::NewStub(grpc::CreateChannel(sched_address, grpc::InsecureChannelCredentials()));
    const absl::Time end = absl::Now() + absl::Seconds(20);
    while (absl::Now() < end && AliveWorkers() < 2) absl::SleepFor(absl::Milliseconds(20));
    ASSERT_EQ(AliveWorkers(), 2);
  }

  int AliveWorkers() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListWorkersResponse list;
    if (!stub_->ListWorkers(&ctx, {}, &list).ok()) return 0;
    int n = 0;
    for (const auto& w : list.workers()) n += w.alive() ? 1 : 0;
    return n;
  }

  StreamOutcome Generate(const v1::GenerateRequest& request) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub_->Generate(&ctx, request);
    StreamOutcome out;
    v1::TokenEvent ev;
    while (reader->Read(&ev)) {
      for (int32_t t : ev.token_ids()) out.tokens.push_back(t);
      if (ev.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) out.finish = ev.finish_reason();
    }
    out.status = reader->Finish();
    return out;
  }

  std::string Scrape(int worker) {
    const absl::Time end = absl::Now() + absl::Seconds(5);
    while (absl::Now() < end) {
      httplib::Client client("127.0.0.1", metrics_ports_[worker]);
      client.set_connection_timeout(1);
      client.set_read_timeout(5);
      auto res = client.Get("/metrics");
      if (res && res->status == 200) return res->body;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return "";
  }

  // The worker whose metrics say it computed prompt tokens (ran the first request).
  int WorkerThatRan() {
    for (int i = 0; i < 2; ++i) {
      if (MetricValue(Scrape(i), "ferry_prompt_tokens_total") > 0) return i;
    }
    return -1;
  }

  // Waits for a few heartbeats, so the scheduler's prefix index has the
  // blocks the first request stored.
  static void LetHeartbeatsCarryTheBlocks() { absl::SleepFor(absl::Milliseconds(600)); }

  std::unique_ptr<Process> scheduler_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::vector<int> metrics_ports_;
  std::unique_ptr<v1::Scheduler::Stub> stub_;
};

TEST_F(PrefixPullTest, SecondWorkerPullsTheCachedPrefixAndGivesTheSameTokens) {
  StreamOutcome first = Generate(Greedy("first"));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  ASSERT_EQ(first.tokens.size(), 12u);
  const int a = WorkerThatRan();
  ASSERT_GE(a, 0);
  const int b = 1 - a;
  LetHeartbeatsCarryTheBlocks();

  StreamOutcome second = Generate(Greedy("second"));  // round-robin: the other worker
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_EQ(second.tokens, first.tokens);

  const std::string ma = Scrape(a), mb = Scrape(b);
  EXPECT_EQ(MetricValue(mb, "ferry_prefix_pulls_total{result=\"ok\"}"), 1) << mb;
  EXPECT_EQ(MetricValue(mb, "ferry_prefix_pulls_total{result=\"failed\"}"), 0);
  // 149 tokens can be matched (the last is always computed): 9 blocks.
  EXPECT_EQ(MetricValue(mb, "ferry_prefix_pull_blocks_total"), 9);
  EXPECT_GT(MetricValue(mb, "ferry_prefix_pull_bytes_total"), 0);
  EXPECT_EQ(MetricValue(mb, "ferry_prefix_blocks_imported_total"), 9);
  // The pulled blocks were hits: only the last prompt token was computed.
  EXPECT_EQ(MetricValue(mb, "ferry_prefix_cache_hit_blocks_total{tier=\"device\"}"), 9);
  EXPECT_EQ(MetricValue(ma, "ferry_prefix_exports_total{result=\"ok\"}"), 1) << ma;
  EXPECT_EQ(MetricValue(ma, "ferry_prefix_blocks_exported_total"), 9);
}

// A worker that caches the first blocks of a prompt (another prompt shared
// them) pulls only the blocks it lacks, and gives the same tokens.
TEST_F(PrefixPullTest, WorkerCachingPartOfThePrefixPullsOnlyTheRest) {
  StreamOutcome other = Generate(Diverging("other", 4 * 16));
  ASSERT_TRUE(other.status.ok()) << other.status.error_message();
  const int x = WorkerThatRan();
  ASSERT_GE(x, 0);
  const int y = 1 - x;
  LetHeartbeatsCarryTheBlocks();
  // To y (round-robin): it pulls the four shared blocks from x and computes
  // the other five.
  StreamOutcome full = Generate(Greedy("full"));
  ASSERT_TRUE(full.status.ok()) << full.status.error_message();
  LetHeartbeatsCarryTheBlocks();
  // To x: it caches blocks [0, 4) itself and pulls [4, 9) from y.
  StreamOutcome again = Generate(Greedy("again"));
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.tokens, full.tokens);

  const std::string mx = Scrape(x), my = Scrape(y);
  EXPECT_EQ(MetricValue(my, "ferry_prefix_pulls_total{result=\"ok\"}"), 1) << my;
  EXPECT_EQ(MetricValue(my, "ferry_prefix_pull_blocks_total"), 4);
  EXPECT_EQ(MetricValue(mx, "ferry_prefix_blocks_exported_total"), 4);
  EXPECT_EQ(MetricValue(mx, "ferry_prefix_pulls_total{result=\"ok\"}"), 1) << mx;
  EXPECT_EQ(MetricValue(mx, "ferry_prefix_pulls_total{result=\"failed\"}"), 0);
  EXPECT_EQ(MetricValue(mx, "ferry_prefix_pull_blocks_total"), 5);
  EXPECT_EQ(MetricValue(mx, "ferry_prefix_blocks_imported_total"), 5);
  EXPECT_EQ(MetricValue(my, "ferry_prefix_blocks_exported_total"), 5);
  // The bytes follow the blocks: the same per block in both pulls.
  EXPECT_NEAR(MetricValue(mx, "ferry_prefix_pull_bytes_total") / 5, MetricValue(my, "ferry_prefix_pull_bytes_total") / 4,
              64);
  // x's last request hit all nine blocks: its own four and the five pulled.
  EXPECT_EQ(MetricValue(mx, "ferry_prefix_cache_hit_blocks_total{tier=\"device\"}"), 9);
}

TEST_F(PrefixPullTest, PeerGoneBeforeThePullFallsBackToComputingThePrefix) {
  StreamOutcome first = Generate(Greedy("first"));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  const int a = WorkerThatRan();
  ASSERT_GE(a, 0);
  const int b = 1 - a;
  LetHeartbeatsCarryTheBlocks();
  // Killed, but the scheduler still lists it for up to --worker-timeout: it
  // tells the other worker to pull from a peer that is not there.
  workers_[a]->Kill(SIGKILL);

  StreamOutcome second = Generate(Greedy("second"));
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_EQ(second.tokens, first.tokens);
  const std::string mb = Scrape(b);
  EXPECT_EQ(MetricValue(mb, "ferry_prefix_pulls_total{result=\"failed\"}"), 1) << mb;
  EXPECT_EQ(MetricValue(mb, "ferry_prefix_pull_fallbacks_total"), 1);
  EXPECT_EQ(MetricValue(mb, "ferry_prefix_pulls_total{result=\"ok\"}"), 0);
  EXPECT_EQ(MetricValue(mb, "ferry_prefix_blocks_imported_total"), 0);
}

}  // namespace
}  // namespace ferry
