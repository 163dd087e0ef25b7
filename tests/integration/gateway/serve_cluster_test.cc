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

}  // namespace
}  // namespace ferry::testing
