// `ferry serve --workers N` and `--pd P:D`: the whole cluster (scheduler and
// workers on loopback gRPC) in one process gives the same greedy text as a
// single engine.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/gateway/http_util.h"
#include "tests/integration/gateway/server_process.h"
#include "tests/integration/gateway/test_models.h"

namespace ferry::testing {
namespace {

using Json = nlohmann::json;

std::string Complete(int port, int max_tokens) {
  HttpResult r = PostJson(port, "/v1/completions",
                          {{"prompt", "Once upon a time"}, {"max_tokens", max_tokens}, {"temperature", 0}});
  EXPECT_EQ(r.status, 200) << r.body;
  if (r.status != 200) return "";
  return Json::parse(r.body)["choices"][0]["text"];
}

TEST(ServeClusterTest, WorkersAndDisaggregationGiveTheSingleEngineText) {
  FERRY_REQUIRE_STORIES(model);
  std::string single;
  {
    ServerProcess server({"serve", "--model", model, "--port", "0", "--threads", "1"});
    ASSERT_GT(server.port(), 0) << server.log();
    single = Complete(server.port(), 120);
  }
  ASSERT_FALSE(single.empty());
  for (std::vector<std::string> extra : {std::vector<std::string>{"--workers", "2"},
                                         std::vector<std::string>{"--pd", "1:1", "--pd-threshold", "1"}}) {
    std::vector<std::string> args = {"serve", "--model", model, "--port", "0", "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    ServerProcess server(args);
    ASSERT_GT(server.port(), 0) << server.log();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(Complete(server.port(), 120), single) << extra[0];
    HttpResult ready = HttpCall(server.port(), "GET", "/ready", "");
    EXPECT_EQ(ready.status, 200) << ready.body;
  }
  // Bad cluster shapes are refused at start.
  ServerProcess bad({"serve", "--model", model, "--port", "0", "--pd", "2:1", "--workers", "2"}, {},
                    std::chrono::seconds(5));
  EXPECT_EQ(bad.port(), 0);
}

// Structured output survives the prefill/decode hand-off: the prefill
// worker's first token and the decode worker's rest stay under the grammar,
// and a seeded sample is the single engine's.
TEST(ServeClusterTest, StructuredOutputCrossesTheHandOff) {
  FERRY_REQUIRE_STORIES(model);
  const Json request = {{"prompt", "Once upon a time"},
                        {"max_tokens", 120},
                        {"temperature", 0.9},
                        {"seed", 7},
                        {"response_format",
                         {{"type", "json_schema"},
                          {"json_schema",
                           {{"name", "pet"},
                            {"schema",
                             {{"type", "object"},
                              {"properties",
                               {{"name", {{"type", "string"}, {"maxLength", 12}}},
                                {"kind", {{"enum", {"cat", "dog"}}}}}},
                              {"required", {"name", "kind"}}}}}}}}};
  std::vector<std::string> texts;
  for (std::vector<std::string> extra :
       {std::vector<std::string>{},
        std::vector<std::string>{"--pd", "1:1", "--pd-threshold", "1"}}) {
    std::vector<std::string> args = {"serve", "--model", model, "--port", "0", "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    ServerProcess server(args);
    ASSERT_GT(server.port(), 0) << server.log();
    HttpResult r = PostJson(server.port(), "/v1/completions", request);
    ASSERT_EQ(r.status, 200) << r.body;
    const Json body = Json::parse(r.body);
    EXPECT_EQ(body["choices"][0]["finish_reason"], "stop") << r.body;
    texts.push_back(body["choices"][0]["text"]);
    const Json out = Json::parse(texts.back(), nullptr, false);
    ASSERT_TRUE(out.is_object()) << texts.back();
    EXPECT_TRUE(out["kind"] == "cat" || out["kind"] == "dog") << texts.back();
  }
  EXPECT_EQ(texts[0], texts[1]);
}

}  // namespace
}  // namespace ferry::testing
