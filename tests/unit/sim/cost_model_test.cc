#include "engine/sim_cost_model.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

TEST(SimCostModelTest, EmptyStepTakesNoTime) {
  absl::StatusOr<SimProfile> p = LookupSimProfile("h100-llama3-8b");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(StepSeconds(*p, StepShape{}), 0);
}

TEST(SimCostModelTest, GpuDecodeIsBoundByTheWeightRead) {
  absl::StatusOr<SimProfile> p = LookupSimProfile("h100-llama3-8b");
  ASSERT_TRUE(p.ok()) << p.status();
  // 16 GB of bf16 weights at 85 % of 3.35 TB/s: about 5.6 ms, whatever the
  // (small) batch.
  const double one = StepSeconds(*p, {1, 1, 512, 512});
  const double eight = StepSeconds(*p, {8, 8, 8 * 512, 8 * 512});
  EXPECT_NEAR(one, (16.06e9 + 512 * 131072.0) / (3.35e12 * 0.85) + 0.4e-3 + 5e-6, 1e-6);
  EXPECT_LT(eight / one, 1.1);
}

TEST(SimCostModelTest, GpuPrefillIsBoundByCompute) {
  absl::StatusOr<SimProfile> p = LookupSimProfile("h100-llama3-8b");
  ASSERT_TRUE(p.ok()) << p.status();
  const double t4k = StepSeconds(*p, {4096, 1, 4096, 4096LL * 4097 / 2});
  const double t8k = StepSeconds(*p, {8192, 1, 8192, 8192LL * 8193 / 2});
  // 2 x 8.03e9 FLOP per token at 60 % of 989 TFLOP/s: about 0.11 s for 4096.
  EXPECT_GT(t4k, 0.1);
  EXPECT_LT(t4k, 0.15);
  EXPECT_GT(t8k / t4k, 2.0);  // linear part plus the quadratic attention
}

TEST(SimCostModelTest, KvReadsCostTimeAndMoreBandwidthIsFaster) {
  absl::StatusOr<SimProfile> h100 = LookupSimProfile("h100-llama3-8b");
  absl::StatusOr<SimProfile> h200 = LookupSimProfile("h200-llama3-8b");
  ASSERT_TRUE(h100.ok() && h200.ok());
  const StepShape big{64, 64, 64 * 4096, 64 * 4096};
  const StepShape small{64, 64, 64 * 128, 64 * 128};
  EXPECT_GT(StepSeconds(*h100, big), StepSeconds(*h100, small));
  EXPECT_LT(StepSeconds(*h200, big), StepSeconds(*h100, big));
  EXPECT_GT(h200->kv_capacity_tokens, h100->kv_capacity_tokens);
}

TEST(SimCostModelTest, CpuProfileMatchesTheMeasuredFigures) {
  absl::StatusOr<SimProfile> p = LookupSimProfile("cpu-small");
  ASSERT_TRUE(p.ok()) << p.status();
  // BENCHMARKS.md: 113 tok/s at batch 1 (8.85 ms a step), 563 tok/s at 64.
  EXPECT_NEAR(StepSeconds(*p, {1, 1, 48, 48}), 8.85e-3, 1.5e-3);
  EXPECT_NEAR(64 / StepSeconds(*p, {64, 64, 64 * 48, 64 * 48}), 563, 563 * 0.2);
  EXPECT_EQ(p->kv_capacity_tokens, 8192);
}

TEST(SimCostModelTest, UnknownProfileNamesTheKnownOnes) {
  absl::StatusOr<SimProfile> p = LookupSimProfile("tpu-v9");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("h100-llama3-8b"), std::string::npos);
  for (const std::string& name : SimProfileNames()) EXPECT_TRUE(LookupSimProfile(name).ok()) << name;
}

}  // namespace
}  // namespace ferry
