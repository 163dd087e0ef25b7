#include "engine/sampler.h"

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

// Builds params from designated fields, e.g. Params(.temperature = 1.0f).
#define Params(...) SamplingParams{__VA_ARGS__}

int32_t Draw(Sampler& s, std::vector<float> logits) {
  return s.Sample(logits, {}, {}, {}).id;
}

TEST(SamplerTest, GreedyPicksTheFirstMaximum) {
  Sampler s(Params(.temperature = 0.0f), 0);
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(Draw(s, logits), 1);
}

// The lane-parallel Argmax against a plain first-maximum scan: ties, NaN,
// -inf, lengths around the lane width.
TEST(SamplerTest, ArgmaxMatchesAPlainScan) {
  std::mt19937 rng(5);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (int trial = 0; trial < 3000; ++trial) {
    const size_t n = 1 + rng() % 70;
    std::vector<float> v(n);
    for (float& x : v) {
      switch (rng() % 8) {
        case 0: x = nan; break;
        case 1: x = -inf; break;
        case 2: x = 2.0f; break;  // frequent ties at the top
        default: x = static_cast<float>(static_cast<int>(rng() % 7)) - 3.0f; break;
      }
    }
    int32_t want = 0;
    for (size_t i = 1; i < n; ++i) {
      if (v[i] > v[want]) want = static_cast<int32_t>(i);
    }
    ASSERT_EQ(Sampler::Argmax(v), want) << "trial " << trial;
  }
}

TEST(SamplerTest, SameSeedSameTokens) {
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = std::sin(i * 0.7f);
  Sampler a(Params(.temperature = 1.0f), 42);
  Sampler b(Params(.temperature = 1.0f), 42);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(Draw(a, logits), Draw(b, logits));
}

TEST(SamplerTest, RngStateRoundTrips) {
  Rng a(5);
  a.Next();
  std::string state = a.SaveState();
  Rng b(99);
  ASSERT_TRUE(b.LoadState(state).ok());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.Next(), b.Next());
  EXPECT_FALSE(b.LoadState("short").ok());
}

// Frequencies follow softmax(logits / T) within a few standard deviations.
TEST(SamplerTest, TemperatureSamplingFollowsTheDistribution) {
  std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f};
  const float t = 0.7f;
  Sampler s(Params(.temperature = t, .seed = 1), 0);
  const int n = 20000;
  std::vector<int> counts(4);
  for (int i = 0; i < n; ++i) counts[Draw(s, logits)]++;
  double z = 0;
  for (float l : logits) z += std::exp(l / t);
  for (int i = 0; i < 4; ++i) {
    double p = std::exp(logits[i] / t) / z;
    double sd = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(counts[i], n * p, 5 * sd + 1) << i;
  }
}

TEST(SamplerTest, TopKAndTopPAndMinPRestrictTheSupport) {
  std::vector<float> logits = {5.0f, 4.0f, 3.0f, 0.0f, -2.0f};
  Sampler k(Params(.temperature = 1.0f, .top_k = 2, .seed = 3), 0);
  Sampler p(Params(.temperature = 1.0f, .top_p = 0.5f, .seed = 3), 0);
  Sampler m(Params(.temperature = 1.0f, .min_p = 0.3f, .seed = 3), 0);
  for (int i = 0; i < 2000; ++i) {
    EXPECT_LT(Draw(k, logits), 2);
    EXPECT_EQ(Draw(p, logits), 0);  // the top token alone holds > 50%
    EXPECT_LT(Draw(m, logits), 2);  // exp(-2) = 0.135 < 0.3
  }
}

TEST(SamplerTest, MaskedLogitsAreNeverSampled) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> logits = {-inf, 0.0f, -inf, 0.0f};
  Sampler s(Params(.temperature = 1.0f, .seed = 9), 0);
  for (int i = 0; i < 500; ++i) {
    int t = Draw(s, logits);
    EXPECT_TRUE(t == 1 || t == 3);
  }
}

TEST(SamplerTest, PenaltiesAndBiasChangeTheGreedyChoice) {
  std::vector<float> logits = {2.0f, 1.9f, 0.0f};
  std::vector<int32_t> output = {0, 0};
  // Frequency: 2.0 - 2 * 0.1 = 1.8 < 1.9.
  Sampler freq(Params(.temperature = 0.0f, .frequency_penalty = 0.1f), 0);
  auto l = logits;
  EXPECT_EQ(freq.Sample(l, {}, output, {}).id, 1);
  // Presence: 2.0 - 0.2 = 1.8 once, however often.
  Sampler pres(Params(.temperature = 0.0f, .presence_penalty = 0.2f), 0);
  l = logits;
  EXPECT_EQ(pres.Sample(l, {}, output, {}).id, 1);
  // Repetition divides positive logits: 2.0 / 1.1 < 1.9; the prompt counts too.
  Sampler rep(Params(.temperature = 0.0f, .repetition_penalty = 1.1f), 0);
  l = logits;
  std::vector<int32_t> prompt = {0};
  EXPECT_EQ(rep.Sample(l, prompt, {}, {}).id, 1);
  // Logit bias.
  SamplingParams biased;
  biased.temperature = 0.0f;
  biased.logit_bias = {{2, 5.0f}};
  Sampler bias(biased, 0);
  l = logits;
  EXPECT_EQ(bias.Sample(l, {}, {}, {}).id, 2);
}

TEST(SamplerTest, MinTokensMasksEosUntilReached) {
  std::vector<float> logits = {0.0f, 5.0f, 1.0f};
  std::vector<int32_t> eos = {1};
  Sampler s(Params(.temperature = 0.0f, .max_tokens = 10, .min_tokens = 2), 0);
  std::vector<int32_t> out;
  auto l = logits;
  EXPECT_EQ(s.Sample(l, {}, out, eos).id, 2);
  out = {2, 2};
  l = logits;
  EXPECT_EQ(s.Sample(l, {}, out, eos).id, 1);
}

TEST(SamplerTest, LogprobsAreLogSoftmaxOfTheModelLogits) {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f};
  Sampler s(Params(.temperature = 0.0f, .logprobs = 2), 0);
  auto l = logits;
  SampledToken t = s.Sample(l, {}, {}, {});
  double z = std::log(std::exp(1.0) + std::exp(3.0) + std::exp(2.0));
  EXPECT_EQ(t.id, 1);
  EXPECT_NEAR(t.logprob, 3.0 - z, 1e-5);
  ASSERT_EQ(t.top.size(), 2u);
  EXPECT_EQ(t.top[0].first, 1);
  EXPECT_EQ(t.top[1].first, 2);
  EXPECT_NEAR(t.top[1].second, 2.0 - z, 1e-5);
}

TEST(SamplingParamsTest, RejectsOutOfRangeValuesNamingThem) {
  auto expect_bad = [](SamplingParams p, const char* name) {
    absl::Status s = p.Validate(100);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(s.message().find(name), absl::string_view::npos) << s;
  };
  expect_bad(Params(.temperature = -0.5f), "temperature");
  expect_bad(Params(.top_p = 1.5f), "top_p");
  expect_bad(Params(.top_p = 0.0f), "top_p");
  expect_bad(Params(.max_tokens = 0), "max_tokens");
  expect_bad(Params(.frequency_penalty = 3.0f), "frequency_penalty");
  SamplingParams p;
  p.logit_bias = {{100, 1.0f}};
  expect_bad(p, "logit_bias");
  p = SamplingParams();
  p.n = 0;
  expect_bad(p, "n");
  p = SamplingParams();
  p.stop = {""};
  expect_bad(p, "stop");
  EXPECT_TRUE(SamplingParams().Validate(100).ok());
}

}  // namespace
}  // namespace ferry
