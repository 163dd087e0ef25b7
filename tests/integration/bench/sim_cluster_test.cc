// A cluster of real processes whose workers run the simulated backend:
// `ferry scheduler`, two `ferry worker --backend sim` and `ferry gateway` on
// loopback, driven by `ferry bench` with streaming requests. Checks that
// every stream completes with exactly the tokens asked for and that the
// simulated tokens are deterministic (the same prompt, the same text).
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster/child_process.h"
#include "tests/integration/gateway/test_models.h"
#include "tests/process_util.h"

namespace ferry::testing {
namespace {

using Json = nlohmann::json;

class SimClusterTest : public ::testing::Test {
 protected:
  void Start(const std::string& model) {
    const std::string sched_pf = TempPath("sim_sched.port");
    std::remove(sched_pf.c_str());
    procs_.push_back(std::make_unique<Process>(std::vector<std::string>{
        FerryBinary(), "scheduler", "--listen", "127.0.0.1:0", "--port-file", sched_pf, "--log-level", "warn"}));
    const int sched_port = WaitForPort(sched_pf);
    ASSERT_GT(sched_port, 0) << "ferry scheduler did not start";
    const std::string sched = absl::StrCat("127.0.0.1:", sched_port);
    for (int i = 0; i < 2; ++i) {
      const std::string pf = TempPath(absl::StrCat("sim_worker", i, ".port"));
      std::remove(pf.c_str());
      procs_.push_back(std::make_unique<Process>(std::vector<std::string>{
          FerryBinary(), "worker", "--model", model, "--backend", "sim", "--sim-profile", "h100-llama3-8b",
          "--listen", "127.0.0.1:0", "--port-file", pf, "--scheduler", sched, "--threads", "1", "--log-level",
          "warn"}));
      ASSERT_GT(WaitForPort(pf), 0) << "ferry worker --backend sim did not start";
    }
    const std::string gw_pf = TempPath("sim_gateway.port");
    std::remove(gw_pf.c_str());
    procs_.push_back(std::make_unique<Process>(std::vector<std::string>{
        FerryBinary(), "gateway", "--scheduler", sched, "--model", model, "--listen", "127.0.0.1:0", "--port-file",
        gw_pf, "--log-level", "warn"}));
    gateway_port_ = WaitForPort(gw_pf);
    ASSERT_GT(gateway_port_, 0) << "ferry gateway did not start";
  }

  std::vector<std::unique_ptr<Process>> procs_;
  int gateway_port_ = 0;
};

TEST_F(SimClusterTest, StreamedRequestsCompleteThroughTheRealGatewayAndScheduler) {
  FERRY_REQUIRE_STORIES(model);
  ASSERT_NO_FATAL_FAILURE(Start(model));
  const std::string json = TempPath("sim_bench.json");
  // Workers register with the scheduler just after they listen: retry the
  // first request for a while.
  CommandResult r;
  for (int attempt = 0; attempt < 50; ++attempt) {
    r = RunCommand(absl::StrCat(FerryBinary(), " bench --url http://127.0.0.1:", gateway_port_,
                                " --num-prompts 1 --input-len 8 --output-len 4 --timeout 30 --progress=false "
                                "--fail-on-error"),
                   /*merge_stderr=*/true);
    if (r.exit_code == 0) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = RunCommand(absl::StrCat(FerryBinary(), " bench --url http://127.0.0.1:", gateway_port_,
                              " --num-prompts 8 --request-rate 20 --input-len 32 --output-len 24 --seed 3 "
                              "--timeout 60 --progress=false --fail-on-error --json ",
                              json),
                 /*merge_stderr=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::ifstream in(json);
  const Json s = Json::parse(in)["runs"][0]["summary"];
  EXPECT_EQ(s["completed"], 8) << s.dump(2);
  EXPECT_EQ(s["failed"], 0);
  EXPECT_EQ(s["total_output_tokens"], 8 * 24);
  EXPECT_EQ(s["output_token_mismatches"], 0);
  // An H100 decode step of the 8B model is about 6 ms: the simulated
  // worker sleeps for it, so a token cannot come back faster than that.
  EXPECT_GT(s["tpot_ms"]["mean"].get<double>(), 5.0);
}

TEST_F(SimClusterTest, TheSamePromptGivesTheSameSimulatedText) {
  FERRY_REQUIRE_STORIES(model);
  ASSERT_NO_FATAL_FAILURE(Start(model));
  const std::string body = "'{\"prompt\":\"the same prompt\",\"max_tokens\":12,\"temperature\":0}'";
  const std::string curl = absl::StrCat("curl -s -m 30 -H 'Content-Type: application/json' -d ", body,
                                        " http://127.0.0.1:", gateway_port_, "/v1/completions");
  std::string first;
  for (int attempt = 0; attempt < 50 && first.empty(); ++attempt) {
    CommandResult r = RunCommand(curl);
    Json j = Json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    if (r.exit_code == 0 && j.is_object() && j.contains("choices")) {
      first = j["choices"][0]["text"].get<std::string>();
      EXPECT_EQ(j["usage"]["completion_tokens"], 12) << r.out;
    } else {
      absl::SleepFor(absl::Milliseconds(200));
    }
  }
  ASSERT_FALSE(first.empty());
  for (int i = 0; i < 3; ++i) {
    CommandResult r = RunCommand(curl);
    Json j = Json::parse(r.out, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("choices")) << r.out;
    EXPECT_EQ(j["choices"][0]["text"].get<std::string>(), first);
  }
}

}  // namespace
}  // namespace ferry::testing
