// A rolling upgrade as Kubernetes runs one (deploy/k8s: each worker's preStop
// runs `ferry drain`, then the pod gets SIGTERM and comes back at the same
// address): a gateway, a scheduler and three workers started from the deploy
// configs, under a steady load of greedy completions through the gateway;
// each worker in turn is drained, stopped and restarted on its address. No
// request fails, each one gives exactly the text of its prompt's reference,
// and the drains moved requests off their workers by migration.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <mutex>
#include <regex>
#include <thread>

#include "ferry/v1/scheduler.grpc.pb.h"
#include "tests/integration/deploy/deploy_process.h"
#include "tests/process_util.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

using testing::ChildProcess;

const std::map<std::string, std::string> kEnv = {
    {"FERRY_THREADS", "1"}, {"FERRY_KV_CACHE_MEMORY", "64MiB"}, {"FERRY_LOG_LEVEL", "warn"}};

std::string Temp(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/ferry_rolling_", ::getpid(), "_", name);
}

class RollingUpgradeTest : public ::testing::Test {
 protected:
  std::unique_ptr<ChildProcess> StartWorker(const std::string& model, int index) {
    const std::string pf = Temp(absl::StrCat("worker", index, ".port"));
    std::remove(pf.c_str());
    auto p = std::make_unique<ChildProcess>(
        std::vector<std::string>{testing::FerryBinary(), "worker", "--config", testing::DeployConfig("worker"),
                                 "--model", model, "--listen", worker_addresses_[index], "--port-file", pf,
                                 "--metrics-port", "0", "--scheduler", scheduler_},
        kEnv);
    EXPECT_GT(testing::WaitForPort(pf), 0) << "worker " << index << " did not start";
    return p;
  }

  v1::ListWorkersResponse List() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListWorkersResponse r;
    if (!stub_->ListWorkers(&ctx, {}, &r).ok()) r.Clear();
    return r;
  }

  // Waits until the worker at `address` is alive, not draining, and (when
  // given) a different process than `old_incarnation`.
  bool WaitForWorker(const std::string& address, const std::string& old_incarnation) {
    const absl::Time end = absl::Now() + absl::Seconds(30);
    while (absl::Now() < end) {
      const v1::ListWorkersResponse list = List();
      for (const auto& w : list.workers()) {
        if (w.address() == address && w.alive() && !w.draining() && w.incarnation_id() != old_incarnation) {
          return true;
        }
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  // Waits (bounded) until the scheduler has a request placed on the worker at
  // `address`, so its drain has something to move.
  bool WaitForRequestsOn(const std::string& address) {
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (absl::Now() < end) {
      const v1::ListWorkersResponse list = List();
      for (const auto& w : list.workers()) {
        if (w.address() == address && w.alive() && w.num_requests() > 0) return true;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  std::string IncarnationOf(const std::string& address) {
    const v1::ListWorkersResponse list = List();
    for (const auto& w : list.workers()) {
      if (w.address() == address && w.alive()) return w.incarnation_id();
    }
    return "";
  }

  std::string scheduler_;
  std::vector<std::string> worker_addresses_;
  std::unique_ptr<v1::Scheduler::Stub> stub_;
};

TEST_F(RollingUpgradeTest, DrainingEachWorkerUnderLoadFailsNoRequest) {
  FERRY_REQUIRE_SHARED(model, "models/stories260K.gguf");
  const std::string sched_pf = Temp("scheduler.port");
  std::remove(sched_pf.c_str());
  const int metrics_port = testing::FreePort();
  ChildProcess scheduler({testing::FerryBinary(), "scheduler", "--config", testing::DeployConfig("scheduler"),
                          "--listen", "127.0.0.1:0", "--port-file", sched_pf, "--metrics-port",
                          std::to_string(metrics_port)},
                         kEnv);
  const int sched_port = testing::WaitForPort(sched_pf);
  ASSERT_GT(sched_port, 0);
  scheduler_ = absl::StrCat("127.0.0.1:", sched_port);
  stub_ = v1::Scheduler::NewStub(grpc::CreateChannel(scheduler_, grpc::InsecureChannelCredentials()));

  constexpr int kWorkers = 3;
  std::vector<std::unique_ptr<ChildProcess>> workers;
  for (int i = 0; i < kWorkers; ++i) worker_addresses_.push_back(absl::StrCat("127.0.0.1:", testing::FreePort()));
  for (int i = 0; i < kWorkers; ++i) workers.push_back(StartWorker(model, i));
  for (int i = 0; i < kWorkers; ++i) ASSERT_TRUE(WaitForWorker(worker_addresses_[i], "")) << i;

  const std::string gw_pf = Temp("gateway.port");
  std::remove(gw_pf.c_str());
  ChildProcess gateway({testing::FerryBinary(), "gateway", "--config", testing::DeployConfig("gateway"), "--model",
                        model, "--listen", "127.0.0.1:0", "--port-file", gw_pf, "--scheduler", scheduler_},
                       kEnv);
  const int gw_port = testing::WaitForPort(gw_pf);
  ASSERT_GT(gw_port, 0);

  // Greedy references, before anything moves.
  const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "Lily and Tom went to the park"};
  constexpr int kMaxTokens = 160;
  auto complete = [&](const std::string& prompt) {
    return testing::PostJson(gw_port, "/v1/completions",
                             {{"prompt", prompt},
                              {"max_tokens", kMaxTokens},
                              {"temperature", 0},
                              {"ignore_eos", true}});
  };
  std::vector<std::string> reference;
  for (const std::string& p : prompts) {
    testing::HttpResult r = complete(p);
    ASSERT_EQ(r.status, 200) << r.error;
    reference.push_back(r.body["choices"][0]["text"].get<std::string>());
  }

  std::atomic<bool> stop{false};
  std::mutex mu;
  int completed = 0;
  std::vector<std::string> failures;
  auto client = [&](int t) {
    for (int i = 0; !stop; ++i) {
      const size_t p = static_cast<size_t>(t + i) % prompts.size();
      testing::HttpResult r = complete(prompts[p]);
      std::lock_guard<std::mutex> lock(mu);
      if (r.status != 200) {
        failures.push_back(absl::StrCat("status ", r.status, ": ", r.error));
      } else if (r.body["choices"][0]["text"] != reference[p] ||
                 r.body["usage"]["completion_tokens"] != kMaxTokens ||
                 r.body["choices"][0]["finish_reason"] != "length") {
        failures.push_back(absl::StrCat("prompt ", p, ": got ", r.body.dump()));
      } else {
        ++completed;
      }
    }
  };
  constexpr int kClients = 6;
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) clients.emplace_back(client, t);

  // The rolling upgrade: drain (preStop), SIGTERM, start again at the same address.
  int drained_requests = 0;
  const std::regex running("draining worker \\S+ \\((\\S+)\\): (\\d+) requests running");
  for (int i = 0; i < kWorkers; ++i) {
    absl::SleepFor(absl::Milliseconds(400));
    const std::string old_incarnation = IncarnationOf(worker_addresses_[i]);
    EXPECT_TRUE(WaitForRequestsOn(worker_addresses_[i])) << "no request was ever placed on worker " << i;
    testing::CommandResult drain = testing::RunCommand(testing::FerryBinary() + " drain --scheduler " + scheduler_ +
                                                           " --worker " + worker_addresses_[i] + " --timeout 60s",
                                                       true);
    ASSERT_EQ(drain.exit_code, 0) << drain.out;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(drain.out, m, running)) << drain.out;
    EXPECT_EQ(m[1].str(), worker_addresses_[i]);
    drained_requests += std::stoi(m[2].str());
    EXPECT_NE(drain.out.find("drained in"), std::string::npos) << drain.out;
    workers[i]->Signal(SIGTERM);
    EXPECT_EQ(workers[i]->WaitExit(absl::Seconds(20)), 0) << "worker " << i << " did not stop on SIGTERM";
    workers[i] = StartWorker(model, i);
    ASSERT_TRUE(WaitForWorker(worker_addresses_[i], old_incarnation)) << "worker " << i << " did not come back";
  }
  absl::SleepFor(absl::Milliseconds(500));
  stop = true;
  for (std::thread& t : clients) t.join();

  EXPECT_TRUE(failures.empty()) << failures.size() << " failed, first: " << failures.front();
  EXPECT_GE(completed, kClients * 2);
  // Under load the drains had requests to move (each drain starts while its
  // worker runs some; a request may still finish in between), and they moved
  // by migration.
  EXPECT_GT(drained_requests, 0);
  httplib::Client metrics("127.0.0.1", metrics_port);
  auto res = metrics.Get("/metrics");
  ASSERT_TRUE(res && res->status == 200);
  std::smatch committed;
  const std::string body = res->body;
  ASSERT_TRUE(std::regex_search(body, committed, std::regex("ferry_scheduler_migrations_committed_total (\\d+)")))
      << body;
  EXPECT_GT(std::stoi(committed[1].str()), 0);
  std::printf("rolling upgrade: %d completions, %d requests drained, %s migrations committed\n", completed,
              drained_requests, committed[1].str().c_str());
  // All three workers are the new processes, alive and taking requests.
  const v1::ListWorkersResponse list = List();
  int alive = 0;
  for (const auto& w : list.workers()) alive += w.alive() && !w.draining();
  EXPECT_EQ(alive, kWorkers);
}

}  // namespace
}  // namespace ferry
