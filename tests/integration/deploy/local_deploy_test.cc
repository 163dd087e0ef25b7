// deploy/local/run: the Kubernetes topology (scheduler, a prefill and a
// decode worker, gateway) as processes on this machine, started from the same
// config files as the ConfigMap; requests through its gateway; SIGTERM stops
// everything. And: every role rejects a bad config at start, naming the key.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <sstream>

#include "ferry/v1/scheduler.grpc.pb.h"
#include "tests/integration/deploy/deploy_process.h"
#include "tests/process_util.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

using testing::ChildProcess;

const std::map<std::string, std::string> kSmallWorkers = {
    {"FERRY_THREADS", "1"}, {"FERRY_KV_CACHE_MEMORY", "64MiB"}, {"FERRY_LOG_LEVEL", "warn"}};

TEST(LocalDeployTest, RunsTheKubernetesTopologyFromTheSameConfig) {
  FERRY_REQUIRE_SHARED(model, "models/stories260K.gguf");
  // A fresh directory: one left by an earlier run under the same pid would
  // hold its `ready` file until the script clears it.
  const std::string dir = absl::StrCat(::testing::TempDir(), "/ferry_local_", ::getpid());
  std::filesystem::remove_all(dir);
  ChildProcess run({"/bin/bash", std::string(FERRY_SOURCE_DIR) + "/deploy/local/run", "--bin",
                    testing::FerryBinary(), "--model", model, "--prefill", "1", "--decode", "1", "--port", "0",
                    "--dir", dir},
                   kSmallWorkers);
  std::string ready;
  const absl::Time end = absl::Now() + absl::Seconds(90);
  while (absl::Now() < end && ready.empty() && run.Running()) {
    ready = testing::ReadFileOrEmpty(dir + "/ready");
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_FALSE(ready.empty()) << "deploy/local/run did not come up; logs in " << dir;

  std::istringstream lines(ready);
  std::string kind, a, b, scheduler;
  int gateway_port = 0;
  std::map<std::string, std::string> workers;  // address -> name
  while (lines >> kind) {
    if (kind == "gateway") {
      lines >> a;
      gateway_port = testing::WaitForPort(dir + "/gateway.port");
    } else if (kind == "scheduler") {
      lines >> scheduler;
    } else if (kind == "worker") {
      lines >> a >> b;
      workers[b] = a;
    }
  }
  ASSERT_GT(gateway_port, 0);
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(testing::GetStatus(gateway_port, "/ready"), 200);

  // Both workers joined the scheduler with the roles deploy/local gave them.
  auto stub = v1::Scheduler::NewStub(grpc::CreateChannel(scheduler, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::ListWorkersResponse list;
  ASSERT_TRUE(stub->ListWorkers(&ctx, {}, &list).ok());
  std::set<std::string> roles;
  for (const auto& w : list.workers()) {
    ASSERT_TRUE(workers.count(w.address())) << w.address();
    EXPECT_TRUE(w.alive());
    roles.insert(workers[w.address()].substr(0, workers[w.address()].rfind('-')));
    EXPECT_EQ(w.role() == v1::WORKER_ROLE_PREFILL, workers[w.address()] == "worker-prefill-0");
  }
  EXPECT_EQ(roles, (std::set<std::string>{"worker-prefill", "worker-decode"}));

  // A long prompt (over the config's pd-threshold of 64 tokens: prefill,
  // then decode) and a short one.
  std::string long_prompt;
  for (int i = 0; i < 12; ++i) long_prompt += "Once upon a time there was a little dog. ";
  for (const std::string& prompt : {long_prompt, std::string("The little dog")}) {
    testing::HttpResult r = testing::PostJson(
        gateway_port, "/v1/completions",
        {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}});
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.body["usage"]["completion_tokens"], 12);
    EXPECT_FALSE(r.body["choices"][0]["text"].get<std::string>().empty());
    if (prompt == long_prompt) EXPECT_GT(r.body["usage"]["prompt_tokens"].get<int>(), 64);
  }

  // SIGTERM stops every process it started.
  run.Signal(SIGTERM);
  EXPECT_EQ(run.WaitExit(absl::Seconds(30)), 0);
  EXPECT_EQ(testing::GetStatus(gateway_port, "/health"), 0) << "the gateway is still up";
  grpc::ClientContext after;
  after.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  EXPECT_FALSE(stub->ListWorkers(&after, {}, &list).ok()) << "the scheduler is still up";
  if (!HasFailure()) std::filesystem::remove_all(dir);  // kept with its logs otherwise
}

TEST(LocalDeployTest, RefusesABadTopology) {
  testing::CommandResult r = testing::RunCommand(std::string(FERRY_SOURCE_DIR) + "/deploy/local/run --bin " +
                                                     testing::FerryBinary() + " --prefill 1 --decode 0",
                                                 true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("need a decode"), std::string::npos) << r.out;
}

// Every role reads --config at start and refuses a key it does not know, a
// value of the wrong type, or a bad environment override, naming it.
TEST(ConfigAtStartTest, EveryRoleRejectsABadConfigNamingTheKey) {
  const std::string dir = ::testing::TempDir();
  for (const std::string role : {"gateway", "scheduler", "worker", "serve", "drain"}) {
    const std::string path = absl::StrCat(dir, "/ferry_bad_", role, "_", ::getpid(), ".yaml");
    std::ofstream(path) << "# a typo on line 2\nmax-runing: 3\n";
    testing::CommandResult r = testing::RunCommand(testing::FerryBinary() + " " + role + " --config " + path, true);
    EXPECT_EQ(r.exit_code, 2) << role << ": " << r.out;
    EXPECT_NE(r.out.find("line 2: unknown key 'max-runing' for '" + role + "'"), std::string::npos) << r.out;
    std::remove(path.c_str());
  }
  const std::string json = absl::StrCat(dir, "/ferry_bad_", ::getpid(), ".json");
  std::ofstream(json) << R"({"listen": "127.0.0.1:0", "pd-threshold": "lots"})";
  testing::CommandResult r = testing::RunCommand(testing::FerryBinary() + " scheduler --config " + json, true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("key 'pd-threshold' needs an integer, got 'lots'"), std::string::npos) << r.out;
  std::remove(json.c_str());
  r = testing::RunCommand("FERRY_METRICS_PORT=x " + testing::FerryBinary() + " worker", true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("$FERRY_METRICS_PORT (--metrics-port) needs an integer"), std::string::npos) << r.out;
  // The deploy configs themselves are accepted by their roles: a bad value
  // check that runs after parsing proves parsing went through.
  for (const std::string role : {"gateway", "scheduler", "worker", "serve"}) {
    r = testing::RunCommand(testing::FerryBinary() + " " + role + " --config " + testing::DeployConfig(role) +
                                " --log-level nonsense",
                            true);
    EXPECT_NE(r.out.find("nonsense"), std::string::npos) << role << ": " << r.out;
    EXPECT_EQ(r.out.find("unknown key"), std::string::npos) << role << ": " << r.out;
  }
}

}  // namespace
}  // namespace ferry
