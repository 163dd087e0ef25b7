#include "benchmarks/loadgen/arrivals.h"

#include <cmath>
#include <numeric>

#include "gtest/gtest.h"

namespace ferry::loadgen {
namespace {

struct GapStats {
  double mean = 0;
  double cv = 0;  // coefficient of variation
};

GapStats Gaps(const std::vector<double>& t) {
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
  GapStats s;
  s.mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
  double var = 0;
  for (double g : gaps) var += (g - s.mean) * (g - s.mean);
  var /= gaps.size();
  s.cv = std::sqrt(var) / s.mean;
  return s;
}

TEST(ArrivalsTest, PoissonHasTheRequestedMeanRateAndUnitCv) {
  auto t = ArrivalTimes({.request_rate = 20, .burstiness = 1, .seed = 1}, 20000);
  ASSERT_TRUE(t.ok());
  GapStats s = Gaps(*t);
  EXPECT_NEAR(s.mean, 1.0 / 20, 0.02 / 20);
  EXPECT_NEAR(s.cv, 1.0, 0.03);
  EXPECT_TRUE(std::is_sorted(t->begin(), t->end()));
  EXPECT_EQ((*t)[0], 0.0);
}

TEST(ArrivalsTest, BurstinessKeepsTheRateAndSetsTheVarianceAsVllm) {
  // Gamma(shape k, scale 1/(R k)): mean 1/R, CV 1/sqrt(k).
  for (double k : {0.25, 4.0}) {
    auto t = ArrivalTimes({.request_rate = 10, .burstiness = k, .seed = 7}, 40000);
    ASSERT_TRUE(t.ok());
    GapStats s = Gaps(*t);
    EXPECT_NEAR(s.mean, 0.1, 0.003) << "burstiness " << k;
    EXPECT_NEAR(s.cv, 1 / std::sqrt(k), 0.05 / std::sqrt(k)) << "burstiness " << k;
  }
}

TEST(ArrivalsTest, SameSeedSameScheduleOtherSeedOther) {
  auto a = ArrivalTimes({.request_rate = 5, .seed = 3}, 100);
  auto b = ArrivalTimes({.request_rate = 5, .seed = 3}, 100);
  auto c = ArrivalTimes({.request_rate = 5, .seed = 4}, 100);
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
}

TEST(ArrivalsTest, InfiniteRateSendsEverythingAtOnce) {
  auto t = ArrivalTimes({}, 50);
  ASSERT_TRUE(t.ok());
  for (double x : *t) EXPECT_EQ(x, 0.0);
}

TEST(ArrivalsTest, RampUpStartsSlowAndReachesTheRate) {
  // Over a 10 s ramp to 100 req/s, Lambda(10) = 500 requests arrive in the
  // ramp, a quarter of them (125) in its first half; then 100 per second.
  auto t = ArrivalTimes({.request_rate = 100, .ramp_up_s = 10, .seed = 2}, 2000);
  ASSERT_TRUE(t.ok());
  auto before = [&](double x) { return std::lower_bound(t->begin(), t->end(), x) - t->begin(); };
  EXPECT_NEAR(before(5), 125, 30);
  EXPECT_NEAR(before(10), 500, 60);
  EXPECT_NEAR(before(15) - before(10), 500, 70);
}

TEST(ArrivalsTest, RejectsBadOptions) {
  EXPECT_FALSE(ArrivalTimes({.request_rate = 0}, 5).ok());
  EXPECT_FALSE(ArrivalTimes({.request_rate = -1}, 5).ok());
  EXPECT_FALSE(ArrivalTimes({.request_rate = 1, .burstiness = 0}, 5).ok());
  EXPECT_FALSE(ArrivalTimes({.request_rate = 1, .ramp_up_s = -1}, 5).ok());
}

}  // namespace
}  // namespace ferry::loadgen
