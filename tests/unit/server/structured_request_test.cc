// Structured-output parameters of OpenAI and vLLM requests, and forced tool
// calls: what reaches the engine, the 400s, and the tool_calls built from a
// call's output.
#include "server/structured_request.h"

#include "gtest/gtest.h"
#include "server/openai_error.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

// The "param" of the OpenAI error body for `s`.
std::string ErrorParam(const absl::Status& s) {
  Json body = Json::parse(ErrorBody(s));
  return body["error"]["param"].is_string() ? body["error"]["param"].get<std::string>() : "";
}

absl::StatusOr<CompletionRequest> Completion(const std::string& extra) {
  return ParseCompletionRequest(Json::parse(R"({"prompt":"hi")" + extra + "}"), 100);
}

absl::StatusOr<ChatRequest> Chat(const std::string& extra) {
  return ParseChatRequest(
      Json::parse(R"({"messages":[{"role":"user","content":"hi"}])" + extra + "}"), 100);
}

const char* kTools = R"(,"tools":[{"type":"function","function":{"name":"get_weather","parameters":
    {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
    {"type":"function","function":{"name":"now"}}])";

TEST(StructuredRequestTest, EachFormReachesTheEngine) {
  auto r = Completion(R"(,"response_format":{"type":"json_object"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->options.params.structured().json_object());
  // The schema keeps its property order.
  r = Completion(
      R"(,"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,
      "schema":{"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"string"}}}}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.params.structured().json_schema(),
            R"({"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"string"}}})");
  r = Completion(R"(,"guided_json":"{\"type\":\"boolean\"}")");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.params.structured().json_schema(), R"({"type":"boolean"})");
  r = Completion(R"(,"guided_regex":"[0-9]{3}")");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.params.structured().regex(), "[0-9]{3}");
  r = Completion(R"(,"guided_choice":["yes","no"])");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.params.structured().choice_size(), 2);
  r = Completion(R"(,"structured_outputs":{"choice":["a","b","c"]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.params.structured().choice_size(), 3);
  r = Completion(R"(,"guided_grammar":"root ::= [0-9]+ (\",\" [0-9]+)*")");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.params.structured().grammar(), R"(root ::= [0-9]+ ("," [0-9]+)*)");
  r = Completion(R"(,"response_format":{"type":"text"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->options.params.has_structured());
}

TEST(StructuredRequestTest, BadSpecificationsAre400sNamingTheParameter) {
  const std::pair<const char*, const char*> cases[] = {
      {R"(,"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"strin"}}})",
       "response_format"},
      {R"(,"response_format":{"type":"json_schema"})", "response_format.json_schema"},
      {R"(,"response_format":{"type":"yaml"})", "response_format.type"},
      {R"(,"response_format":{})", "response_format.type"},
      {R"(,"response_format":"json")", "response_format"},
      {R"(,"guided_json":"{not json")", "guided_json"},
      {R"(,"guided_json":42)", "guided_json"},
      {R"(,"guided_regex":"a(b")", "guided_regex"},
      {R"(,"guided_regex":5)", "guided_regex"},
      {R"(,"guided_choice":[])", "guided_choice"},
      {R"(,"guided_choice":["a",1])", "guided_choice"},
      {R"(,"guided_grammar":"root ::= root \"a\"")", "guided_grammar"},
      {R"(,"grammar":"start ::= \"a\"")", "grammar"},
      {R"(,"guided_regex":"a","guided_choice":["a"])", "guided_choice"},
      {R"(,"response_format":{"type":"json_object"},"guided_regex":"a")", "guided_regex"},
      {R"(,"structured_outputs":{"grammar":"x"})", "structured_outputs"},
      {R"(,"structured_outputs":{"structural_tag":"x"})", "structured_outputs.structural_tag"},
  };
  for (const auto& [extra, param] : cases) {
    auto r = Completion(extra);
    ASSERT_FALSE(r.ok()) << extra;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << extra;
    EXPECT_EQ(ErrorParam(r.status()), param) << extra << ": " << r.status();
  }
}

TEST(StructuredRequestTest, ForcedToolCalls) {
  auto r = Chat(std::string(kTools) +
                R"(,"tool_choice":{"type":"function","function":{"name":"get_weather"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.tool_call, GenerationOptions::ToolCall::kNamed);
  EXPECT_EQ(r->options.tool_name, "get_weather");
  EXPECT_EQ(r->options.params.structured().json_schema(),
            R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})");
  EXPECT_TRUE(r->template_context.contains("tools"));
  r = Chat(std::string(kTools) + R"(,"tool_choice":"required")");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.tool_call, GenerationOptions::ToolCall::kRequired);
  EXPECT_NE(r->options.params.structured().json_schema().find("\"const\":\"now\""),
            std::string::npos);
  EXPECT_EQ(r->options.params.structured().json_schema().find("maxItems"), std::string::npos);
  // parallel_tool_calls false: one call at most.
  r = Chat(std::string(kTools) + R"(,"tool_choice":"required","parallel_tool_calls":false)");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->options.parallel_tool_calls);
  EXPECT_NE(r->options.params.structured().json_schema().find("\"maxItems\":1"), std::string::npos);
  for (const char* choice : {R"("auto")", R"("none")"}) {
    r = Chat(std::string(kTools) + R"(,"tool_choice":)" + choice);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->options.tool_call, GenerationOptions::ToolCall::kNone);
    EXPECT_FALSE(r->options.params.has_structured());
  }
  const std::pair<std::string, const char*> bad[] = {
      {std::string(kTools) + R"(,"tool_choice":{"type":"function","function":{"name":"nope"}})",
       "tool_choice"},
      {std::string(kTools) + R"(,"tool_choice":"sometimes")", "tool_choice"},
      {std::string(kTools) + R"(,"tool_choice":{"type":"function"})", "tool_choice"},
      {R"(,"tool_choice":"required")", "tool_choice"},
      {std::string(kTools) +
           R"(,"tool_choice":"required","response_format":{"type":"json_object"})",
       "tool_choice"},
      {R"(,"tools":[{"type":"function","function":{}}])", "tools"},
      {R"(,"tools":[{"type":"retrieval"}])", "tools"},
      {R"(,"tools":{"a":1})", "tools"},
      {R"(,"tools":[{"type":"function","function":{"name":"f","parameters":[1]}}])", "tools"},
  };
  for (const auto& [extra, param] : bad) {
    auto c = Chat(extra);
    ASSERT_FALSE(c.ok()) << extra;
    EXPECT_EQ(ErrorParam(c.status()), param) << extra << ": " << c.status();
  }
}

TEST(StructuredRequestTest, ToolCallsFromTheOutput) {
  GenerationOptions named;
  named.tool_call = GenerationOptions::ToolCall::kNamed;
  named.tool_name = "get_weather";
  Json calls = ToolCallsJson(named, R"( {"city" : "Oslo"})", "call_x");
  ASSERT_TRUE(calls.is_array());
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["id"], "call_x-0");
  EXPECT_EQ(calls[0]["type"], "function");
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(calls[0]["function"]["arguments"], R"({"city":"Oslo"})");
  EXPECT_TRUE(
      ToolCallsJson(named, R"({"city" : "Os)", "call_x").is_null());  // cut off by max_tokens
  GenerationOptions required;
  required.tool_call = GenerationOptions::ToolCall::kRequired;
  calls = ToolCallsJson(
      required,
      R"([{"name":"now","parameters":{}},{"name":"get_weather","parameters":{"city":"A"}}])",
      "call_y");
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1]["id"], "call_y-1");
  EXPECT_EQ(calls[1]["function"]["name"], "get_weather");
  EXPECT_EQ(calls[1]["function"]["arguments"], R"({"city":"A"})");
  EXPECT_TRUE(ToolCallsJson(required, R"({"name":"now"})", "c").is_null());
}

}  // namespace
}  // namespace ferry
