// The host tier of the prefix cache in a real engine (stories260K): a prompt
// evicted from a small KV cache by another one comes back from the host tier
// on its next run, with exactly the greedy tokens it had when computed.
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/engine.h"
#include "gtest/gtest.h"
#include "tests/integration/engine/greedy_run.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

using Outcome = testing::GreedyOutcome;
using testing::RunGreedy;

std::vector<int32_t> Prompt(int len, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < len; ++i) ids.push_back(3 + (i * 31 + salt * 17) % 400);
  return ids;
}

TEST(HostTierEngineTest, EvictedPrefixComesBackFromTheHostTierWithTheSameTokens) {
  FERRY_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto m = Model::Load(path, LoadOptions{.progress = false});
  ASSERT_TRUE(m.ok()) << m.status();
  std::shared_ptr<const Model> model(std::move(*m));
  EngineOptions probe;
  probe.threads = 1;
  int64_t block_bytes = 0;
  {
    auto e = Engine::Create(model, probe);
    ASSERT_TRUE(e.ok()) << e.status();
    block_bytes = (*e)->kv_shape().bytes_per_block();
  }
  EngineOptions o = probe;
  o.kv_cache_bytes = block_bytes * 12;  // one 150-token prompt and its output at a time
  o.kv_host_bytes = block_bytes * 64;
  auto engine = Engine::Create(model, o);
  ASSERT_TRUE(engine.ok()) << engine.status();

  const std::vector<int32_t> a = Prompt(150, 1);
  Outcome first = RunGreedy(**engine, "a1", a);
  ASSERT_EQ(first.finish, FinishReason::kLength);
  ASSERT_EQ(first.tokens.size(), 16u);
  EXPECT_EQ(first.cached_prompt_tokens, 0);
  Outcome other = RunGreedy(**engine, "b", Prompt(150, 2));  // pushes `a` out to the host tier
  ASSERT_EQ(other.finish, FinishReason::kLength);
  absl::SleepFor(absl::Milliseconds(20));  // statistics follow the step's events
  EngineStats before = (*engine)->Stats();
  EXPECT_GT(before.host_swap_out_blocks, 0);
  EXPECT_GT(before.host_blocks_used, 0);

  Outcome again = RunGreedy(**engine, "a2", a);
  EXPECT_EQ(again.tokens, first.tokens);
  EXPECT_EQ(again.cached_prompt_tokens, 144);  // 9 full blocks of the 149 matchable tokens
  absl::SleepFor(absl::Milliseconds(20));
  EngineStats after = (*engine)->Stats();
  EXPECT_GT(after.prefix_hit_blocks_host, before.prefix_hit_blocks_host);
  EXPECT_EQ(after.host_swap_in_bytes, after.host_swap_in_blocks * block_bytes);
  EXPECT_EQ(after.host_blocks_total, 64);
}

TEST(HostTierEngineTest, HostMemorySmallerThanABlockIsAnError) {
  FERRY_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto m = Model::Load(path, LoadOptions{.progress = false});
  ASSERT_TRUE(m.ok()) << m.status();
  EngineOptions o;
  o.threads = 1;
  o.kv_host_bytes = 1;
  auto e = Engine::Create(std::shared_ptr<const Model>(std::move(*m)), o);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ferry
