// The scheduler's ledger of borrowed KV blocks (DistAttention): which worker
// lends how many blocks to which owner for which request. Pure bookkeeping on
// times the caller passes in: planning never changes anything (a failed plan
// leaves the ledger as it was), Record applies a plan, and the Release calls
// return the leases they drop so the service can tell the lenders.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ferry {

struct KvLease {
  std::string lease_id;
  std::string request_id;
  std::string owner_worker_id;   // runs the request, holds the first positions
  std::string lender_worker_id;  // holds `num_blocks` blocks of it
  int64_t num_blocks = 0;
  absl::Time granted;
};

// A worker that may lend, as its last load report shows it.
struct KvLenderCandidate {
  std::string worker_id;
  int64_t blocks_free = 0;           // free KV blocks in the report
  int64_t blocks_total = 0;
  int64_t blocks_needed_waiting = 0; // its own queue comes first
  absl::Time reported;               // when that report arrived
};

struct KvLedgerOptions {
  // A lender keeps this fraction of its blocks (rounded up) for its own work.
  double lender_keep_fraction = 0.1;
  // Most lenders one request may borrow from.
  int max_lenders_per_request = 4;
};

enum class KvReleaseReason { kReturned, kOwnerLost, kLenderLost };
inline constexpr int kNumKvReleaseReasons = 3;
const char* KvReleaseReasonName(KvReleaseReason reason);

struct KvLedgerCounts {
  int64_t leases_granted = 0;
  int64_t blocks_granted = 0;
  int64_t borrow_refused = 0;  // plans that found too few blocks
  int64_t leases_released[kNumKvReleaseReasons] = {};
};

class KvLedger {
 public:
  explicit KvLedger(const KvLedgerOptions& options = {}) : options_(options) {}

  // Leases for `num_blocks` blocks of `request_id` run by `owner`, from the
  // candidates with the most room first (never the owner, never a dead one;
  // the caller passes live workers only). Blocks lent since a candidate's last
  // report count as used. Nothing changes. InvalidArgument for num_blocks <= 0
  // or an empty id; AlreadyExists when the request already borrows;
  // ResourceExhausted (counted) when the cluster has too few blocks to lend.
  absl::StatusOr<std::vector<KvLease>> Plan(const std::string& request_id, const std::string& owner,
                                            int64_t num_blocks, const std::vector<KvLenderCandidate>& candidates,
                                            absl::Time now);
  // Applies a plan (leases whose lenders took the blocks).
  void Record(const std::vector<KvLease>& leases);
  // The request ended (finished, cancelled, failed): its leases go.
  std::vector<KvLease> ReleaseRequest(const std::string& request_id);
  // One lease goes (a lender refused after planning). Nothing if unknown.
  std::vector<KvLease> ReleaseLease(const std::string& lease_id);
  // A worker died: every lease it owns or lends goes.
  std::vector<KvLease> DropWorker(const std::string& worker_id);

  int64_t BlocksLentBy(const std::string& worker_id) const;
  int64_t BlocksBorrowedBy(const std::string& worker_id) const;
  std::vector<KvLease> LeasesOf(const std::string& request_id) const;
  std::vector<KvLease> All() const;
  int64_t num_leases() const { return static_cast<int64_t>(leases_.size()); }
  const KvLedgerCounts& counts() const { return counts_; }

 private:
  std::vector<KvLease> Remove(const std::vector<std::string>& lease_ids, KvReleaseReason reason);

  KvLedgerOptions options_;
  std::map<std::string, KvLease> leases_;  // by lease id
  int64_t next_lease_ = 1;
  KvLedgerCounts counts_;
};

}  // namespace ferry
