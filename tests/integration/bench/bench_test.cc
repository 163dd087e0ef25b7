// `ferry bench` against `ferry serve` on loopback: a short run where every
// request must succeed with sane metrics, a chat sweep with a plot, and a
// run against a closed port where every request fails as a connection error.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "tests/integration/gateway/server_process.h"
#include "tests/integration/gateway/test_models.h"
#include "tests/process_util.h"

namespace ferry::testing {
namespace {

using Json = nlohmann::json;

std::string TempFile(const std::string& name) {
  return std::string(::testing::TempDir()) + "/bench-" + std::to_string(::getpid()) + "-" + name;
}

Json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return Json::parse(in);
}

std::string Bench(int port, const std::string& flags) {
  return FerryBinary() + " bench --url http://127.0.0.1:" + std::to_string(port) +
         " --timeout 60 " + flags;
}

TEST(BenchTest, TwentyCompletionsAllSucceedWithSaneMetrics) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess server({"serve", "--model", model, "--port", "0"});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string json = TempFile("run.json");
  CommandResult r = RunCommand(Bench(server.port(),
                                     "--num-prompts 20 --request-rate 20 --input-len 24 "
                                     "--output-len 16 --seed 1 --slo ttft:60000,tpot:60000 "
                                     "--fail-on-error --json " +
                                         json),
                               /*merge_stderr=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.out << server.log();
  EXPECT_NE(r.out.find("TTFT"), std::string::npos) << r.out;
  Json run = ReadJson(json)["runs"][0];
  Json s = run["summary"];
  EXPECT_EQ(s["completed"], 20) << s.dump(2);
  EXPECT_EQ(s["failed"], 0);
  EXPECT_EQ(s["good_requests"], 20);
  EXPECT_EQ(s["total_output_tokens"], 20 * 16);  // ignore_eos: exactly max_tokens each
  EXPECT_GT(s["total_input_tokens"].get<int>(), 20 * 24 / 2);
  EXPECT_GT(s["request_throughput"].get<double>(), 0);
  EXPECT_GT(s["output_throughput"].get<double>(), 0);
  EXPECT_GT(s["ttft_ms"]["median"].get<double>(), 0);
  EXPECT_LE(s["ttft_ms"]["median"].get<double>(), s["e2e_ms"]["median"].get<double>());
  EXPECT_GT(s["tpot_ms"]["mean"].get<double>(), 0);
  EXPECT_EQ(s["tpot_ms"]["count"], 20);
  EXPECT_GT(s["itl_ms"]["count"].get<int>(), 0);
  ASSERT_EQ(run["requests"].size(), 20u);
  for (const Json& q : run["requests"]) {
    EXPECT_TRUE(q["ok"].get<bool>()) << q.dump();
    EXPECT_GE(q["start_s"].get<double>() + 0.05, q["scheduled_s"].get<double>());
    EXPECT_LE(q["ttft_ms"].get<double>(), q["e2e_ms"].get<double>());
  }
}

TEST(BenchTest, ChatSweepWritesAPlot) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess server(
      {"serve", "--model", model, "--port", "0", "--chat-template", ChatMlTemplateFile()});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string json = TempFile("sweep.json"), svg = TempFile("sweep.svg");
  CommandResult r = RunCommand(Bench(server.port(),
                                     "--endpoint chat --dataset prefix --num-prefixes 2 "
                                     "--prefix-len 32 --input-len 8 --output-len 8 --num-prompts 8 "
                                     "--max-concurrency 4 --sweep 10,inf --fail-on-error --json " +
                                         json + " --plot " + svg),
                               /*merge_stderr=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.out << server.log();
  Json runs = ReadJson(json)["runs"];
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[1]["request_rate"], "inf");
  for (const Json& run : runs) EXPECT_EQ(run["summary"]["completed"], 8) << run["summary"].dump(2);
  std::ifstream in(svg);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("<polyline"), std::string::npos);
  EXPECT_NE(text.find("TTFT CDF"), std::string::npos);
}

TEST(BenchTest, ClosedPortCountsConnectionErrors) {
  // Find a port nothing listens on: start a server, stop it, reuse its port.
  FERRY_REQUIRE_STORIES(model);
  int port = 0;
  {
    ServerProcess server({"serve", "--model", model, "--port", "0"});
    ASSERT_GT(server.port(), 0) << server.log();
    port = server.port();
  }
  const std::string json = TempFile("closed.json");
  CommandResult r = RunCommand(Bench(port, "--num-prompts 5 --fail-on-error --json " + json), true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  Json s = ReadJson(json)["runs"][0]["summary"];
  EXPECT_EQ(s["failed"], 5);
  EXPECT_EQ(s["errors"]["connection"], 5) << s.dump(2);
}

TEST(BenchTest, MigrationsDuringALoadLoseNoTokens) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess server({"serve", "--model", model, "--port", "0", "--workers", "2"});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string json = TempFile("migrate.json");
  CommandResult r = RunCommand(Bench(server.port(),
                                     "--num-prompts 16 --request-rate 8 --input-len 16 "
                                     "--output-len 96 --migrate-every 0.1 --fail-on-error --json " +
                                         json),
                               /*merge_stderr=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.out << server.log();
  Json run = ReadJson(json)["runs"][0];
  EXPECT_EQ(run["summary"]["completed"], 16) << run.dump(2);
  EXPECT_EQ(run["summary"]["output_token_mismatches"], 0);
  const Json& faults = run["faults"];
  EXPECT_GT(faults["migrations_attempted"].get<int>() + faults["idle_ticks"].get<int>(), 0)
      << faults.dump(2);
  EXPECT_EQ(faults["migrations_ok"], faults["downtime_ms"]["count"]) << faults.dump(2);
  std::printf("migrations: %s\n", faults.dump().c_str());
}

TEST(BenchTest, ReplaysAPlainCsvTraceAtItsTimes) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess server({"serve", "--model", model, "--port", "0"});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string trace = TempFile("trace.csv"), json = TempFile("trace.json");
  std::ofstream(trace) << "timestamp,input,output\n100.0,8,4\n100.2,16,6\n100.4,8,4\n100.6,12,5\n";
  CommandResult r = RunCommand(Bench(server.port(), "--dataset trace --dataset-path " + trace +
                                                        " --fail-on-error --json " + json),
                               /*merge_stderr=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.out << server.log();
  Json run = ReadJson(json)["runs"][0];
  EXPECT_EQ(run["request_rate"], "trace");
  EXPECT_EQ(run["summary"]["completed"], 4);
  EXPECT_EQ(run["summary"]["total_output_tokens"], 4 + 6 + 4 + 5);
  EXPECT_NEAR(run["requests"][3]["scheduled_s"].get<double>(), 0.6, 1e-9);
  EXPECT_GE(run["requests"][3]["start_s"].get<double>(), 0.6 - 0.01);
}

TEST(BenchTest, BadFlagsAreUsageErrors) {
  CommandResult help = RunCommand(FerryBinary() + " bench --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--burstiness"), std::string::npos) << help.out;
  EXPECT_EQ(RunCommand(FerryBinary() + " bench --request-rate fast", true).exit_code, 2);
  EXPECT_EQ(RunCommand(FerryBinary() + " bench --slo ttft", true).exit_code, 2);
  CommandResult r = RunCommand(
      FerryBinary() + " bench --dataset sharegpt --dataset-path /nonexistent.json", true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("cannot read dataset file"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ferry::testing
