#include "engine/reasoning_tracker.h"

#include <random>
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

// Random outputs cut into random tokens: the answer the tracker finds
// starts where a search over the whole text says.
TEST(ReasoningTrackerTest, AnswerStartAgreesWithASearchOverTheWholeText) {
  const std::vector<std::string> pieces = {"<", "/", "think", ">",  "<think>", "</think>",
                                           "a", " ", "\n",    "th", "ink>",    "</"};
  std::mt19937 rng(17);
  for (int trial = 0; trial < 4000; ++trial) {
    const bool opening = trial % 2 == 1;
    std::string text;
    const int n = 1 + static_cast<int>(rng() % 10);
    for (int i = 0; i < n; ++i) text += pieces[rng() % pieces.size()];
    // Token boundaries at random.
    std::vector<std::string> tokens;
    for (size_t at = 0; at < text.size();) {
      const size_t len = std::min(text.size() - at, size_t{1} + rng() % 5);
      tokens.push_back(text.substr(at, len));
      at += len;
    }
    ReasoningTracker t(Tags(opening ? "<think>" : "", "</think>"), {}, {}, false);
    for (const std::string& tok : tokens) t.Add(1, tok);

    // The reference: where the thinking opens and where the answer starts.
    size_t think_from = 0;
    bool thinks = true;
    bool undecided = false;
    if (opening) {
      const size_t lead = std::min(text.find_first_not_of(" \t\r\n"), text.size());
      const std::string rest = text.substr(lead);
      if (rest.starts_with("<think>")) {
        think_from = lead + 7;
      } else if (std::string("<think>").starts_with(rest)) {
        undecided = true;  // still only the beginning of the tag (or nothing)
      } else {
        thinks = false;
      }
    }
    const std::string where = "text '" + text + "'";
    if (undecided) {
      EXPECT_EQ(t.phase(), Phase::kOpening) << where;
      continue;
    }
    size_t answer = 0;
    if (thinks) {
      const size_t end = text.find("</think>", think_from);
      if (end == std::string::npos) {
        EXPECT_EQ(t.phase(), Phase::kThinking) << where;
        continue;
      }
      answer = end + 8;
    }
    ASSERT_EQ(t.phase(), Phase::kAnswer) << where;
    size_t offset = 0;
    for (int i = 0; i < t.answer_token(); ++i) offset += tokens[static_cast<size_t>(i)].size();
    EXPECT_EQ(offset + t.answer_skip(), answer) << where;
    if (static_cast<size_t>(t.answer_token()) < tokens.size()) {
      EXPECT_LT(t.answer_skip(), tokens[static_cast<size_t>(t.answer_token())].size()) << where;
    }
  }
}

}  // namespace
}  // namespace ferry
