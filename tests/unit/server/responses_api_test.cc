// The Responses API's request mapping: input items, instructions, tools,
// tool_choice and text.format as the chat request they become, and the
// 400s for what the server cannot do.
#include "server/responses_api.h"

#include "gtest/gtest.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

std::string ParamOf(const absl::Status& s) {
  auto p = s.GetPayload("ferry/param");
  return p ? std::string(*p) : std::string();
}

TEST(ResponsesApiTest, InputItemsBecomeChatMessages) {
  Json body = Json::parse(R"({
    "model": "m", "instructions": "Be brief.", "max_output_tokens": 40, "temperature": 0.2, "seed": 7,
    "input": [
      {"role": "developer", "content": "Use tools."},
      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in "},
                                                      {"type": "input_text", "text": "Oslo?"}]},
      {"type": "reasoning", "id": "rs_1", "summary": []},
      {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
      {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
      {"type": "function_call_output", "call_id": "c1", "output": "cold"},
      {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "noon"}]},
      {"role": "assistant", "content": [{"type": "output_text", "text": "Cold at noon."}]}
    ],
    "tools": [{"type": "function", "name": "get_weather", "description": "d",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
    "top_logprobs": 2, "metadata": {"k": "v"}
  })");
  auto r = ParseResponsesRequest(body);
  ASSERT_TRUE(r.ok()) << r.status();
  const Json& chat = r->chat_body;
  const Json want_messages = Json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Use tools."},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
      {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "cold"},
    {"role": "tool", "tool_call_id": "c2", "content": "noon"},
    {"role": "assistant", "content": "Cold at noon."}
  ])");
  EXPECT_EQ(chat["messages"], want_messages);
  EXPECT_EQ(chat["max_completion_tokens"], 40);
  EXPECT_EQ(chat["temperature"], 0.2);
  EXPECT_EQ(chat["seed"], 7);
  EXPECT_EQ(chat["model"], "m");
  EXPECT_EQ(chat["tools"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(chat["tools"][0]["function"]["parameters"]["properties"]["city"]["type"], "string");
  EXPECT_EQ(chat["tool_choice"],
            Json::parse(R"({"type": "function", "function": {"name": "get_weather"}})"));
  EXPECT_EQ(chat["response_format"]["type"], "json_schema");
  EXPECT_EQ(chat["response_format"]["json_schema"]["name"], "w");
  EXPECT_EQ(chat["logprobs"], true);
  EXPECT_EQ(chat["top_logprobs"], 2);
  EXPECT_FALSE(chat.contains("stream"));
  EXPECT_TRUE(r->logprobs);
  // What the Response reports of its request.
  EXPECT_EQ(r->settings["instructions"], "Be brief.");
  EXPECT_EQ(r->settings["max_output_tokens"], 40);
  EXPECT_EQ(r->settings["metadata"], Json::parse(R"({"k": "v"})"));
  EXPECT_EQ(r->settings["store"], false);
  EXPECT_EQ(r->settings["tools"], body["tools"]);

  // A plain string is one user message; streaming asks for the usage.
  r = ParseResponsesRequest(
      Json::parse(R"({"input": "hi", "stream": true, "text": {"format": {"type": "text"}}})"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->chat_body["messages"], Json::parse(R"([{"role": "user", "content": "hi"}])"));
  EXPECT_EQ(r->chat_body["stream_options"]["include_usage"], true);
  EXPECT_FALSE(r->chat_body.contains("response_format"));
  EXPECT_FALSE(r->logprobs);
  EXPECT_EQ(r->settings["temperature"], 1.0);
  EXPECT_EQ(r->settings["tool_choice"], "auto");
}

TEST(ResponsesApiTest, WhatCannotBeDoneIsA400NamingTheParameter) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({})", "input"},
      {R"({"input": 3})", "input"},
      {R"({"input": []})", "input"},
      {R"({"input": [3]})", "input"},
      {R"({"input": [{"role": "robot", "content": "x"}]})", "input"},
      {R"({"input": [{"role": "user"}]})", "input"},
      {R"({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]})",
       "input"},
      {R"({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]})", "input"},
      {R"({"input": [{"type": "function_call_output", "call_id": "c"}]})", "input"},
      {R"({"input": [{"type": "item_reference", "id": "x"}]})", "input"},
      {R"({"input": [{"type": "web_search_call"}]})", "input"},
      {R"({"input": "x", "previous_response_id": "resp_1"})", "previous_response_id"},
      {R"({"input": "x", "conversation": "conv_1"})", "conversation"},
      {R"({"input": "x", "background": true})", "background"},
      {R"({"input": "x", "max_output_tokens": 0})", "max_output_tokens"},
      {R"({"input": "x", "max_output_tokens": "9"})", "max_output_tokens"},
      {R"({"input": "x", "tools": [{"type": "web_search"}]})", "tools"},
      {R"({"input": "x", "tools": [{"type": "function"}]})", "tools"},
      {R"({"input": "x", "tools": {}})", "tools"},
      {R"({"input": "x", "tool_choice": {"type": "allowed_tools"}})", "tool_choice"},
      {R"({"input": "x", "text": {"format": {"type": "yaml"}}})", "text.format"},
      {R"({"input": "x", "text": "json"})", "text"},
      {R"({"input": "x", "top_logprobs": 21})", "top_logprobs"},
      {R"({"input": "x", "truncation": "sometimes"})", "truncation"},
      {R"({"input": "x", "instructions": 5})", "instructions"},
      {R"({"input": "x", "stream": "yes"})", "stream"},
  };
  for (const auto& [body, param] : cases) {
    auto r = ParseResponsesRequest(Json::parse(body));
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_EQ(ParamOf(r.status()), param) << body << ": " << r.status();
  }
}

}  // namespace
}  // namespace ferry
