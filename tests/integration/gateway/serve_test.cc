// `ferry serve` as a process on loopback, over real HTTP: completions and
// chat, streaming, disconnects freeing KV blocks, 200 concurrent streams,
// API keys, overload, timeouts, SIGTERM drain and the README's examples.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <regex>
#include <thread>

#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway/http_util.h"
#include "tests/integration/gateway/server_process.h"
#include "tests/integration/gateway/test_models.h"

namespace ferry::testing {
namespace {

using Json = nlohmann::json;

std::vector<std::string> ServeArgs(const std::string& model, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"serve", "--model", model, "--port", "0", "--chat-template",
                                   ChatMlTemplateFile()};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// The value of an unlabelled metric in a Prometheus text page (-1: absent).
double MetricValue(const std::string& page, const std::string& name) {
  std::regex re("\n" + name + " ([0-9.e+-]+)\n");
  std::smatch m;
  if (!std::regex_search(page, m, re)) return -1;
  return std::stod(m[1]);
}

TEST(ServeTest, GreedyCompletionMatchesLlamaCppAndChatWorks) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess server(ServeArgs(model));
  ASSERT_GT(server.port(), 0) << server.log();
  HttpResult r = PostJson(server.port(), "/v1/completions",
                          {{"model", "stories260K.gguf"}, {"prompt", "Once upon a time"}, {"max_tokens", 20},
                           {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = Json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["text"], kStoriesGreedy);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(j["usage"]["completion_tokens"], 20);
  HttpResult chat = PostJson(server.port(), "/v1/chat/completions",
                             {{"messages", {{{"role", "system"}, {"content", "Tell a story."}},
                                            {{"role", "user"}, {"content", "Once upon a time"}}}},
                              {"max_completion_tokens", 8},
                              {"seed", 3}});
  ASSERT_EQ(chat.status, 200) << chat.body;
  Json c = Json::parse(chat.body);
  EXPECT_EQ(c["object"], "chat.completion");
  EXPECT_EQ(c["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(c["usage"]["completion_tokens"].get<int>() <= 8, true);
  EXPECT_EQ(HttpCall(server.port(), "GET", "/ready").status, 200);
  EXPECT_EQ(server.Stop(), 0);
}

// The same model as a llama2.c checkpoint with its tokenizer.model beside it:
// the gateway reads its tokenizer and context length from there.
TEST(ServeTest, Llama2cCheckpointServesTheSameText) {
  FERRY_REQUIRE_SHARED(model, "models/llama2c-stories260K/stories260K.bin");
  ServerProcess server(ServeArgs(model));
  ASSERT_GT(server.port(), 0) << server.log();
  HttpResult models = HttpCall(server.port(), "GET", "/v1/models");
  ASSERT_EQ(models.status, 200) << models.body;
  EXPECT_EQ(Json::parse(models.body)["data"][0]["id"], "stories260K.bin");
  HttpResult r = PostJson(server.port(), "/v1/completions",
                          {{"model", "stories260K.bin"},
                           {"prompt", "Once upon a time"},
                           {"max_tokens", 20},
                           {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["choices"][0]["text"], kStoriesGreedy);
  HttpResult tok = PostJson(server.port(), "/tokenize", {{"prompt", "Once upon a time"}});
  ASSERT_EQ(tok.status, 200) << tok.body;
  EXPECT_EQ(Json::parse(tok.body)["tokens"], Json::array({1, 403, 407, 261, 378}));
  // seq_len 512 is the context: a prompt and max_tokens past it are refused.
  HttpResult over = PostJson(server.port(), "/v1/completions",
                             {{"prompt", "Once upon a time"}, {"max_tokens", 600}});
  EXPECT_EQ(over.status, 400) << over.body;
  EXPECT_NE(over.body.find("512"), std::string::npos) << over.body;
  EXPECT_EQ(server.Stop(), 0);
}

TEST(ServeTest, StreamsTheSameTextAsTheWholeAnswer) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess server(ServeArgs(model));
  ASSERT_GT(server.port(), 0) << server.log();
  StreamResult s = PostStream(server.port(), "/v1/completions",
                              {{"prompt", "Once upon a time"}, {"max_tokens", 20}, {"temperature", 0},
                               {"stream", true}, {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(s.status, 200) << s.raw;
  ASSERT_GE(s.events.size(), 3u);
  EXPECT_EQ(s.events.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 2 < s.events.size(); ++i) {
    text += Json::parse(s.events[i])["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(text, kStoriesGreedy);
  Json usage = Json::parse(s.events[s.events.size() - 2]);
  EXPECT_EQ(usage["usage"]["completion_tokens"], 20);
}

TEST(ServeTest, ClientDisconnectAbortsAndFreesKvBlocks) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess server(ServeArgs(model));
  ASSERT_GT(server.port(), 0) << server.log();
  StreamResult s = PostStream(server.port(), "/v1/completions",
                              {{"prompt", "Once upon a time"}, {"max_tokens", 1500}, {"ignore_eos", true},
                               {"stream", true}},
                              [](const std::string&, size_t i) { return i < 3; });
  EXPECT_EQ(s.events.size(), 4u);
  std::string page;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    page = HttpCall(server.port(), "GET", "/metrics").body;
    if (MetricValue(page, "ferry_engine_kv_blocks_used") == 0 &&
        MetricValue(page, "ferry_engine_requests_running") == 0 &&
        MetricValue(page, "ferry_requests_aborted_total") == 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(MetricValue(page, "ferry_engine_kv_blocks_used"), 0) << page;
  EXPECT_EQ(MetricValue(page, "ferry_engine_requests_running"), 0) << page;
  EXPECT_EQ(MetricValue(page, "ferry_requests_aborted_total"), 1) << page;
  // Far fewer than 1500 tokens were generated.
  EXPECT_LT(MetricValue(page, "ferry_engine_generated_tokens_total"), 1000) << page;
}

TEST(ServeTest, TwoHundredConcurrentStreamsAllComplete) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess server(ServeArgs(model));
  ASSERT_GT(server.port(), 0) << server.log();
  constexpr int kStreams = 200;
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
  std::atomic<int> completed{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      StreamResult s = PostStream(server.port(), "/v1/completions",
                                  {{"prompt", "Once upon a time"}, {"max_tokens", 16}, {"ignore_eos", true},
                                   {"seed", i}, {"stream", true}, {"stream_options", {{"include_usage", true}}}},
                                  [&](const std::string&, size_t index) {
                                    if (index != 0) return true;
                                    // Hold this stream open until every stream is open.
                                    std::unique_lock<std::mutex> lock(mu);
                                    ++started;
                                    cv.notify_all();
                                    cv.wait_for(lock, std::chrono::seconds(120), [&] { return started >= kStreams; });
                                    return true;
                                  });
      if (s.status == 200 && s.events.size() >= 2 && s.events.back() == "[DONE]" &&
          Json::parse(s.events[s.events.size() - 2])["usage"]["completion_tokens"] == 16) {
        ++completed;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(started, kStreams);
  EXPECT_EQ(completed.load(), kStreams);
}

TEST(ServeTest, ApiKeysFromFlagEnvironmentAndFileAreNeverLogged) {
  FERRY_REQUIRE_STORIES(model);
  std::string key_file = std::string(::testing::TempDir()) + "/keys-" + std::to_string(::getpid());
  std::ofstream(key_file) << "# keys\nsk-from-file-4\n";
  ServerProcess server(ServeArgs(model, {"--api-key", "sk-flag-1", "--api-key-file", key_file, "--log-level",
                                         "debug"}),
                       {{"FERRY_API_KEYS", "sk-env-2,sk-env-3"}});
  ASSERT_GT(server.port(), 0) << server.log();
  Json body = {{"prompt", "Hi"}, {"max_tokens", 2}};
  HttpResult none = PostJson(server.port(), "/v1/completions", body);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(Json::parse(none.body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(PostJson(server.port(), "/v1/completions", body, {{"Authorization", "Bearer sk-wrong"}}).status, 401);
  for (const char* key : {"sk-flag-1", "sk-env-2", "sk-env-3", "sk-from-file-4"}) {
    EXPECT_EQ(PostJson(server.port(), "/v1/completions", body, {{"Authorization", std::string("Bearer ") + key}})
                  .status,
              200)
        << key;
  }
  EXPECT_EQ(HttpCall(server.port(), "GET", "/health").status, 200);
  EXPECT_EQ(server.Stop(), 0);
  std::string log = server.log();
  for (const char* key : {"sk-flag-1", "sk-env-2", "sk-from-file-4", "sk-wrong"}) {
    EXPECT_EQ(log.find(key), std::string::npos) << key;
  }
}

TEST(ServeTest, OverloadIs429WithRetryAfterAndTimeoutsAre504) {
  FERRY_REQUIRE_STORIES(model);
  // The timeout is far below the time 2000 tokens take on any CPU, and far
  // above a 1-token request's.
  ServerProcess server(ServeArgs(model, {"--max-running-requests", "1", "--max-waiting-requests", "0",
                                         "--request-timeout", "0.2"}));
  ASSERT_GT(server.port(), 0) << server.log();
  HttpResult second;
  PostStream(server.port(), "/v1/completions",
             {{"prompt", "Once"}, {"max_tokens", 1500}, {"ignore_eos", true}, {"stream", true}},
             [&](const std::string&, size_t) {
               second = PostJson(server.port(), "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}});
               return false;
             });
  EXPECT_EQ(second.status, 429) << second.body;
  EXPECT_EQ(second.headers.count("Retry-After"), 1u);
  // The slot comes back once the first stream is gone.
  HttpResult r;
  for (int i = 0; i < 100; ++i) {
    r = PostJson(server.port(), "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}});
    if (r.status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(r.status, 200) << r.body;
  HttpResult slow = PostJson(server.port(), "/v1/completions",
                             {{"prompt", "x"}, {"max_tokens", 2000}, {"ignore_eos", true}});
  EXPECT_EQ(slow.status, 504) << slow.body;
}

TEST(ServeTest, SigtermLetsStreamsFinishThenExitsZero) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess server(ServeArgs(model));
  ASSERT_GT(server.port(), 0) << server.log();
  StreamResult s = PostStream(server.port(), "/v1/completions",
                              {{"prompt", "Once upon a time"}, {"max_tokens", 200}, {"ignore_eos", true},
                               {"stream", true}, {"stream_options", {{"include_usage", true}}}},
                              [&](const std::string&, size_t i) {
                                if (i == 0) ::kill(server.pid(), SIGTERM);
                                return true;
                              });
  ASSERT_GE(s.events.size(), 2u);
  EXPECT_EQ(s.events.back(), "[DONE]");
  EXPECT_EQ(Json::parse(s.events[s.events.size() - 2])["usage"]["completion_tokens"], 200);
  // The signal was sent once; the process exits by itself.
  EXPECT_EQ(server.Stop(0, std::chrono::seconds(30)), 0) << server.log();
}

// Runs the curl commands of the README's quick start against a server.
TEST(ServeTest, ReadmeCurlExamplesWork) {
  std::ifstream in(std::string(FERRY_SOURCE_DIR) + "/README.md");
  std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> commands;
  std::istringstream lines(readme);
  std::string line, current;
  while (std::getline(lines, line)) {
    if (current.empty() && line.rfind("curl ", 0) != 0) continue;
    current += line + "\n";
    if (line.empty() || line.back() != '\\') {
      commands.push_back(current);
      current.clear();
    }
  }
  ASSERT_GE(commands.size(), 2u) << "the README has no curl examples";
  std::string cache = std::string(::testing::TempDir()) + "/ferry-readme-cache-" + std::to_string(::getpid());
  ServerProcess server({"serve", "--port", "0"}, {{"FERRY_CACHE_DIR", cache}}, std::chrono::seconds(120));
  ASSERT_GT(server.port(), 0) << server.log();
  bool streamed = false;
  for (std::string cmd : commands) {
    cmd = absl::StrReplaceAll(cmd, {{"localhost:8000", "127.0.0.1:" + std::to_string(server.port())}});
    CommandResult r = RunCommand("sh -c '" + absl::StrReplaceAll(cmd, {{"'", "'\\''"}}) + "'");
    EXPECT_EQ(r.exit_code, 0) << cmd << r.out;
    EXPECT_EQ(r.out.find("\"error\""), std::string::npos) << cmd << r.out;
    if (r.out.find("data: [DONE]") != std::string::npos) streamed = true;
    else EXPECT_NE(r.out.find("\"choices\""), std::string::npos) << cmd << r.out;
  }
  EXPECT_TRUE(streamed) << "no README example streams";
  server.Stop();
  std::filesystem::remove_all(cache);
}

}  // namespace
}  // namespace ferry::testing
