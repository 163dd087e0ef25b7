#include "scheduler/service/peer_messages.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace ferry {
namespace {

TEST(PeerMessagesTest, LoadSurvivesTheRoundTripThroughItsMessage) {
  WorkerLoad l;
  l.blocks_free = 12;
  l.blocks_total = 40;
  l.running_requests = 3;
  l.waiting_requests = 2;
  l.blocks_needed_waiting = 9;
  l.tokens_per_second = 123.5;
  l.cached_blocks = 7;
  l.kv_bytes_per_block = 393216;
  l.prefill_tokens_per_second = 2048;
  const WorkerLoad back = LoadFromProto(LoadToProto(l));
  EXPECT_EQ(back.blocks_free, l.blocks_free);
  EXPECT_EQ(back.blocks_total, l.blocks_total);
  EXPECT_EQ(back.running_requests, l.running_requests);
  EXPECT_EQ(back.waiting_requests, l.waiting_requests);
  EXPECT_EQ(back.blocks_needed_waiting, l.blocks_needed_waiting);
  EXPECT_EQ(back.tokens_per_second, l.tokens_per_second);
  EXPECT_EQ(back.cached_blocks, l.cached_blocks);
  EXPECT_EQ(back.kv_bytes_per_block, l.kv_bytes_per_block);
  EXPECT_EQ(back.prefill_tokens_per_second, l.prefill_tokens_per_second);
}

TEST(PeerMessagesTest, APeersOutOfRangeFiguresAreClamped) {
  v1::LoadReport r;
  r.set_blocks_total(10);
  r.set_blocks_free(25);  // more free than there are
  r.set_running_requests(-4);
  r.set_blocks_needed_waiting(-1);
  r.set_tokens_per_second(std::numeric_limits<double>::quiet_NaN());
  r.set_prefill_tokens_per_second(-std::numeric_limits<double>::infinity());
  r.set_cached_blocks(-8);
  const WorkerLoad l = LoadFromProto(r);
  EXPECT_EQ(l.blocks_free, 10);
  EXPECT_EQ(l.running_requests, 0);
  EXPECT_EQ(l.blocks_needed_waiting, 0);
  EXPECT_EQ(l.tokens_per_second, 0);
  EXPECT_EQ(l.prefill_tokens_per_second, 0);
  EXPECT_EQ(l.cached_blocks, 0);
}

}  // namespace
}  // namespace ferry
