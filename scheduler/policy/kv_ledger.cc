#include "scheduler/policy/kv_ledger.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace ferry {

const char* KvReleaseReasonName(KvReleaseReason reason) {
  switch (reason) {
    case KvReleaseReason::kReturned: return "returned";
    case KvReleaseReason::kOwnerLost: return "owner_lost";
    case KvReleaseReason::kLenderLost: return "lender_lost";
  }
  return "unknown";
}

absl::StatusOr<std::vector<KvLease>> KvLedger::Plan(const std::string& request_id, const std::string& owner,
                                                    int64_t num_blocks,
                                                    const std::vector<KvLenderCandidate>& candidates,
                                                    absl::Time now) {
  if (request_id.empty() || owner.empty()) return absl::InvalidArgumentError("borrowing needs a request and an owner");
  if (num_blocks <= 0) return absl::InvalidArgumentError(absl::StrCat("cannot borrow ", num_blocks, " blocks"));
  for (const auto& [id, lease] : leases_) {
    if (lease.request_id == request_id) {
      return absl::AlreadyExistsError(absl::StrCat("request ", request_id, " already borrows KV blocks"));
    }
  }
  struct Room {
    const KvLenderCandidate* worker;
    int64_t blocks;
  };
  std::vector<Room> rooms;
  for (const KvLenderCandidate& c : candidates) {
    if (c.worker_id == owner) continue;
    const int64_t keep = static_cast<int64_t>(std::ceil(c.blocks_total * options_.lender_keep_fraction));
    int64_t room = c.blocks_free - c.blocks_needed_waiting - keep;
    // Leases granted after the report are not in its free count yet.
    for (const auto& [id, lease] : leases_) {
      if (lease.lender_worker_id == c.worker_id && lease.granted >= c.reported) room -= lease.num_blocks;
    }
    if (room > 0) rooms.push_back({&c, room});
  }
  std::sort(rooms.begin(), rooms.end(), [](const Room& a, const Room& b) {
    return a.blocks != b.blocks ? a.blocks > b.blocks : a.worker->worker_id < b.worker->worker_id;
  });
  std::vector<KvLease> plan;
  int64_t left = num_blocks;
  int64_t next = next_lease_;
  for (const Room& r : rooms) {
    if (left == 0 || static_cast<int>(plan.size()) == options_.max_lenders_per_request) break;
    KvLease lease;
    lease.lease_id = absl::StrCat("lease-", next++);
    lease.request_id = request_id;
    lease.owner_worker_id = owner;
    lease.lender_worker_id = r.worker->worker_id;
    lease.num_blocks = std::min(left, r.blocks);
    lease.granted = now;
    left -= lease.num_blocks;
    plan.push_back(std::move(lease));
  }
  if (left > 0) {
    ++counts_.borrow_refused;
    return absl::ResourceExhaustedError(absl::StrCat("the cluster has ", num_blocks - left, " KV blocks to lend, ",
                                                     num_blocks, " are needed"));
  }
  return plan;
}

void KvLedger::Record(const std::vector<KvLease>& leases) {
  for (const KvLease& lease : leases) {
    int64_t number = 0;
    if (lease.lease_id.rfind("lease-", 0) == 0) {
      number = std::atoll(lease.lease_id.c_str() + 6);
    }
    next_lease_ = std::max(next_lease_, number + 1);
    ++counts_.leases_granted;
    counts_.blocks_granted += lease.num_blocks;
    leases_[lease.lease_id] = lease;
  }
}

std::vector<KvLease> KvLedger::Remove(const std::vector<std::string>& lease_ids, KvReleaseReason reason) {
  std::vector<KvLease> out;
  for (const std::string& id : lease_ids) {
    auto it = leases_.find(id);
    if (it == leases_.end()) continue;
    out.push_back(std::move(it->second));
    leases_.erase(it);
    ++counts_.leases_released[static_cast<int>(reason)];
  }
  return out;
}

std::vector<KvLease> KvLedger::ReleaseRequest(const std::string& request_id) {
  std::vector<std::string> ids;
  for (const auto& [id, lease] : leases_) {
    if (lease.request_id == request_id) ids.push_back(id);
  }
  return Remove(ids, KvReleaseReason::kReturned);
}

std::vector<KvLease> KvLedger::ReleaseLease(const std::string& lease_id) {
  return Remove({lease_id}, KvReleaseReason::kReturned);
}

std::vector<KvLease> KvLedger::DropWorker(const std::string& worker_id) {
  std::vector<std::string> as_lender, as_owner;
  for (const auto& [id, lease] : leases_) {
    if (lease.lender_worker_id == worker_id) as_lender.push_back(id);
    else if (lease.owner_worker_id == worker_id) as_owner.push_back(id);
  }
  std::vector<KvLease> out = Remove(as_lender, KvReleaseReason::kLenderLost);
  std::vector<KvLease> owned = Remove(as_owner, KvReleaseReason::kOwnerLost);
  out.insert(out.end(), owned.begin(), owned.end());
  return out;
}

int64_t KvLedger::BlocksLentBy(const std::string& worker_id) const {
  int64_t n = 0;
  for (const auto& [id, lease] : leases_) n += lease.lender_worker_id == worker_id ? lease.num_blocks : 0;
  return n;
}

int64_t KvLedger::BlocksBorrowedBy(const std::string& worker_id) const {
  int64_t n = 0;
  for (const auto& [id, lease] : leases_) n += lease.owner_worker_id == worker_id ? lease.num_blocks : 0;
  return n;
}

std::vector<KvLease> KvLedger::LeasesOf(const std::string& request_id) const {
  std::vector<KvLease> out;
  for (const auto& [id, lease] : leases_) {
    if (lease.request_id == request_id) out.push_back(lease);
  }
  return out;
}

std::vector<KvLease> KvLedger::All() const {
  std::vector<KvLease> out;
  for (const auto& [id, lease] : leases_) out.push_back(lease);
  return out;
}

}  // namespace ferry
