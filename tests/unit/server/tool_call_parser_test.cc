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

}  // namespace
}  // namespace ferry
