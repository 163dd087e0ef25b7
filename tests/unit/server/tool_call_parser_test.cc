// Tool calls found in chat answers (tool_choice "auto"), whole and as a
// stream holds back what may be the start of a call.
#include "server/tool_call_parser.h"

#include "gtest/gtest.h"

namespace ferry {
namespace {

const std::vector<std::string> kFunctions = {"get_weather", "now"};

TEST(ToolCallParserTest, Hermes) {
  const std::string text =
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Oslo\"}}\n</tool_call>\n"
      "<tool_call>{\"name\": \"now\", \"arguments\": \"{}\"}</tool_call>";
  for (ToolCallFormat f : {ToolCallFormat::kHermes, ToolCallFormat::kAuto}) {
    auto r = FindToolCalls(f, text, kFunctions);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(text.substr(0, r->content_end), "Let me check.\n");
    ASSERT_EQ(r->calls.size(), 2u);
    EXPECT_EQ(r->calls[0].name, "get_weather");
    EXPECT_EQ(r->calls[0].arguments, R"({"city":"Oslo"})");
    EXPECT_EQ(r->calls[1].name, "now");
    EXPECT_EQ(r->calls[1].arguments, "{}");
  }
  // Cut at the end of sequence before the closing tag: still a call.
  auto cut = FindToolCalls(ToolCallFormat::kHermes,
                           "<tool_call>{\"name\": \"now\", \"arguments\": {}}", kFunctions);
  ASSERT_TRUE(cut.has_value());
  EXPECT_EQ(cut->calls.size(), 1u);
}

TEST(ToolCallParserTest, MistralAndLlama3Json) {
  auto m = FindToolCalls(
      ToolCallFormat::kAuto,
      "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]",
      kFunctions);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->content_end, 0u);
  EXPECT_EQ(m->calls[0].arguments, R"({"city":"Rome"})");
  auto l = FindToolCalls(ToolCallFormat::kAuto,
                         "  {\"name\": \"get_weather\", \"parameters\": {\"city\": \"a; b\"}}",
                         kFunctions);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->calls[0].arguments, R"({"city":"a; b"})");
  auto two = FindToolCalls(
      ToolCallFormat::kLlama3Json,
      "<|python_tag|>{\"name\": \"now\", \"parameters\": {}}; {\"name\": \"get_weather\", "
      "\"parameters\": {\"city\": \"X\"}}",
      kFunctions);
  ASSERT_TRUE(two.has_value());
  ASSERT_EQ(two->calls.size(), 2u);
  EXPECT_EQ(two->calls[1].name, "get_weather");
}

TEST(ToolCallParserTest, TextThatIsNotACallStaysContent) {
  for (const char* text : {"Just words.", "{\"name\": \"unknown_fn\", \"parameters\": {}}",
                           "{\"city\": \"Oslo\"}", "<tool_call>not json</tool_call>",
                           "[TOOL_CALLS] oops", "{\"name\": \"now\", \"arguments\": 5}", ""}) {
    EXPECT_FALSE(FindToolCalls(ToolCallFormat::kAuto, text, kFunctions).has_value()) << text;
  }
  EXPECT_FALSE(FindToolCalls(ToolCallFormat::kNone, "<tool_call>{\"name\": \"now\"}</tool_call>",
                             kFunctions));
  // hermes alone does not read a bare JSON answer.
  EXPECT_FALSE(FindToolCalls(ToolCallFormat::kHermes, "{\"name\": \"now\", \"parameters\": {}}",
                             kFunctions));
  EXPECT_FALSE(ParseToolCallFormat("xml").ok());
  EXPECT_EQ(*ParseToolCallFormat("llama3_json"), ToolCallFormat::kLlama3Json);
}

TEST(ToolCallParserTest, StreamingHoldsBackWhatMayStartACall) {
  EXPECT_EQ(ContentPrefix(ToolCallFormat::kAuto, "Hello there"), 11u);
  EXPECT_EQ(ContentPrefix(ToolCallFormat::kAuto, "Hello <tool"), 6u);  // may become <tool_call>
  EXPECT_EQ(ContentPrefix(ToolCallFormat::kAuto, "Hello <tool_call>{\"na"), 6u);
  EXPECT_EQ(ContentPrefix(ToolCallFormat::kAuto, "Hi [TOOL_"), 3u);
  EXPECT_EQ(ContentPrefix(ToolCallFormat::kAuto, " {\"name\""), 0u);  // may be a bare JSON call
  EXPECT_EQ(ContentPrefix(ToolCallFormat::kAuto, "<|pyth"), 0u);
  EXPECT_EQ(ContentPrefix(ToolCallFormat::kAuto, "  "), 0u);
  EXPECT_EQ(ContentPrefix(ToolCallFormat::kHermes, "{\"a\": 1} <"), 9u);
  EXPECT_EQ(ContentPrefix(ToolCallFormat::kLlama3Json, "Sure <tool"), 10u);
  EXPECT_EQ(ContentPrefix(ToolCallFormat::kNone, "{\"name\""), 7u);
}

TEST(ToolCallParserTest, ScanShowsCallsAsFarAsTheyAreWritten) {
  EXPECT_FALSE(ScanToolCalls(ToolCallFormat::kAuto, "Hello <tool").has_value());
  EXPECT_FALSE(ScanToolCalls(ToolCallFormat::kNone, "<tool_call>{\"name\": \"now\"}").has_value());

  auto s = ScanToolCalls(ToolCallFormat::kAuto, "Hi <tool_call>{\"name\": \"get_wea");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->format, ToolCallFormat::kHermes);
  ASSERT_EQ(s->calls.size(), 1u);
  EXPECT_EQ(s->calls[0].name, "");  // not complete yet

  s = ScanToolCalls(ToolCallFormat::kHermes,
                    "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Os");
  ASSERT_EQ(s->calls.size(), 1u);
  EXPECT_EQ(s->calls[0].name, "get_weather");
  EXPECT_EQ(s->calls[0].arguments, "{\"city\": \"Os");
  EXPECT_FALSE(s->calls[0].arguments_done);
  EXPECT_FALSE(s->calls[0].done);

  // Braces and quotes inside strings do not end the arguments.
  s = ScanToolCalls(ToolCallFormat::kHermes,
                    "<tool_call>{\"name\": \"now\", \"arguments\": {\"q\": \"}\\\"{\"}}</tool_call>"
                    "<tool_call>{\"name\": \"get_weather\"");
  ASSERT_EQ(s->calls.size(), 2u);
  EXPECT_EQ(s->calls[0].arguments, "{\"q\": \"}\\\"{\"}");
  EXPECT_TRUE(s->calls[0].arguments_done);
  EXPECT_TRUE(s->calls[0].done);
  EXPECT_EQ(s->calls[1].name, "get_weather");
  EXPECT_EQ(s->calls[1].arguments, "");

  s = ScanToolCalls(ToolCallFormat::kAuto,
                    "<|python_tag|>{\"name\": \"now\", \"parameters\": \"{\\\"tz\\\"");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->format, ToolCallFormat::kLlama3Json);
  EXPECT_EQ(s->calls[0].name, "now");
  EXPECT_TRUE(s->calls[0].arguments_quoted);

  s = ScanToolCalls(
      ToolCallFormat::kAuto,
      "[TOOL_CALLS] [{\"name\": \"now\", \"arguments\": {}}, {\"name\": \"get_weather\"");
  EXPECT_EQ(s->format, ToolCallFormat::kMistral);
  ASSERT_EQ(s->calls.size(), 2u);
  EXPECT_EQ(s->calls[0].arguments, "{}");
  EXPECT_EQ(s->calls[1].name, "get_weather");

  // Not a call's shape: marked, so that nothing more streams.
  s = ScanToolCalls(ToolCallFormat::kHermes, "<tool_call>{\"name\": 3, ");
  EXPECT_TRUE(s->malformed);
  s = ScanToolCalls(ToolCallFormat::kHermes, "<tool_call>[1, 2]");
  EXPECT_TRUE(s->malformed);
  // A second name (or arguments) key would take back what streamed: the
  // first stays, and the call is not streamed further.
  s = ScanToolCalls(
      ToolCallFormat::kMistral,
      "[TOOL_CALLS] [{\"name\": \"now\", \"arguments\": {}, \"name\": \"get_weather\"}]");
  EXPECT_TRUE(s->malformed);
  EXPECT_EQ(s->calls[0].name, "now");
  s = ScanToolCalls(
      ToolCallFormat::kHermes,
      "<tool_call>{\"name\": \"now\", \"parameters\": {}, \"arguments\": {\"a\": 1}}");
  EXPECT_TRUE(s->malformed);
  EXPECT_EQ(s->calls[0].arguments, "{}");

  s = ScanToolCallList("[{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}, {\"na");
  ASSERT_EQ(s->calls.size(), 2u);
  EXPECT_EQ(s->calls[0].arguments, "{\"city\": \"Oslo\"}");
  EXPECT_TRUE(s->calls[0].done);
  EXPECT_EQ(s->calls[1].name, "");
}

// Every prefix of an answer shows calls that the longer prefixes keep: names
// never change and arguments only grow.
TEST(ToolCallParserTest, ScanOfAPrefixIsNeverTakenBack) {
  const std::string text =
      "Sure. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"a\\\"}b\", "
      "\"n\": [1, {\"x\": null}], \"ok\": true}}\n</tool_call>\n<tool_call>{\"arguments\": "
      "{\"tz\": \"UTC\"}, \"name\": \"now\"}</tool_call>";
  auto whole = ScanToolCalls(ToolCallFormat::kHermes, text);
  ASSERT_TRUE(whole.has_value());
  ASSERT_EQ(whole->calls.size(), 2u);
  EXPECT_FALSE(whole->malformed);
  for (size_t n = 0; n <= text.size(); ++n) {
    auto part = ScanToolCalls(ToolCallFormat::kHermes, text.substr(0, n));
    if (!part) continue;
    EXPECT_FALSE(part->malformed) << n;
    for (size_t i = 0; i < part->calls.size(); ++i) {
      if (part->calls[i].name.empty()) continue;
      EXPECT_EQ(part->calls[i].name, whole->calls[i].name) << n;
      EXPECT_EQ(whole->calls[i].arguments.rfind(part->calls[i].arguments, 0), 0u) << n;
    }
  }
}

}  // namespace
}  // namespace ferry
