// More than a hundred bad requests against a running `ferry serve`: each
// gets the right status and an OpenAI error body, and the server keeps
// serving afterwards.
#include "gtest/gtest.h"
#include "tests/integration/gateway/http_util.h"
#include "tests/integration/gateway/server_process.h"
#include "tests/integration/gateway/test_models.h"

namespace ferry::testing {
namespace {

using Json = nlohmann::json;

struct BadRequest {
  std::string method;
  std::string path;
  std::string body;
  int status;
  std::string param;  // expected "param", or empty for any
};

std::vector<BadRequest> BadRequests() {
  std::vector<BadRequest> out;
  const std::string c = "/v1/completions";
  const std::string chat = "/v1/chat/completions";
  // Wrong JSON types: never a silent default.
  for (const char* param : {"max_tokens", "temperature", "top_p", "top_k", "min_p", "presence_penalty",
                            "frequency_penalty", "repetition_penalty", "n", "seed", "logprobs", "min_tokens"}) {
    for (const char* value : {"\"1\"", "true", "[1]", "{}"}) {
      out.push_back({"POST", c, std::string(R"({"prompt":"a",")") + param + "\":" + value + "}", 400, param});
    }
  }
  for (const char* param : {"stream", "echo", "ignore_eos"}) {
    for (const char* value : {"\"true\"", "1", "[]"}) {
      out.push_back({"POST", c, std::string(R"({"prompt":"a",")") + param + "\":" + value + "}", 400, param});
    }
  }
  // Out of range.
  const std::pair<const char*, const char*> ranges[] = {
      {"temperature", "-1"}, {"top_p", "0"},           {"top_p", "1.5"},      {"n", "0"},
      {"n", "-1"},           {"n", "1000"},            {"max_tokens", "0"},   {"max_tokens", "-5"},
      {"logprobs", "-1"},    {"logprobs", "100"},      {"min_p", "2"},        {"presence_penalty", "5"},
      {"frequency_penalty", "-3"}, {"repetition_penalty", "0"}, {"top_k", "-2"}, {"min_tokens", "-1"}};
  for (const auto& [param, value] : ranges) {
    out.push_back({"POST", c, std::string(R"({"prompt":"a",")") + param + "\":" + value + "}", 400, param});
  }
  // Prompt shapes.
  for (const char* prompt : {"null", "5", "[]", "[[]]", "[1.5]", "[-1]", "[100000]", "{\"a\":1}", "[true]",
                             "[\"a\", 5]"}) {
    out.push_back({"POST", c, std::string(R"({"prompt":)") + prompt + "}", 400, "prompt"});
  }
  out.push_back({"POST", c, R"({"max_tokens":3})", 400, "prompt"});
  // Not JSON, or not an object.
  for (const char* body : {"", "{", "}", "[1,2]", "\"str\"", "nul", "{\"prompt\": }", "{'prompt': 'x'}",
                           "{} x", "{\"prompt\": \"\xff\xfe\"}", "42"}) {
    out.push_back({"POST", c, body, 400, ""});
    out.push_back({"POST", chat, body, 400, ""});
  }
  // Stops, biases, stream options.
  for (const char* extra : {R"("stop":5)", R"("stop":[1])", R"("stop":{"a":1})"}) {
    out.push_back({"POST", c, std::string(R"({"prompt":"a",)") + extra + "}", 400, "stop"});
  }
  for (const char* extra : {R"("logit_bias":[])", R"("logit_bias":{"x":1})", R"("logit_bias":{"1":"a"})",
                            R"("logit_bias":{"1":1000})", R"("logit_bias":{"99999":1})"}) {
    out.push_back({"POST", c, std::string(R"({"prompt":"a",)") + extra + "}", 400, "logit_bias"});
  }
  out.push_back({"POST", c, R"({"prompt":"a","stream_options":{"include_usage":true}})", 400, "stream_options"});
  out.push_back({"POST", c, R"({"prompt":"a","stream":true,"stream_options":"x"})", 400, "stream_options"});
  out.push_back({"POST", c, R"({"prompt":"a","stream":true,"stream_options":{"include_usage":1}})", 400,
                 "stream_options.include_usage"});
  // Chat messages.
  for (const char* messages :
       {"null", "[]", "\"x\"", "[1]", R"([{"role":"user"}])", R"([{"role":"robot","content":"a"}])",
        R"([{"role":"user","content":1}])", R"([{"content":"a"}])",
        R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}])",
        R"([{"role":"user","content":[{"type":"text"}]}])"}) {
    out.push_back({"POST", chat, std::string(R"({"messages":)") + messages + "}", 400, "messages"});
  }
  const std::string ok_messages = R"({"messages":[{"role":"user","content":"hi"}],)";
  out.push_back({"POST", chat, ok_messages + R"("top_logprobs":2})", 400, "top_logprobs"});
  out.push_back({"POST", chat, ok_messages + R"("logprobs":"yes"})", 400, "logprobs"});
  out.push_back({"POST", chat, ok_messages + R"("tools":{}})", 400, "tools"});
  out.push_back({"POST", chat, ok_messages + R"("max_completion_tokens":0})", 400, "max_completion_tokens"});
  out.push_back({"POST", chat, ok_messages + R"("temperature":"warm"})", 400, "temperature"});
  // Longer than the context (2048 for stories260K).
  out.push_back({"POST", c, R"({"prompt":"a","max_tokens":100000})", 400, "max_tokens"});
  out.push_back({"POST", chat, ok_messages + R"("max_tokens":5000})", 400, "max_completion_tokens"});
  // Unknown model.
  out.push_back({"POST", c, R"({"prompt":"a","model":"gpt-4"})", 404, "model"});
  out.push_back({"POST", chat, ok_messages + R"("model":"gpt-4"})", 404, "model"});
  out.push_back({"GET", "/v1/models/gpt-4", "", 404, "model"});
  // Unknown paths and wrong methods.
  for (const char* path : {"/v2/completions", "/v1/completion", "/", "/v1", "/v1/models/", "/admin"}) {
    out.push_back({"GET", path, "", 404, ""});
  }
  out.push_back({"GET", c, "", 405, ""});
  out.push_back({"PUT", chat, "{}", 405, ""});
  out.push_back({"DELETE", "/v1/models", "", 405, ""});
  out.push_back({"POST", "/health", "{}", 405, ""});
  out.push_back({"POST", "/metrics", "{}", 405, ""});
  out.push_back({"GET", "/tokenize", "", 405, ""});
  // Tokenizer endpoints.
  out.push_back({"POST", "/tokenize", R"({"prompt":5})", 400, "prompt"});
  out.push_back({"POST", "/detokenize", R"({"tokens":"x"})", 400, "tokens"});
  out.push_back({"POST", "/detokenize", R"({"tokens":[-1]})", 400, "tokens"});
  // Too large (the server runs with --max-body-bytes 65536).
  out.push_back({"POST", c, std::string(R"({"prompt":")") + std::string(100000, 'a') + "\"}", 413, ""});
  return out;
}

TEST(MalformedRequestsTest, EachGetsAnOpenAiErrorAndTheServerKeepsServing) {
  FERRY_REQUIRE_STORIES(model);
  ServerProcess server({"serve", "--model", model, "--port", "0", "--chat-template", ChatMlTemplateFile(),
                        "--max-body-bytes", "65536"});
  ASSERT_GT(server.port(), 0) << server.log();
  std::vector<BadRequest> bad = BadRequests();
  ASSERT_GE(bad.size(), 100u);
  for (const BadRequest& b : bad) {
    HttpResult r = HttpCall(server.port(), b.method, b.path, b.body);
    std::string what = b.method + " " + b.path + " " + b.body.substr(0, 120);
    ASSERT_EQ(r.status, b.status) << what << "\n" << r.body;
    Json j = Json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << what << "\n" << r.body;
    const Json& e = j["error"];
    EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << what;
    EXPECT_TRUE(e["type"].is_string()) << what;
    EXPECT_TRUE(e.contains("param") && e.contains("code")) << what;
    if (!b.param.empty()) EXPECT_EQ(e["param"], b.param) << what << "\n" << r.body;
  }
  // The context error names both numbers.
  HttpResult ctx = HttpCall(server.port(), "POST", "/v1/completions", R"({"prompt":"a","max_tokens":100000})");
  std::string msg = Json::parse(ctx.body)["error"]["message"];
  EXPECT_NE(msg.find("2048"), std::string::npos) << msg;
  EXPECT_NE(msg.find("100000"), std::string::npos) << msg;
  // Still serving.
  EXPECT_EQ(HttpCall(server.port(), "GET", "/health").status, 200);
  HttpResult ok = PostJson(server.port(), "/v1/completions",
                           {{"prompt", "Once upon a time"}, {"max_tokens", 20}, {"temperature", 0}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(Json::parse(ok.body)["choices"][0]["text"], kStoriesGreedy);
  std::string metrics = HttpCall(server.port(), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("ferry_http_requests_total{endpoint=\"/v1/completions\",status=\"400\"}"),
            std::string::npos);
  EXPECT_EQ(server.Stop(), 0);
}

}  // namespace
}  // namespace ferry::testing
