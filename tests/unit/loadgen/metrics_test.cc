#include "benchmarks/loadgen/metrics.h"

#include "gtest/gtest.h"

namespace ferry::loadgen {
namespace {

RequestResult Ok(double ttft_s, double e2e_s, int tokens) {
  RequestResult r;
  r.ok = true;
  r.ttft_s = ttft_s;
  r.e2e_s = e2e_s;
  r.output_tokens = tokens;
  r.prompt_tokens = 10;
  return r;
}

TEST(PercentileTest, InterpolatesLinearlyAsNumpy) {
  std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 3.7);  // numpy.percentile([1,2,3,4], 90)
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({5}, 99), 5);
  std::vector<double> hundred;
  for (int i = 1; i <= 100; ++i) hundred.push_back(i);
  EXPECT_NEAR(Percentile(hundred, 99), 99.01, 1e-9);
}

TEST(SummarizeDistributionTest, MeanMedianTailsAndMax) {
  Distribution d = Summarize(std::vector<double>{4, 1, 3, 2});
  EXPECT_EQ(d.count, 4);
  EXPECT_DOUBLE_EQ(d.mean, 2.5);
  EXPECT_DOUBLE_EQ(d.median, 2.5);
  EXPECT_DOUBLE_EQ(d.p90, 3.7);
  EXPECT_DOUBLE_EQ(d.max, 4);
  EXPECT_EQ(Summarize(std::vector<double>{}).count, 0);
}

TEST(TpotTest, ExcludesTheFirstToken) {
  // 11 tokens: the first at 0.1 s, the other 10 over the next 0.5 s.
  EXPECT_NEAR(*Tpot(Ok(0.1, 0.6, 11)), 0.05, 1e-12);
  EXPECT_FALSE(Tpot(Ok(0.1, 0.6, 1)).has_value());
  RequestResult failed = Ok(0.1, 0.6, 11);
  failed.ok = false;
  EXPECT_FALSE(Tpot(failed).has_value());
}

TEST(SloTest, ParsesAndChecks) {
  auto slo = ParseSlo("ttft:200,tpot:50");
  ASSERT_TRUE(slo.ok());
  EXPECT_EQ(*slo->ttft_ms, 200);
  EXPECT_EQ(*slo->tpot_ms, 50);
  EXPECT_TRUE(MeetsSlo(Ok(0.2, 0.7, 11), *slo));    // TPOT exactly 50 ms
  EXPECT_FALSE(MeetsSlo(Ok(0.21, 0.7, 11), *slo));  // TTFT over
  EXPECT_FALSE(MeetsSlo(Ok(0.1, 0.7, 11), *slo));   // TPOT 60 ms
  EXPECT_TRUE(ParseSlo("").ok());
  EXPECT_FALSE(ParseSlo("ttft").ok());
  EXPECT_FALSE(ParseSlo("e2e:5").ok());
  EXPECT_FALSE(ParseSlo("ttft:-1").ok());
  EXPECT_FALSE(ParseSlo("ttft:abc").ok());
}

TEST(SummarizeTest, ThroughputGoodputAndErrors) {
  std::vector<RequestResult> rs = {Ok(0.1, 1.1, 11), Ok(0.5, 1.5, 11), Ok(0.1, 2.1, 11)};
  RequestResult e1;
  e1.error = "http_503";
  RequestResult e2;
  e2.error = "connection";
  rs.push_back(e1);
  rs.push_back(e1);
  rs.push_back(e2);
  BenchSummary s = Summarize(rs, 2.0, *ParseSlo("ttft:200,tpot:150"));
  EXPECT_EQ(s.num_requests, 6);
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 3);
  EXPECT_EQ(s.errors["http_503"], 2);
  EXPECT_EQ(s.errors["connection"], 1);
  EXPECT_DOUBLE_EQ(s.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(s.output_throughput, 33.0 / 2);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 63.0 / 2);
  // Good: only the first (TTFT 100 ms, TPOT 100 ms); the second misses TTFT,
  // the third TPOT (200 ms).
  EXPECT_EQ(s.good_requests, 1);
  EXPECT_DOUBLE_EQ(s.goodput, 0.5);
  EXPECT_NEAR(s.tpot_ms.mean, (100 + 100 + 200) / 3.0, 1e-9);
  EXPECT_NEAR(s.ttft_ms.max, 500, 1e-9);
  EXPECT_EQ(s.ttft_values_ms.size(), 3u);
}

}  // namespace
}  // namespace ferry::loadgen
