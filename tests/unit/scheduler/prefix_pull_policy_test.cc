#include "scheduler/policy/prefix_pull_policy.h"

#include "gtest/gtest.h"

namespace ferry {
namespace {

// 16-token blocks of 1 MB; the destination computes 1000 prompt tokens/s
// (16 ms a block) and the link moves 1 GB/s (1 ms a block) plus 5 ms fixed.
PrefixPullInput Input() {
  PrefixPullInput in;
  in.block_size = 16;
  in.usable_blocks = 100;
  in.kv_bytes_per_block = 1'000'000;
  in.prefill_tokens_per_second = 1000;
  return in;
}

TEST(PrefixPullPolicyTest, PullsTheLongestPrefixWhenCheaper) {
  PrefixPullInput in = Input();
  in.local_blocks = 2;
  in.peers = {{"w1", 10}, {"w2", 30}, {"w3", 20}};
  auto d = DecidePrefixPull(PrefixPullPolicyOptions{}, in);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->peer_id, "w2");
  // The destination's own two blocks are not moved.
  EXPECT_EQ(d->first_block, 2);
  EXPECT_EQ(d->num_blocks, 28);
  EXPECT_NEAR(d->pull_seconds, 0.005 + 28 * 0.001, 1e-9);
  EXPECT_NEAR(d->recompute_seconds, 28 * 16 / 1000.0, 1e-9);
}

TEST(PrefixPullPolicyTest, APartlyCachedPrefixMovesOnlyTheRest) {
  // 10 ms a block over the link, 16 ms to compute one: the 20 ms fixed cost
  // is only won back over enough blocks.
  PrefixPullPolicyOptions o;
  o.link_bytes_per_second = 100e6;
  o.fixed_cost = absl::Milliseconds(20);
  o.min_blocks = 1;
  PrefixPullInput in = Input();
  in.peers = {{"w1", 20}};
  auto whole = DecidePrefixPull(o, in);
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->first_block, 0);
  EXPECT_EQ(whole->num_blocks, 20);
  EXPECT_NEAR(whole->pull_seconds, 0.020 + 20 * 0.010, 1e-9);

  in.local_blocks = 12;
  auto rest = DecidePrefixPull(o, in);
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(rest->first_block, 12);
  EXPECT_EQ(rest->num_blocks, 8);
  EXPECT_NEAR(rest->pull_seconds, 0.020 + 8 * 0.010, 1e-9);
  EXPECT_NEAR(rest->recompute_seconds, 8 * 16 / 1000.0, 1e-9);
  EXPECT_LT(rest->pull_seconds, whole->pull_seconds);

  // Three missing blocks: 50 ms to pull, 48 ms to compute.
  in.local_blocks = 17;
  EXPECT_FALSE(DecidePrefixPull(o, in).has_value());
  // Caching all of it (or more than the peer): nothing to pull.
  in.local_blocks = 20;
  EXPECT_FALSE(DecidePrefixPull(o, in).has_value());
  in.local_blocks = 25;
  EXPECT_FALSE(DecidePrefixPull(o, in).has_value());
}

TEST(PrefixPullPolicyTest, NeverPullsPastWhatAHitCanUse) {
  PrefixPullInput in = Input();
  in.usable_blocks = 12;  // the last prompt token is always computed
  in.peers = {{"w1", 40}};
  auto d = DecidePrefixPull(PrefixPullPolicyOptions{}, in);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->first_block, 0);
  EXPECT_EQ(d->num_blocks, 12);
}

TEST(PrefixPullPolicyTest, RecomputesWhenTheLinkIsSlowerThanPrefill) {
  PrefixPullInput in = Input();
  in.peers = {{"w1", 30}};
  PrefixPullPolicyOptions slow;
  slow.link_bytes_per_second = 50e6;  // 20 ms a block, prefill 16 ms a block
  EXPECT_FALSE(DecidePrefixPull(slow, in).has_value());
  // A fast prefill makes even the default link not worth it.
  in.prefill_tokens_per_second = 100'000;
  EXPECT_FALSE(DecidePrefixPull(PrefixPullPolicyOptions{}, in).has_value());
}

TEST(PrefixPullPolicyTest, SmallGainsAndDisabledPullsDoNothing) {
  PrefixPullInput in = Input();
  in.local_blocks = 9;
  in.peers = {{"w1", 10}};  // one block more: below min_blocks
  EXPECT_FALSE(DecidePrefixPull(PrefixPullPolicyOptions{}, in).has_value());
  in.local_blocks = 0;
  PrefixPullPolicyOptions off;
  off.enabled = false;
  EXPECT_FALSE(DecidePrefixPull(off, in).has_value());
  EXPECT_TRUE(DecidePrefixPull(PrefixPullPolicyOptions{}, in).has_value());
  in.kv_bytes_per_block = 0;  // unknown size: cannot weigh it
  EXPECT_FALSE(DecidePrefixPull(PrefixPullPolicyOptions{}, in).has_value());
  in = Input();
  EXPECT_FALSE(DecidePrefixPull(PrefixPullPolicyOptions{}, in).has_value());  // no peers
}

TEST(PrefixPullPolicyTest, UnmeasuredPrefillUsesTheDefaultAndAnOverrideWins) {
  PrefixPullInput in = Input();
  in.prefill_tokens_per_second = 0;
  in.peers = {{"w1", 10}};
  PrefixPullPolicyOptions o;
  o.default_prefill_tokens_per_second = 1e6;  // recompute nearly free: no pull
  EXPECT_FALSE(DecidePrefixPull(o, in).has_value());
  o.default_prefill_tokens_per_second = 100;
  auto d = DecidePrefixPull(o, in);
  ASSERT_TRUE(d.has_value());
  EXPECT_NEAR(d->recompute_seconds, 10 * 16 / 100.0, 1e-9);
  in.prefill_tokens_per_second = 1e6;
  o.prefill_tokens_per_second_override = 100;
  d = DecidePrefixPull(o, in);
  ASSERT_TRUE(d.has_value());
  EXPECT_NEAR(d->recompute_seconds, 10 * 16 / 100.0, 1e-9);
}

TEST(PrefixPullPolicyTest, TiesGoToTheLowerWorkerId) {
  PrefixPullInput in = Input();
  in.peers = {{"w9", 20}, {"w3", 20}, {"w5", 20}};
  auto d = DecidePrefixPull(PrefixPullPolicyOptions{}, in);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->peer_id, "w3");
}

}  // namespace
}  // namespace ferry
