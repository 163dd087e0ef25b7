#include "server/openai_request.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/openai_error.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

absl::Status CompletionError(const std::string& body) {
  return ParseCompletionRequest(Json::parse(body), 100).status();
}

TEST(OpenAiRequestTest, ParsesCompletionParameters) {
  auto r = ParseCompletionRequest(Json::parse(R"({"model":"m","prompt":"hi","max_tokens":5,"temperature":0,
      "top_p":0.5,"top_k":-1,"min_p":0.1,"seed":7,"stop":["a","b"],"n":2,"logprobs":3,"echo":true,
      "presence_penalty":1,"frequency_penalty":-1,"repetition_penalty":1.1,"logit_bias":{"5":-100},
      "ignore_eos":true,"min_tokens":2,"stream":true,"stream_options":{"include_usage":true},"user":"u"})"),
                                  100);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.model, "m");
  EXPECT_EQ(*r->options.max_tokens, 5);
  EXPECT_EQ(r->options.params.temperature(), 0);
  EXPECT_FLOAT_EQ(r->options.params.top_p(), 0.5f);
  EXPECT_EQ(r->options.params.top_k(), 0);
  EXPECT_EQ(r->options.params.seed(), 7u);
  EXPECT_EQ(r->options.params.stop_size(), 2);
  EXPECT_EQ(r->options.n, 2);
  EXPECT_EQ(r->options.params.n(), 2);
  EXPECT_EQ(r->options.logprobs, 3);
  EXPECT_TRUE(r->echo);
  EXPECT_EQ(r->options.params.logit_bias().at(5), -100);
  EXPECT_TRUE(r->options.params.ignore_eos());
  EXPECT_EQ(r->options.params.min_tokens(), 2);
  EXPECT_TRUE(r->options.include_usage);
  ASSERT_EQ(r->prompts.size(), 1u);
  EXPECT_EQ(*r->prompts[0].text, "hi");
}

TEST(OpenAiRequestTest, ParsesVllmExtensions) {
  auto r = ParseCompletionRequest(
      Json::parse(R"({"prompt":"hi","include_stop_str_in_output":true,"skip_special_tokens":false,
      "allowed_token_ids":[5,7,5],"truncate_prompt_tokens":3,"bad_words":["a b"," c"]})"),
      100);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.bad_words, (std::vector<std::string>{"a b", " c"}));
  EXPECT_TRUE(r->options.params.include_stop_str_in_output());
  ASSERT_TRUE(r->options.params.has_skip_special_tokens());
  EXPECT_FALSE(r->options.params.skip_special_tokens());
  EXPECT_EQ(r->options.params.allowed_token_ids_size(), 3);
  EXPECT_EQ(r->options.truncate_prompt_tokens, 3);
  // Absent: vLLM's defaults (special tokens skipped, nothing else).
  r = ParseCompletionRequest(Json::parse(R"({"prompt":"hi","truncate_prompt_tokens":null})"), 100);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->options.params.has_skip_special_tokens());
  EXPECT_FALSE(r->options.params.include_stop_str_in_output());
  EXPECT_FALSE(r->options.truncate_prompt_tokens.has_value());
  r = ParseCompletionRequest(Json::parse(R"({"prompt":"hi","truncate_prompt_tokens":-1})"), 100);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.truncate_prompt_tokens, -1);
}

TEST(OpenAiRequestTest, DefaultTemperatureIsOne) {
  auto r = ParseCompletionRequest(Json::parse(R"({"prompt":"hi"})"), 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->options.params.temperature(), 1.0f);
  EXPECT_FALSE(r->options.max_tokens);
}

TEST(OpenAiRequestTest, AcceptsEveryPromptShape) {
  for (const char* body : {R"({"prompt":"a"})", R"({"prompt":["a","b"]})", R"({"prompt":[1,2,3]})",
                           R"({"prompt":[[1,2],[3]]})", R"({"prompt":["a",[3]]})"}) {
    EXPECT_TRUE(CompletionError(body).ok()) << body;
  }
  auto r = ParseCompletionRequest(Json::parse(R"({"prompt":[[1,2],[3]]})"), 100);
  ASSERT_EQ(r->prompts.size(), 2u);
  EXPECT_EQ(r->prompts[0].ids, (std::vector<int32_t>{1, 2}));
}

TEST(OpenAiRequestTest, WrongTypesAndRangesNameTheParameter) {
  struct Case {
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {R"({"prompt":"a","max_tokens":"5"})", "max_tokens"},
      {R"({"prompt":"a","max_tokens":0})", "max_tokens"},
      {R"({"prompt":"a","max_tokens":1.5})", "max_tokens"},
      {R"({"prompt":"a","temperature":-0.1})", "temperature"},
      {R"({"prompt":"a","temperature":"hot"})", "temperature"},
      {R"({"prompt":"a","top_p":0})", "top_p"},
      {R"({"prompt":"a","top_p":1.5})", "top_p"},
      {R"({"prompt":"a","n":0})", "n"},
      {R"({"prompt":"a","n":true})", "n"},
      {R"({"prompt":"a","stream":"yes"})", "stream"},
      {R"({"prompt":"a","stop":5})", "stop"},
      {R"({"prompt":"a","stop":["a",1]})", "stop"},
      {R"({"prompt":"a","logprobs":21})", "logprobs"},
      {R"({"prompt":"a","logit_bias":{"x":1}})", "logit_bias"},
      {R"({"prompt":"a","logit_bias":{"5":101}})", "logit_bias"},
      {R"({"prompt":"a","logit_bias":{"500":1}})", "logit_bias"},
      {R"({"prompt":[1,2,100]})", "prompt"},
      {R"({"prompt":[]})", "prompt"},
      {R"({"prompt":5})", "prompt"},
      {R"({"prompt":[[]]})", "prompt"},
      {R"({})", "prompt"},
      {R"({"prompt":"a","stream_options":{"include_usage":true}})", "stream_options"},
      {R"({"prompt":"a","presence_penalty":3})", "presence_penalty"},
      {R"({"prompt":"a","min_tokens":9,"max_tokens":3})", "min_tokens"},
      {R"({"prompt":"a","seed":"1"})", "seed"},
      {R"({"prompt":"a","model":7})", "model"},
      {R"({"prompt":"a","suffix":"x"})", "suffix"},
      {R"({"prompt":"a","include_stop_str_in_output":"yes"})", "include_stop_str_in_output"},
      {R"({"prompt":"a","skip_special_tokens":1})", "skip_special_tokens"},
      {R"({"prompt":"a","allowed_token_ids":[]})", "allowed_token_ids"},
      {R"({"prompt":"a","allowed_token_ids":[1,100]})", "allowed_token_ids"},
      {R"({"prompt":"a","allowed_token_ids":["1"]})", "allowed_token_ids"},
      {R"({"prompt":"a","truncate_prompt_tokens":0})", "truncate_prompt_tokens"},
      {R"({"prompt":"a","truncate_prompt_tokens":-2})", "truncate_prompt_tokens"},
      {R"({"prompt":"a","truncate_prompt_tokens":"4"})", "truncate_prompt_tokens"},
      {R"({"prompt":"a","bad_words":["ok","  "]})", "bad_words"},
      {R"({"prompt":"a","bad_words":[3]})", "bad_words"},
  };
  for (const Case& c : cases) {
    absl::Status s = CompletionError(c.body);
    ASSERT_FALSE(s.ok()) << c.body;
    EXPECT_EQ(HttpStatusFor(s), 400) << c.body;
    std::string body = ErrorBody(s);
    EXPECT_NE(body.find(std::string("\"param\":\"") + c.param + "\""), std::string::npos) << c.body << body;
  }
}

TEST(OpenAiRequestTest, ChatMessagesBecomeTemplateContext) {
  auto r = ParseChatRequest(Json::parse(R"({"messages":[
      {"role":"system","content":"be brief"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
      {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
        "function":{"name":"f","arguments":"{\"x\":1}"}}]},
      {"role":"tool","tool_call_id":"c1","content":"42"}],
      "tools":[{"type":"function","function":{"name":"f"}}],"logprobs":true,"top_logprobs":2,
      "max_completion_tokens":9})"),
                            100);
  ASSERT_TRUE(r.ok()) << r.status();
  const Json& ctx = r->template_context;
  EXPECT_EQ(ctx["messages"][1]["content"], "a\nb");
  EXPECT_EQ(ctx["messages"][2]["tool_calls"][0]["function"]["arguments"]["x"], 1);
  EXPECT_EQ(ctx["messages"][3]["tool_call_id"], "c1");
  EXPECT_TRUE(ctx["add_generation_prompt"].get<bool>());
  EXPECT_EQ(ctx["tools"].size(), 1u);
  EXPECT_EQ(r->options.logprobs, 2);
  EXPECT_EQ(*r->options.max_tokens, 9);
}

// reasoning_effort is a template variable (gpt-oss's templates read it);
// chat_template_kwargs say it first. thinking_token_budget is kept.
TEST(OpenAiRequestTest, ReasoningEffortReachesTheTemplate) {
  auto r = ParseChatRequest(
      Json::parse(R"({"messages":[{"role":"user","content":"x"}],"reasoning_effort":"low",
                      "thinking_token_budget":64})"),
      100);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->template_context["reasoning_effort"], "low");
  EXPECT_EQ(r->options.thinking_token_budget, 64);
  r = ParseChatRequest(Json::parse(R"({"messages":[{"role":"user","content":"x"}],
      "reasoning_effort":"high","chat_template_kwargs":{"reasoning_effort":"medium"}})"),
                       100);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->template_context["reasoning_effort"], "medium");
  for (const char* bad : {R"("extreme")", "3", "true"}) {
    r = ParseChatRequest(
        Json::parse(absl::StrCat(
            R"({"messages":[{"role":"user","content":"x"}],"reasoning_effort":)", bad, "}")),
        100);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(Json::parse(ErrorBody(r.status()))["error"]["param"], "reasoning_effort")
        << r.status();
  }
}

TEST(OpenAiRequestTest, BadChatMessagesAre400) {
  for (const char* body : {R"({})", R"({"messages":[]})", R"({"messages":"hi"})",
                           R"({"messages":[{"role":"user"}]})", R"({"messages":[{"role":"robot","content":"x"}]})",
                           R"({"messages":[{"role":"user","content":5}]})",
                           R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})",
                           R"({"messages":[{"content":"x"}]})",
                           R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})",
                           R"({"messages":[{"role":"user","content":"x"}],"logprobs":1})",
                           R"({"messages":[{"role":"user","content":"x"}],"tools":{}})"}) {
    auto r = ParseChatRequest(Json::parse(body), 100);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(HttpStatusFor(r.status()), 400) << body;
  }
}

}  // namespace
}  // namespace ferry
