// The KV lending ledger: lender choice from load reports, the room kept for
// a lender's own work, blocks lent since the last report, and reclaiming on
// return, owner death and lender death.
#include "scheduler/policy/kv_ledger.h"

#include "gtest/gtest.h"

namespace ferry {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

KvLenderCandidate Candidate(const std::string& id, int64_t free, int64_t total = 100, absl::Time reported = kT0) {
  KvLenderCandidate c;
  c.worker_id = id;
  c.blocks_free = free;
  c.blocks_total = total;
  c.reported = reported;
  return c;
}

TEST(KvLedgerTest, PicksTheLenderWithMostRoomAndNeverTheOwner) {
  KvLedger ledger(KvLedgerOptions{.lender_keep_fraction = 0});
  auto plan = ledger.Plan("r1", "w1", 30, {Candidate("w1", 100), Candidate("w2", 40), Candidate("w3", 60)}, kT0);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->size(), 1u);
  EXPECT_EQ((*plan)[0].lender_worker_id, "w3");
  EXPECT_EQ((*plan)[0].owner_worker_id, "w1");
  EXPECT_EQ((*plan)[0].num_blocks, 30);
  // Planning changes nothing.
  EXPECT_EQ(ledger.num_leases(), 0);
}

TEST(KvLedgerTest, SplitsAcrossLendersAndKeepsTheirReserve) {
  KvLedger ledger(KvLedgerOptions{.lender_keep_fraction = 0.1});
  // Room: w2 has 50 - 10 kept = 40, w3 has 30 - 10 = 20.
  auto plan = ledger.Plan("r1", "w1", 55, {Candidate("w2", 50), Candidate("w3", 30)}, kT0);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->size(), 2u);
  EXPECT_EQ((*plan)[0].lender_worker_id, "w2");
  EXPECT_EQ((*plan)[0].num_blocks, 40);
  EXPECT_EQ((*plan)[1].lender_worker_id, "w3");
  EXPECT_EQ((*plan)[1].num_blocks, 15);
  EXPECT_NE((*plan)[0].lease_id, (*plan)[1].lease_id);
  auto too_many = ledger.Plan("r2", "w1", 61, {Candidate("w2", 50), Candidate("w3", 30)}, kT0);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ledger.counts().borrow_refused, 1);
}

TEST(KvLedgerTest, BlocksLentSinceTheLastReportCountAsUsed) {
  KvLedger ledger(KvLedgerOptions{.lender_keep_fraction = 0});
  auto first = ledger.Plan("r1", "w1", 30, {Candidate("w2", 40)}, kT0 + absl::Seconds(1));
  ASSERT_TRUE(first.ok());
  ledger.Record(*first);
  EXPECT_EQ(ledger.BlocksLentBy("w2"), 30);
  EXPECT_EQ(ledger.BlocksBorrowedBy("w1"), 30);
  // The report from before the lease still says 40 free: only 10 are left.
  auto second = ledger.Plan("r2", "w1", 11, {Candidate("w2", 40)}, kT0 + absl::Seconds(2));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  // A report after the lease already shows the blocks as used.
  auto third = ledger.Plan("r2", "w1", 10, {Candidate("w2", 10, 100, kT0 + absl::Seconds(3))},
                           kT0 + absl::Seconds(4));
  ASSERT_TRUE(third.ok()) << third.status();
  ledger.Record(*third);
  EXPECT_NE((*first)[0].lease_id, (*third)[0].lease_id);
}

TEST(KvLedgerTest, BadRequestsAreRefused) {
  KvLedger ledger;
  EXPECT_EQ(ledger.Plan("r1", "w1", 0, {Candidate("w2", 40)}, kT0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger.Plan("", "w1", 3, {Candidate("w2", 40)}, kT0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger.Plan("r1", "w1", 3, {}, kT0).status().code(), absl::StatusCode::kResourceExhausted);
  auto plan = ledger.Plan("r1", "w1", 3, {Candidate("w2", 40)}, kT0);
  ASSERT_TRUE(plan.ok());
  ledger.Record(*plan);
  EXPECT_EQ(ledger.Plan("r1", "w1", 3, {Candidate("w3", 40)}, kT0).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(KvLedgerTest, ReleasesOnReturnAndOnEitherSideDying) {
  KvLedger ledger(KvLedgerOptions{.lender_keep_fraction = 0, .max_lenders_per_request = 2});
  const std::vector<KvLenderCandidate> all = {Candidate("w1", 20), Candidate("w2", 20), Candidate("w3", 20)};
  auto a = ledger.Plan("ra", "w1", 30, all, kT0);  // w2 + w3
  ASSERT_TRUE(a.ok());
  ledger.Record(*a);
  auto b = ledger.Plan("rb", "w2", 5, {Candidate("w1", 20, 100, kT0 + absl::Seconds(1))}, kT0);
  ASSERT_TRUE(b.ok());
  ledger.Record(*b);
  auto c = ledger.Plan("rc", "w3", 5, {Candidate("w1", 20, 100, kT0 + absl::Seconds(1))}, kT0);
  ASSERT_TRUE(c.ok());
  ledger.Record(*c);
  EXPECT_EQ(ledger.num_leases(), 4);
  EXPECT_EQ(ledger.LeasesOf("ra").size(), 2u);

  // w2 dies: it lent to ra and owned rb.
  std::vector<KvLease> dropped = ledger.DropWorker("w2");
  ASSERT_EQ(dropped.size(), 2u);
  EXPECT_EQ(ledger.counts().leases_released[static_cast<int>(KvReleaseReason::kLenderLost)], 1);
  EXPECT_EQ(ledger.counts().leases_released[static_cast<int>(KvReleaseReason::kOwnerLost)], 1);
  EXPECT_EQ(ledger.LeasesOf("rb").size(), 0u);
  EXPECT_EQ(ledger.LeasesOf("ra").size(), 1u);

  std::vector<KvLease> returned = ledger.ReleaseRequest("ra");
  ASSERT_EQ(returned.size(), 1u);
  EXPECT_EQ(returned[0].lender_worker_id, "w3");
  EXPECT_TRUE(ledger.ReleaseRequest("ra").empty());
  EXPECT_EQ(ledger.ReleaseLease((*c)[0].lease_id).size(), 1u);
  EXPECT_TRUE(ledger.ReleaseLease("lease-unknown").empty());
  EXPECT_EQ(ledger.num_leases(), 0);
  EXPECT_EQ(ledger.BlocksLentBy("w1"), 0);
  EXPECT_EQ(ledger.counts().leases_granted, 4);
  EXPECT_EQ(ledger.counts().leases_released[static_cast<int>(KvReleaseReason::kReturned)], 2);
}

}  // namespace
}  // namespace ferry
