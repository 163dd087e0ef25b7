// `ferry gateway` in front of a `ferry worker` over gRPC: same answers as
// serve, streaming, a disconnect aborting on the worker, and a lost worker
// reported as 503.
#include <grpcpp/create_channel.h>

#include <thread>

#include "ferry/v1/worker.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway/http_util.h"
#include "tests/integration/gateway/server_process.h"
#include "tests/integration/gateway/test_models.h"

namespace ferry::testing {
namespace {

using Json = nlohmann::json;

v1::StatsResponse WorkerStats(int port) {
  auto stub = v1::Worker::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::StatsResponse out;
  stub->Stats(&ctx, v1::StatsRequest(), &out);
  return out;
}

TEST(GatewayWorkerTest, GatewayTalksToAWorkerOverGrpc) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess worker({"worker", "--model", model, "--listen", "127.0.0.1:0"});
  ASSERT_GT(worker.port(), 0) << worker.log();
  ServerProcess gateway({"gateway", "--listen", "127.0.0.1:0", "--worker",
                         "127.0.0.1:" + std::to_string(worker.port()), "--model", model, "--chat-template",
                         ChatMlTemplateFile()});
  ASSERT_GT(gateway.port(), 0) << gateway.log();
  EXPECT_EQ(HttpCall(gateway.port(), "GET", "/ready").status, 200);

  HttpResult r = PostJson(gateway.port(), "/v1/completions",
                          {{"prompt", "Once upon a time"}, {"max_tokens", 20}, {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["choices"][0]["text"], kStoriesGreedy);

  StreamResult s = PostStream(gateway.port(), "/v1/chat/completions",
                              {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 5},
                               {"n", 2}, {"stream", true}});
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(s.events.back(), "[DONE]");

  // Too long for the context: 400 from the gateway's own check.
  EXPECT_EQ(PostJson(gateway.port(), "/v1/completions", {{"prompt", "a"}, {"max_tokens", 5000}}).status, 400);

  // A client that goes away: the worker aborts the request and frees its blocks.
  PostStream(gateway.port(), "/v1/completions",
             {{"prompt", "Once upon a time"}, {"max_tokens", 1500}, {"ignore_eos", true}, {"stream", true}},
             [](const std::string&, size_t i) { return i < 2; });
  v1::StatsResponse stats;
  for (int i = 0; i < 200; ++i) {
    stats = WorkerStats(worker.port());
    if (stats.blocks_used() == 0 && stats.load().running_requests() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(stats.blocks_used(), 0);
  EXPECT_EQ(stats.load().running_requests(), 0);

  // The worker goes away: not ready, and requests are 503.
  worker.Stop(SIGKILL);
  EXPECT_EQ(HttpCall(gateway.port(), "GET", "/ready").status, 503);
  HttpResult gone = PostJson(gateway.port(), "/v1/completions", {{"prompt", "a"}, {"max_tokens", 2}});
  EXPECT_EQ(gone.status, 503) << gone.body;
  EXPECT_EQ(HttpCall(gateway.port(), "GET", "/health").status, 200);
  EXPECT_EQ(gateway.Stop(), 0);
}

TEST(GatewayWorkerTest, SchedulerTargetIsAcceptedAndNotReadyWithoutOne) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess gateway({"gateway", "--listen", "127.0.0.1:0", "--scheduler", "127.0.0.1:1", "--model", model});
  ASSERT_GT(gateway.port(), 0) << gateway.log();
  EXPECT_EQ(HttpCall(gateway.port(), "GET", "/ready").status, 503);
  EXPECT_EQ(PostJson(gateway.port(), "/v1/completions", {{"prompt", "a"}, {"max_tokens", 2}}).status, 503);
  EXPECT_EQ(gateway.Stop(), 0);
}

TEST(GatewayWorkerTest, BadFlagsAreClearErrors) {
  CommandResult r = RunCommand(FerryBinary() + " gateway --listen 127.0.0.1:0", true);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--scheduler"), std::string::npos) << r.out;
  r = RunCommand(FerryBinary() + " gateway --listen 127.0.0.1:0 --worker 127.0.0.1:1 --model /nonexistent.gguf",
                 true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("/nonexistent.gguf"), std::string::npos) << r.out;
  r = RunCommand(FerryBinary() + " serve --port 0 --max-running-requests 0", true);
  EXPECT_EQ(r.exit_code, 2) << r.out;
}

}  // namespace
}  // namespace ferry::testing
