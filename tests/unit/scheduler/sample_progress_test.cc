#include "scheduler/service/sample_progress.h"

#include "gtest/gtest.h"

namespace ferry {
namespace {

v1::TokenEvent Ev(std::vector<int32_t> ids, std::string text, uint64_t seq = 0) {
  v1::TokenEvent e;
  for (int32_t id : ids) e.add_token_ids(id);
  e.set_text(std::move(text));
  e.set_seq(seq);
  return e;
}

TEST(SampleProgressTest, RelaysInOrderAndCountsText) {
  SampleProgress p;
  auto a = p.Accept(Ev({1, 2}, "ab"), 0);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->seq(), 0u);
  auto b = p.Accept(Ev({3}, "c"), 2);
  EXPECT_EQ(b->seq(), 2u);
  EXPECT_EQ(p.output_ids(), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(p.text_bytes(), 3);
}

TEST(SampleProgressTest, DropsRepeatedTokens) {
  SampleProgress p;
  p.Accept(Ev({1, 2, 3}, "abc"), 0);
  EXPECT_FALSE(p.Accept(Ev({2, 3}, "bc"), 1).has_value());
  auto partial = p.Accept(Ev({3, 4}, "d"), 2);
  ASSERT_TRUE(partial.has_value());
  EXPECT_EQ(partial->token_ids_size(), 1);
  EXPECT_EQ(partial->token_ids(0), 4);
  EXPECT_EQ(partial->seq(), 3u);
  EXPECT_EQ(p.duplicates_dropped(), 3);
}

TEST(SampleProgressTest, RepeatedFinishStillEndsTheSample) {
  SampleProgress p;
  p.Accept(Ev({1}, "a"), 0);
  v1::TokenEvent fin = Ev({1}, "a");
  fin.set_finish_reason(v1::FINISH_REASON_STOP);
  auto out = p.Accept(fin, 0);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->token_ids_size(), 0);
  EXPECT_TRUE(out->text().empty());
  EXPECT_EQ(out->finish_reason(), v1::FINISH_REASON_STOP);
}

TEST(SampleProgressTest, MigratedIsHiddenFromTheClient) {
  SampleProgress p;
  v1::TokenEvent m = Ev({5}, "e");
  m.set_finish_reason(v1::FINISH_REASON_MIGRATED);
  m.set_migrated_to("h:2");
  auto out = p.Accept(m, 0);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
  EXPECT_TRUE(out->migrated_to().empty());
  m.clear_token_ids();
  m.clear_text();
  EXPECT_FALSE(p.Accept(m, 1).has_value());
}

TEST(SampleProgressTest, CountsGaps) {
  SampleProgress p;
  p.Accept(Ev({1}, "a"), 0);
  p.Accept(Ev({3}, "c"), 2);
  EXPECT_EQ(p.gaps(), 1);
}

}  // namespace
}  // namespace ferry
