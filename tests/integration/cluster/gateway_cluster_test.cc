// `ferry gateway` in front of `ferry scheduler` and two `ferry worker`
// processes on loopback (stories260K): the admin endpoints drive the real
// cluster (list, migrate a running stream, drain), and a scheduler restart
// behaves as documented in scheduler/README.md:
//   - streams in flight end with an error event naming the lost scheduler
//     (HTTP requests that have not started answer 503), never hang;
//   - the workers abort what the scheduler ran there (every block freed);
//   - the restarted scheduler (same address) gets its workers back within
//     about a second, and the same gateway serves again, same text.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "ferry/v1/worker.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster/child_process.h"
#include "tests/integration/gateway/http_util.h"
#include "tests/process_util.h"
#include "tests/test_support.h"

namespace ferry::testing {
namespace {

using Json = nlohmann::json;

constexpr char kAdminKey[] = "admin-secret";
constexpr char kApiKey[] = "user-key";
// Long enough that a move lands mid-stream (stories260K: 512 positions).
constexpr int kLongTokens = 400;

httplib::Headers Bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

Json Completion(int max_tokens, bool stream) {
  return Json{{"prompt", "Once upon a time"},
              {"max_tokens", max_tokens},
              {"temperature", 0},
              {"ignore_eos", true},
              {"stream", stream}};
}

// The text of a streamed completion's chunks, and its error message if one came.
struct StreamText {
  std::string text;
  std::string error;
  bool done = false;
};

StreamText Collect(const StreamResult& r) {
  StreamText out;
  for (const std::string& e : r.events) {
    if (e == "[DONE]") {
      out.done = true;
      continue;
    }
    Json j = Json::parse(e, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.contains("error")) out.error = j["error"].value("message", "");
    if (j.contains("choices") && !j["choices"].empty())
      out.text += j["choices"][0].value("text", "");
  }
  return out;
}

class GatewayClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = SharedPath("models/stories260K.gguf");
    if (!std::filesystem::exists(model_)) GTEST_SKIP() << model_ << " is absent";
    StartScheduler("127.0.0.1:0");
    ASSERT_GT(sched_port_, 0) << "ferry scheduler did not start";
    std::vector<std::string> port_files;
    for (int i = 0; i < 2; ++i) {
      const std::string pf = TempPath(absl::StrCat("gw_worker", i, ".port"));
      std::remove(pf.c_str());
      port_files.push_back(pf);
      workers_.push_back(std::make_unique<Process>(std::vector<std::string>{
          FerryBinary(), "worker", "--model", model_, "--listen", "127.0.0.1:0", "--port-file", pf,
          "--scheduler", sched_address(), "--threads", "1", "--log-level", "warn"}));
    }
    for (const std::string& pf : port_files) {
      const int port = WaitForPort(pf);
      ASSERT_GT(port, 0) << "ferry worker did not start";
      worker_addresses_.push_back(absl::StrCat("127.0.0.1:", port));
    }
    ASSERT_TRUE(WaitForAliveWorkers(2, absl::Seconds(10)));
    const std::string gw_port = TempPath("gateway.port");
    std::remove(gw_port.c_str());
    gateway_ = std::make_unique<Process>(std::vector<std::string>{
        FerryBinary(), "gateway", "--scheduler", sched_address(), "--model", model_, "--listen",
        "127.0.0.1:0", "--port-file", gw_port, "--admin-key", kAdminKey, "--api-key", kApiKey,
        "--log-level", "warn"});
    gateway_port_ = WaitForPort(gw_port);
    ASSERT_GT(gateway_port_, 0) << "ferry gateway did not start";
  }

  void StartScheduler(const std::string& listen) {
    const std::string pf = TempPath("gw_sched.port");
    std::remove(pf.c_str());
    scheduler_ = std::make_unique<Process>(std::vector<std::string>{
        FerryBinary(), "scheduler", "--listen", listen, "--port-file", pf, "--worker-timeout",
        "500ms", "--migration", "off", "--log-level", "warn"});
    sched_port_ = WaitForPort(pf, absl::Seconds(20));
    stub_ = v1::Scheduler::NewStub(
        grpc::CreateChannel(sched_address(), grpc::InsecureChannelCredentials()));
  }

  std::string sched_address() const { return absl::StrCat("127.0.0.1:", sched_port_); }

  int AliveWorkers() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::ListWorkersResponse list;
    if (!stub_->ListWorkers(&ctx, {}, &list).ok()) return -1;
    int alive = 0;
    for (const auto& w : list.workers()) alive += w.alive() ? 1 : 0;
    return alive;
  }

  bool WaitForAliveWorkers(int n, absl::Duration timeout) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (AliveWorkers() == n) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  int64_t BlocksUsed(int worker) {
    auto stub = v1::Worker::NewStub(
        grpc::CreateChannel(worker_addresses_[worker], grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::StatsResponse stats;
    if (!stub->Stats(&ctx, {}, &stats).ok()) return -1;
    return stats.blocks_used();
  }

  bool WaitForZeroBlocks(int worker, absl::Duration timeout) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (BlocksUsed(worker) == 0) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  Json Cluster() {
    HttpResult r = HttpCall(gateway_port_, "GET", "/admin/cluster", "", Bearer(kAdminKey));
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::parse(r.body, nullptr, false);
  }

  HttpResult Admin(const std::string& path, const std::string& body) {
    return HttpCall(gateway_port_, "POST", path, body, Bearer(kAdminKey));
  }

  // The text of a plain (non-streamed) greedy completion.
  std::string CompleteText(int max_tokens, int* status = nullptr, std::string* body = nullptr) {
    HttpResult r =
        PostJson(gateway_port_, "/v1/completions", Completion(max_tokens, false), Bearer(kApiKey));
    if (status != nullptr) *status = r.status;
    if (body != nullptr) *body = r.body;
    if (r.status != 200) return "";
    return Json::parse(r.body)["choices"][0]["text"];
  }

  std::string model_;
  std::unique_ptr<Process> scheduler_;
  int sched_port_ = 0;
  std::unique_ptr<v1::Scheduler::Stub> stub_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::vector<std::string> worker_addresses_;
  std::unique_ptr<Process> gateway_;
  int gateway_port_ = 0;
};

TEST_F(GatewayClusterTest, AdminEndpointsListMigrateAndDrainTheRealCluster) {
  // Only the admin key opens them.
  EXPECT_EQ(HttpCall(gateway_port_, "GET", "/admin/cluster").status, 401);
  EXPECT_EQ(HttpCall(gateway_port_, "GET", "/admin/cluster", "", Bearer(kApiKey)).status, 401);
  Json cluster = Cluster();
  ASSERT_EQ(cluster["num_workers_alive"], 2) << cluster.dump();
  std::vector<std::string> ids;
  for (const Json& w : cluster["workers"]) {
    EXPECT_EQ(w["role"], "mixed");
    EXPECT_GT(w["load"]["blocks_total"].get<int>(), 0) << w.dump();
    ids.push_back(w["id"]);
  }
  EXPECT_EQ(Admin("/admin/migrate", R"({"request_id": "no-such-request"})").status, 404);
  EXPECT_EQ(Admin("/admin/migrate", R"({"request_id": )").status, 400);
  EXPECT_EQ(Admin("/admin/drain", R"({"worker": "no-such-worker"})").status, 404);

  const std::string reference = CompleteText(kLongTokens);
  ASSERT_FALSE(reference.empty());

  // Move a running stream to the other worker: the text does not change.
  std::atomic<bool> moved{false};
  std::string move_answer;
  std::thread mover;
  StreamResult streamed = PostStream(
      gateway_port_, "/v1/completions", Completion(kLongTokens, true),
      [&](const std::string& data, size_t index) {
        if (index == 4 && !mover.joinable()) {
          // This stream's request (the listing, refreshed by heartbeats,
          // may still name the finished reference request for a moment).
          Json chunk = Json::parse(data, nullptr, false);
          const std::string mine =
              chunk.is_object() ? chunk.value("id", std::string()) : std::string();
          mover = std::thread([&, mine] {
            for (int attempt = 0; attempt < 50 && !moved; ++attempt) {
              Json c = Cluster();
              for (const Json& w : c["workers"]) {
                for (const Json& id : w["requests"]) {
                  if (!id.is_string() || id.get<std::string>().rfind(mine, 0) != 0) continue;
                  const std::string to = w["id"] == ids[0] ? ids[1] : ids[0];
                  HttpResult r =
                      Admin("/admin/migrate", Json{{"request_id", id}, {"to", to}}.dump());
                  move_answer = r.body;
                  moved = r.status == 200;
                }
              }
              if (!moved) std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
          });
        }
        return true;
      },
      Bearer(kApiKey));
  if (mover.joinable()) mover.join();
  EXPECT_EQ(streamed.status, 200);
  EXPECT_TRUE(moved.load()) << move_answer;
  StreamText got = Collect(streamed);
  EXPECT_TRUE(got.error.empty()) << got.error;
  EXPECT_EQ(got.text, reference);
  Json answer = Json::parse(move_answer, nullptr, false);
  if (moved) {
    EXPECT_EQ(answer["object"], "cluster.migration");
    EXPECT_NE(answer["from"], answer["to"]);
    EXPECT_GT(answer["downtime_ms"].get<double>(), 0);
  }

  // Drain the first worker (by address): it is marked, and new work still succeeds on the other.
  HttpResult drained = Admin("/admin/drain", Json{{"worker", worker_addresses_[0]}}.dump());
  ASSERT_EQ(drained.status, 200) << drained.body;
  cluster = Cluster();
  for (const Json& w : cluster["workers"])
    EXPECT_EQ(w["draining"], w["address"] == worker_addresses_[0]);
  const std::string short_text = CompleteText(32);
  EXPECT_FALSE(short_text.empty());
  EXPECT_EQ(short_text, reference.substr(0, short_text.size()));
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(WaitForZeroBlocks(i, absl::Seconds(5))) << "worker " << i;
}

TEST_F(GatewayClusterTest, SchedulerRestartFailsStreamsInFlightAndWorkersRejoin) {
  const std::string reference = CompleteText(kLongTokens);
  ASSERT_FALSE(reference.empty());

  // Kill the scheduler while a stream is running through it.
  const absl::Time start = absl::Now();
  StreamResult broken = PostStream(
      gateway_port_, "/v1/completions", Completion(kLongTokens, true),
      [&](const std::string&, size_t index) {
        if (index == 4) scheduler_->Kill(SIGKILL);
        return true;
      },
      Bearer(kApiKey));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "the stream hung after the scheduler died";
  EXPECT_EQ(broken.status, 200);
  StreamText got = Collect(broken);
  EXPECT_TRUE(got.done) << broken.raw;
  EXPECT_TRUE(absl::StrContains(got.error, "lost the scheduler at " + sched_address()))
      << broken.raw;
  EXPECT_LT(got.text.size(), reference.size());
  EXPECT_EQ(got.text, reference.substr(0, got.text.size()));

  // While it is down: 503 with the reason, at once.
  int status = 0;
  std::string body;
  CompleteText(8, &status, &body);
  EXPECT_EQ(status, 503) << body;
  EXPECT_TRUE(absl::StrContains(body, "the scheduler at " + sched_address() + " is unavailable"))
      << body;
  // The workers aborted what the dead scheduler ran on them.
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(WaitForZeroBlocks(i, absl::Seconds(5))) << "worker " << i;

  // Same address, fresh state: the workers register again on their own.
  const int old_port = sched_port_;
  StartScheduler(absl::StrCat("127.0.0.1:", old_port));
  ASSERT_EQ(sched_port_, old_port) << "the scheduler could not listen on its old port again";
  const absl::Time restarted = absl::Now();
  ASSERT_TRUE(WaitForAliveWorkers(2, absl::Seconds(5)));
  std::printf("workers rejoined %s after the restart\n",
              absl::FormatDuration(absl::Now() - restarted).c_str());

  // The same gateway finds the scheduler again and gives the same text.
  std::string text;
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (absl::Now() < end) {
    text = CompleteText(kLongTokens, &status, &body);
    if (status == 200) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(status, 200) << body;
  EXPECT_EQ(text, reference);
  EXPECT_EQ(Cluster()["num_workers_alive"], 2);
}

}  // namespace
}  // namespace ferry::testing
