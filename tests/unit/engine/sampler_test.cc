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

// The backend's way of sampling (thresholds, inverse CDF in index order)
// picks tokens with the probabilities Sampler's sorted way gives.
TEST(SampleByThresholdsTest, FollowsTheSamplersDistribution) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 2.0f, 0.0f};
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p;
  };
  for (const Case& c : {Case{0.7f, 0, 1.0f}, Case{1.0f, 3, 1.0f}, Case{1.3f, 0, 0.8f}, Case{0.9f, 4, 0.9f}}) {
    Sampler s(Params(.temperature = c.temperature, .top_k = c.top_k, .top_p = c.top_p, .seed = 7), 0);
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    const int n = 40000;
    std::vector<int> host(logits.size()), backend(logits.size());
    for (int i = 0; i < n; ++i) {
      host[static_cast<size_t>(Draw(s, logits))]++;
      backend[static_cast<size_t>(SampleByThresholds(logits, c.temperature, c.top_k, c.top_p, uniform(rng)))]++;
    }
    for (size_t i = 0; i < logits.size(); ++i) {
      const double p = static_cast<double>(host[i]) / n;
      const double sd = std::sqrt(n * std::max(p, 1e-3) * (1 - p));
      EXPECT_NEAR(backend[i], host[i], 6 * sd + 2) << "token " << i << " t=" << c.temperature << " k=" << c.top_k
                                                   << " p=" << c.top_p;
      if (host[i] == 0) EXPECT_EQ(backend[i], 0) << "token " << i << " is outside the support";
    }
  }
}

TEST(SampleByThresholdsTest, GreedyTiesAndTheNucleusEdges) {
  const std::vector<float> logits = {3.0f, 5.0f, 5.0f, 1.0f};
  // Greedy: the first maximum, whatever the draw.
  EXPECT_EQ(SampleByThresholds(logits, 0.0f, 0, 1.0f, 0.99f), 1);
  // top_k = 1 keeps both tied maxima (ties at a threshold are kept).
  EXPECT_EQ(SampleByThresholds(logits, 1.0f, 1, 1.0f, 0.0f), 1);
  EXPECT_EQ(SampleByThresholds(logits, 1.0f, 1, 1.0f, 0.99f), 2);
  // A tiny top_p still keeps the top value (and its tie), never the rest.
  for (float u : {0.0f, 0.3f, 0.6f, 0.999f}) {
    const int32_t t = SampleByThresholds(logits, 1.0f, 0, 0.01f, u);
    EXPECT_TRUE(t == 1 || t == 2) << u;
  }
  // The lowest draw picks the first kept token in index order, the highest
  // the last.
  EXPECT_EQ(SampleByThresholds(logits, 1.0f, 0, 1.0f, 0.0f), 0);
  EXPECT_EQ(SampleByThresholds(logits, 1.0f, 0, 1.0f, 0.99999f), 3);
}

TEST(SamplerTest, PicksOnlyAndTheDrawForABackend) {
  EXPECT_TRUE(Sampler(Params(.temperature = 0.0f), 0).PicksOnly(0));
  EXPECT_TRUE(Sampler(Params(.temperature = 0.8f, .top_k = 5, .top_p = 0.9f), 0).PicksOnly(0));
  EXPECT_FALSE(Sampler(Params(.repetition_penalty = 1.1f), 0).PicksOnly(0));
  EXPECT_FALSE(Sampler(Params(.frequency_penalty = 0.5f), 0).PicksOnly(0));
  EXPECT_FALSE(Sampler(Params(.min_p = 0.1f), 0).PicksOnly(0));
  EXPECT_FALSE(Sampler(Params(.logprobs = 0), 0).PicksOnly(0));
  SamplingParams bias;
  bias.logit_bias.emplace_back(3, 1.0f);
  EXPECT_FALSE(Sampler(bias, 0).PicksOnly(0));
  // min_tokens masks end tokens until that many were generated.
  Sampler min_tokens(Params(.min_tokens = 2), 0);
  EXPECT_FALSE(min_tokens.PicksOnly(1));
  EXPECT_TRUE(min_tokens.PicksOnly(2));
  // A non-greedy pick moves the generator exactly as Sample does; greedy
  // does not move it.
  Sampler a(Params(.temperature = 1.0f, .seed = 4), 9), b(Params(.temperature = 1.0f, .seed = 4), 9);
  const float u = a.DrawForBackend();
  EXPECT_GE(u, 0.0f);
  EXPECT_LT(u, 1.0f);
  Draw(b, {0.0f, 1.0f});
  EXPECT_EQ(a.rng().SaveState(), b.rng().SaveState());
  Sampler g(Params(.temperature = 0.0f), 9);
  const std::string before = g.rng().SaveState();
  EXPECT_EQ(g.DrawForBackend(), 0.0f);
  EXPECT_EQ(g.rng().SaveState(), before);
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
