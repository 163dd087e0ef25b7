// `ferry bench --kill-worker-at` against a cluster of real processes on
// loopback: `ferry scheduler`, two `ferry worker --enable-fault-injection`
// paced with --min-step-ms so that streams are still running at the kill,
// and `ferry gateway`. The kill must land, every stream must complete, and
// the recovered streams must carry exactly the tokens of a fault-free run.
// A worker started without the flag refuses the kill and keeps serving.
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster/child_process.h"
#include "tests/integration/gateway/http_util.h"
#include "tests/integration/gateway/test_models.h"
#include "tests/process_util.h"

namespace ferry::testing {
namespace {

using Json = nlohmann::json;

class BenchKillWorkerTest : public ::testing::Test {
 protected:
  // A scheduler, two workers (with or without --enable-fault-injection) and
  // a gateway; true once both workers are listed alive.
  bool Start(const std::string& model, bool fault_injection) {
    const std::string sched_pf = TempPath("kill_sched.port");
    std::remove(sched_pf.c_str());
    procs_.push_back(std::make_unique<Process>(std::vector<std::string>{
        FerryBinary(), "scheduler", "--listen", "127.0.0.1:0", "--port-file", sched_pf,
        "--migration", "off", "--log-level", "warn"}));
    const int sched_port = WaitForPort(sched_pf);
    if (sched_port == 0) return false;
    const std::string sched = absl::StrCat("127.0.0.1:", sched_port);
    for (int i = 0; i < 2; ++i) {
      const std::string pf = TempPath(absl::StrCat("kill_worker", i, ".port"));
      std::remove(pf.c_str());
      std::vector<std::string> args = {FerryBinary(),   "worker",      "--model",     model,
                                       "--listen",      "127.0.0.1:0", "--port-file", pf,
                                       "--scheduler",   sched,         "--threads",   "1",
                                       "--min-step-ms", "40",          "--log-level", "warn"};
      if (fault_injection) args.push_back("--enable-fault-injection");
      procs_.push_back(std::make_unique<Process>(args));
      if (WaitForPort(pf) == 0) return false;
    }
    const std::string gw_pf = TempPath("kill_gateway.port");
    std::remove(gw_pf.c_str());
    procs_.push_back(std::make_unique<Process>(std::vector<std::string>{
        FerryBinary(), "gateway", "--scheduler", sched, "--model", model, "--listen", "127.0.0.1:0",
        "--port-file", gw_pf, "--log-level", "warn"}));
    gateway_port_ = WaitForPort(gw_pf);
    return gateway_port_ > 0 && WaitForAliveWorkers(2, absl::Seconds(20));
  }

  Json Cluster() {
    HttpResult r = HttpCall(gateway_port_, "GET", "/admin/cluster");
    return r.status == 200 ? Json::parse(r.body, nullptr, false) : Json();
  }

  bool WaitForAliveWorkers(int n, absl::Duration timeout) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      Json c = Cluster();
      if (c.is_object() && c.value("num_workers_alive", -1) == n) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  std::vector<std::unique_ptr<Process>> procs_;
  int gateway_port_ = 0;
};

TEST_F(BenchKillWorkerTest, AKilledWorkersStreamsRecoverWithNoTokenLostOrRepeated) {
  FERRY_REQUIRE_STORIES(model);
  ASSERT_TRUE(Start(model, /*fault_injection=*/true)) << "the cluster did not start";
  const std::string json = TempPath("kill_bench.json");
  // Eight streams of 48 tokens at >= 40 ms a step take about 2 s; the kill
  // at 0.8 s lands in the middle of them.
  CommandResult r = RunCommand(
      absl::StrCat(FerryBinary(), " bench --url http://127.0.0.1:", gateway_port_,
                   " --num-prompts 8 --request-rate inf --input-len 16 --output-len 48 --seed 5"
                   " --timeout 60 --progress=false --kill-worker-at 0.8 --json ",
                   json),
      /*merge_stderr=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::printf("%s\n", r.out.c_str());
  EXPECT_NE(r.out.find("worker kills: 1 of 1 attempted succeeded"), std::string::npos) << r.out;
  std::ifstream in(json);
  const Json run = Json::parse(in)["runs"][0];
  const Json& summary = run["summary"];
  const Json& faults = run["faults"];
  EXPECT_EQ(faults["kills_attempted"], 1) << faults.dump(2);
  EXPECT_EQ(faults["kills_ok"], 1) << faults.dump(2);
  ASSERT_EQ(faults["kills"].size(), 1u);
  EXPECT_FALSE(faults["kills"][0]["requests"].empty()) << faults.dump(2);
  EXPECT_EQ(summary["completed"], 8) << summary.dump(2);
  EXPECT_EQ(summary["failed"], 0);
  EXPECT_EQ(summary["output_token_mismatches"], 0);
  const Json& impact = faults["kill_impact"];
  EXPECT_EQ(impact["streams_in_flight"], 8) << impact.dump(2);
  EXPECT_GE(impact["streams_on_killed_worker"].get<int>(), 1) << impact.dump(2);
  EXPECT_EQ(impact["streams_failed"], 0);
  EXPECT_EQ(impact["streams_checked"], 8);
  EXPECT_EQ(impact["references_failed"], 0);
  EXPECT_EQ(impact["tokens_lost"], 0) << impact.dump(2);
  EXPECT_EQ(impact["tokens_duplicated"], 0) << impact.dump(2);
  EXPECT_EQ(impact["next_token_ms"]["count"], 8);
  EXPECT_EQ(impact["recovery_ms"]["count"], 8);
  EXPECT_EQ(impact["recovery_on_killed_worker_ms"]["count"],
            impact["streams_on_killed_worker"].get<int>());
  EXPECT_GT(impact["recovery_on_killed_worker_ms"]["max"].get<double>(), 0);
  // The killed worker is gone for good.
  EXPECT_TRUE(WaitForAliveWorkers(1, absl::Seconds(5))) << Cluster().dump(2);
}

TEST_F(BenchKillWorkerTest, AWorkerWithoutTheFlagRefusesAndKeepsServing) {
  FERRY_REQUIRE_STORIES(model);
  ASSERT_TRUE(Start(model, /*fault_injection=*/false)) << "the cluster did not start";
  const std::string address = Cluster()["workers"][0]["address"].get<std::string>();
  HttpResult r = PostJson(gateway_port_, "/admin/kill", Json{{"worker", address}});
  EXPECT_EQ(r.status, 409) << r.body;
  const Json error = Json::parse(r.body, nullptr, false)["error"];
  EXPECT_EQ(error["code"], "kill_refused") << r.body;
  EXPECT_NE(error["message"].get<std::string>().find("--enable-fault-injection"), std::string::npos)
      << r.body;
  // Still there after a worker timeout (1 s), and still generating.
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(Cluster()["num_workers_alive"], 2) << Cluster().dump(2);
  HttpResult done = PostJson(gateway_port_, "/v1/completions",
                             Json{{"prompt", "Once upon a time"}, {"max_tokens", 4}});
  EXPECT_EQ(done.status, 200) << done.body;
  // The bench counts the refusal as a failed kill, and the load completes.
  CommandResult bench = RunCommand(
      absl::StrCat(FerryBinary(), " bench --url http://127.0.0.1:", gateway_port_,
                   " --num-prompts 2 --input-len 8 --output-len 8 --timeout 60 --progress=false"
                   " --kill-worker-at 0 --fail-on-error"),
      /*merge_stderr=*/true);
  EXPECT_EQ(bench.exit_code, 0) << bench.out;
  EXPECT_NE(bench.out.find("worker kills: 0 of 1 attempted succeeded"), std::string::npos)
      << bench.out;
  EXPECT_NE(bench.out.find("kill_http_409"), std::string::npos) << bench.out;
}

}  // namespace
}  // namespace ferry::testing
