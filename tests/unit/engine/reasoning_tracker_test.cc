#include "engine/reasoning_tracker.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

using Phase = ReasoningTracker::Phase;

SamplingParams::Reasoning Tags(std::string start, std::string end, int budget = -1) {
  return {.start = std::move(start), .end = std::move(end), .budget_tokens = budget};
}

TEST(ReasoningTrackerTest, EndInsideATokenStartsTheAnswerPartWay) {
  ReasoningTracker t(Tags("", "</think>"), {}, {}, false);
  EXPECT_EQ(t.phase(), Phase::kThinking);
  t.Add(1, "let me see");
  t.Add(2, "</thi");
  EXPECT_EQ(t.phase(), Phase::kThinking);
  t.Add(3, "nk>\n\n{");
  ASSERT_EQ(t.phase(), Phase::kAnswer);
  EXPECT_EQ(t.answer_token(), 2);
  EXPECT_EQ(t.answer_skip(), 3u);
  EXPECT_EQ(t.thinking_tokens(), 3);
  t.Add(4, "}");
  EXPECT_EQ(t.answer_token(), 2);  // later tokens change nothing
}

TEST(ReasoningTrackerTest, EndAtATokensEndStartsTheAnswerWithTheNext) {
  ReasoningTracker t(Tags("", "</think>"), {}, {}, false);
  t.Add(1, "hmm");
  t.Add(2, "</think>");
  ASSERT_EQ(t.phase(), Phase::kAnswer);
  EXPECT_EQ(t.answer_token(), 2);
  EXPECT_EQ(t.answer_skip(), 0u);
}

TEST(ReasoningTrackerTest, EndSplitOverManyLongTokens) {
  ReasoningTracker t(Tags("", "</think>"), {}, {}, false);
  t.Add(1, std::string(100, 'x') + "<");
  t.Add(2, "/");
  t.Add(3, "th");
  t.Add(4, "ink");
  EXPECT_EQ(t.phase(), Phase::kThinking);
  t.Add(5, ">ok");
  ASSERT_EQ(t.phase(), Phase::kAnswer);
  EXPECT_EQ(t.answer_token(), 4);
  EXPECT_EQ(t.answer_skip(), 1u);
}

TEST(ReasoningTrackerTest, OpeningOnBytes) {
  {
    // Spaces first, then the tag over two tokens, with thinking after it.
    ReasoningTracker t(Tags("<think>", "</think>"), {}, {}, false);
    EXPECT_EQ(t.phase(), Phase::kOpening);
    t.Add(1, "\n");
    t.Add(2, "<th");
    EXPECT_EQ(t.phase(), Phase::kOpening);
    t.Add(3, "ink>so");
    EXPECT_EQ(t.phase(), Phase::kThinking);
    t.Add(4, "</think>");
    EXPECT_EQ(t.phase(), Phase::kAnswer);
    EXPECT_EQ(t.answer_token(), 4);
  }
  {
    // An answer with no thinking: the answer is the whole output.
    ReasoningTracker t(Tags("<think>", "</think>"), {}, {}, false);
    t.Add(1, "<b>");
    ASSERT_EQ(t.phase(), Phase::kAnswer);
    EXPECT_EQ(t.answer_token(), 0);
    EXPECT_EQ(t.answer_skip(), 0u);
  }
  {
    // The whole thinking in the token that opens it.
    ReasoningTracker t(Tags("<think>", "</think>"), {}, {}, false);
    t.Add(1, "<th");
    t.Add(2, "ink>no</think>yes");
    ASSERT_EQ(t.phase(), Phase::kAnswer);
    EXPECT_EQ(t.answer_token(), 1);
    EXPECT_EQ(t.answer_skip(), std::string("ink>no</think>").size());
  }
}

TEST(ReasoningTrackerTest, OpeningOnTokens) {
  {
    ReasoningTracker t(Tags("<think>", "</think>"), {7, 8}, {9}, true);
    EXPECT_EQ(t.OpeningToken(), 7);
    EXPECT_EQ(t.Forced(), -1);
    t.Add(7, "<th");
    EXPECT_EQ(t.OpeningToken(), -1);
    EXPECT_EQ(t.Forced(), 8);  // the rest of the opening
    t.Add(8, "ink>");
    EXPECT_EQ(t.phase(), Phase::kThinking);
    EXPECT_EQ(t.Forced(), -1);
  }
  {
    // Any other first token is the answer, even bytes that look like the tag.
    ReasoningTracker t(Tags("<think>", "</think>"), {7, 8}, {9}, true);
    t.Add(3, "<th");
    EXPECT_EQ(t.phase(), Phase::kAnswer);
    EXPECT_EQ(t.answer_token(), 0);
    EXPECT_EQ(t.Forced(), -1);
  }
}

TEST(ReasoningTrackerTest, BudgetForcesTheEndTokenByToken) {
  ReasoningTracker t(Tags("", "</think>", 2), {}, {20, 21}, false);
  EXPECT_EQ(t.Forced(), -1);
  t.Add(1, "a");
  EXPECT_EQ(t.Forced(), -1);
  t.Add(2, "b");
  EXPECT_EQ(t.Forced(), 20);
  t.Add(20, "</");
  EXPECT_EQ(t.Forced(), 21);
  t.Add(21, "think>");
  EXPECT_EQ(t.phase(), Phase::kAnswer);
  EXPECT_EQ(t.Forced(), -1);
  EXPECT_EQ(t.answer_token(), 4);
}

TEST(ReasoningTrackerTest, BudgetZeroEndsAtOnceAndCountsAfterTheOpening) {
  ReasoningTracker none(Tags("", "</think>", 0), {}, {20}, false);
  EXPECT_EQ(none.Forced(), 20);
  ReasoningTracker opened(Tags("<think>", "</think>", 1), {}, {20}, false);
  opened.Add(5, "<think>");
  EXPECT_EQ(opened.Forced(), -1);  // the opening is not thinking
  opened.Add(6, "x");
  EXPECT_EQ(opened.Forced(), 20);
}

TEST(ReasoningTrackerTest, BudgetWaitsForACharactersLastByte) {
  ReasoningTracker t(Tags("", "</think>", 1), {}, {20}, false);
  t.Add(1, "\xE4\xB8");  // the first two bytes of U+4E2D
  EXPECT_EQ(t.Forced(), -1);
  t.Add(2, "\xAD");
  EXPECT_EQ(t.Forced(), 20);
}

TEST(ReasoningTrackerTest, ANaturalEndWhileForcedStopsTheForcing) {
  ReasoningTracker t(Tags("", "</think>", 1), {}, {20, 21, 22}, false);
  t.Add(1, "</think");
  EXPECT_EQ(t.Forced(), 20);
  t.Add(20, ">");  // completes the model's own end
  EXPECT_EQ(t.phase(), Phase::kAnswer);
  EXPECT_EQ(t.Forced(), -1);
}

}  // namespace
}  // namespace ferry
