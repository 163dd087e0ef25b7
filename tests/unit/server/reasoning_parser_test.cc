// Splitting a reasoning model's answer into its thinking and its content,
// whole and as it grows token by token.
#include "server/reasoning_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

TEST(ReasoningParserTest, SplitsAtTheClosingTag) {
  struct Case {
    ReasoningFormat format;
    std::string text, reasoning, content;
  };
  const std::vector<Case> cases = {
      {ReasoningFormat::kDeepSeekR1, "Let me think.</think>\n\nIt is 4.", "Let me think.",
       "\n\nIt is 4."},
      {ReasoningFormat::kDeepSeekR1, "<think>\nHmm.\n</think>Four.", "\nHmm.\n", "Four."},
      {ReasoningFormat::kDeepSeekR1, "\n<think>a</think>b", "a", "b"},
      // Never closed: all of it was thinking.
      {ReasoningFormat::kDeepSeekR1, "still thinking", "still thinking", ""},
      {ReasoningFormat::kDeepSeekR1, "a</think>b</think>c", "a", "b</think>c"},
      {ReasoningFormat::kDeepSeekR1, "", "", ""},
      {ReasoningFormat::kQwen3, "<think>plan</think>\n\nDone.", "plan", "\n\nDone."},
      {ReasoningFormat::kQwen3, "No thinking here.</think>x", "", "No thinking here.</think>x"},
      {ReasoningFormat::kQwen3, "<think>open", "open", ""},
      {ReasoningFormat::kQwen3, "<thin", "", "<thin"},
      {ReasoningFormat::kNone, "<think>a</think>b", "", "<think>a</think>b"},
  };
  for (const Case& c : cases) {
    ReasoningSplit s = SplitReasoning(c.format, c.text, /*final=*/true);
    EXPECT_EQ(s.reasoning, c.reasoning) << c.text;
    EXPECT_EQ(s.content, c.content) << c.text;
  }
  EXPECT_EQ(ParseReasoningFormat("deepseek_r1").value(), ReasoningFormat::kDeepSeekR1);
  EXPECT_EQ(ParseReasoningFormat("qwen3").value(), ReasoningFormat::kQwen3);
  EXPECT_EQ(ParseReasoningFormat("none").value(), ReasoningFormat::kNone);
  EXPECT_FALSE(ParseReasoningFormat("r2").ok());
}

// Streaming sends each part's growth: for every prefix of an answer, each
// part must be a prefix of that part of the whole answer, and no part of a
// tag may show.
TEST(ReasoningParserTest, APrefixNeverTakesBackWhatItShowed) {
  const std::vector<std::string> answers = {
      "<think>\nplan it</think>\n\nThe answer is 4.",
      "plan</think>answer",
      "  <think>x</think>",
      "no tags at all",
      "<thinking>not the tag</thinking>",
      "a</thi",
      "</think>only content",
      "<think></think>",
  };
  for (ReasoningFormat f : {ReasoningFormat::kDeepSeekR1, ReasoningFormat::kQwen3}) {
    for (const std::string& a : answers) {
      const ReasoningSplit whole = SplitReasoning(f, a, /*final=*/true);
      for (size_t n = 0; n <= a.size(); ++n) {
        const ReasoningSplit part = SplitReasoning(f, a.substr(0, n), /*final=*/false);
        EXPECT_EQ(whole.reasoning.rfind(part.reasoning, 0), 0u)
            << a << " @" << n << ": " << part.reasoning;
        EXPECT_EQ(whole.content.rfind(part.content, 0), 0u)
            << a << " @" << n << ": " << part.content;
        if (!part.content.empty()) EXPECT_EQ(part.reasoning, whole.reasoning) << a << " @" << n;
      }
    }
  }
}

// Fed piece by piece, the stream ends with the whole answer's split, and
// each part only grows on the way.
TEST(ReasoningParserTest, AStreamInPiecesEndsWithTheWholeSplit) {
  const std::vector<std::string> answers = {"<think>\nplan it</think>\n\nThe answer is 4.",
                                            "plan</think>answer",
                                            "  <think>x</think>",
                                            "no tags at all",
                                            "a</thi",
                                            "</think>only content",
                                            "<think></think>",
                                            "<thi"};
  for (ReasoningFormat f :
       {ReasoningFormat::kDeepSeekR1, ReasoningFormat::kQwen3, ReasoningFormat::kNone}) {
    for (const std::string& a : answers) {
      for (size_t piece = 1; piece <= 4; ++piece) {
        ReasoningStream stream(f);
        std::string reasoning, content;
        for (size_t at = 0; at < a.size(); at += piece) {
          const bool final = at + piece >= a.size();
          stream.Append(std::string_view(a).substr(at, piece), final);
          ASSERT_EQ(stream.reasoning().rfind(reasoning, 0), 0u) << a << " @" << at;
          ASSERT_EQ(stream.content().rfind(content, 0), 0u) << a << " @" << at;
          reasoning = std::string(stream.reasoning());
          content = std::string(stream.content());
        }
        const ReasoningSplit whole = SplitReasoning(f, a, /*final=*/true);
        EXPECT_EQ(reasoning, whole.reasoning) << a << " in pieces of " << piece;
        EXPECT_EQ(content, whole.content) << a << " in pieces of " << piece;
      }
    }
  }
}

}  // namespace
}  // namespace ferry
