#include "engine/ngram_draft.h"

#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

using V = std::vector<int32_t>;

TEST(NgramDraftTest, ProposesWhatFollowedTheLatestEarlierOccurrence) {
  // "1 2 3 9 | 1 2 3 7 | 1 2 3": the latest "1 2 3" before the tail is followed by 7.
  EXPECT_EQ(NgramDraft(V{1, 2, 3, 9, 1, 2, 3, 7, 8, 1, 2, 3}, 2), (V{7, 8}));
  // Cut at k and at the end of the tokens.
  EXPECT_EQ(NgramDraft(V{5, 6, 7, 8, 5, 6}, 1), (V{7}));
  EXPECT_EQ(NgramDraft(V{5, 6, 7, 5, 6}, 9), (V{7, 5, 6}));
}

TEST(NgramDraftTest, PrefersTheLongestMatch) {
  // The 3-gram "2 3 4" occurs once (followed by 50); the 2-gram "3 4" later (followed by 60).
  EXPECT_EQ(NgramDraft(V{2, 3, 4, 50, 3, 4, 60, 2, 3, 4}, 1, 2, 3), (V{50}));
  EXPECT_EQ(NgramDraft(V{2, 3, 4, 50, 3, 4, 60, 2, 3, 4}, 1, 2, 2), (V{60}));
}

TEST(NgramDraftTest, NothingWithoutAMatchOrRoom) {
  EXPECT_TRUE(NgramDraft(V{1, 2, 3, 4, 5}, 4).empty());
  EXPECT_TRUE(NgramDraft(V{1, 2, 1, 2}, 0).empty());
  EXPECT_TRUE(NgramDraft(V{}, 3).empty());
  EXPECT_TRUE(NgramDraft(V{7}, 3).empty());
  // A run of one token: the overlapping occurrence proposes it again.
  EXPECT_EQ(NgramDraft(V{4, 4, 4}, 3), (V{4}));
}

}  // namespace
}  // namespace ferry
