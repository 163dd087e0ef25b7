#include "scheduler/policy/migration_tracker.h"

#include "absl/strings/str_cat.h"

namespace ferry {

std::string_view MigrationAbortReasonName(MigrationAbortReason reason) {
  switch (reason) {
    case MigrationAbortReason::kRefused: return "refused";
    case MigrationAbortReason::kSourceLost: return "source_lost";
    case MigrationAbortReason::kDestinationLost: return "destination_lost";
    case MigrationAbortReason::kRequestFinished: return "request_finished";
    case MigrationAbortReason::kTimeout: return "timeout";
  }
  return "unknown";
}

absl::Status MigrationTracker::Start(const std::string& request_id, const std::string& source,
                                     const std::string& destination, std::string trigger, absl::Time now) {
  if (source == destination) {
    return absl::InvalidArgumentError(absl::StrCat("request ", request_id, " is already on ", source));
  }
  if (in_flight_.contains(request_id)) {
    return absl::AlreadyExistsError(absl::StrCat("request ", request_id, " is already migrating"));
  }
  in_flight_.emplace(request_id, MigrationRecord{request_id, source, destination, std::move(trigger), now});
  ++counts_.started;
  return absl::OkStatus();
}

absl::StatusOr<MigrationRecord> MigrationTracker::Commit(const std::string& request_id, absl::Time now) {
  auto it = in_flight_.find(request_id);
  if (it == in_flight_.end()) {
    return absl::NotFoundError(absl::StrCat("no migration in flight for ", request_id));
  }
  MigrationRecord r = std::move(it->second);
  in_flight_.erase(it);
  ++counts_.committed;
  return r;
}

MigrationRecord MigrationTracker::Remove(const std::string& request_id, MigrationAbortReason reason) {
  auto it = in_flight_.find(request_id);
  MigrationRecord r = std::move(it->second);
  in_flight_.erase(it);
  ++counts_.aborted[static_cast<int>(reason)];
  return r;
}

absl::StatusOr<MigrationRecord> MigrationTracker::Abort(const std::string& request_id,
                                                        MigrationAbortReason reason, absl::Time now) {
  if (!in_flight_.contains(request_id)) {
    return absl::NotFoundError(absl::StrCat("no migration in flight for ", request_id));
  }
  return Remove(request_id, reason);
}

std::vector<MigrationRecord> MigrationTracker::OnWorkerLost(const std::string& worker_id, absl::Time now) {
  std::vector<std::pair<std::string, MigrationAbortReason>> hit;
  for (const auto& [id, r] : in_flight_) {
    if (r.source_worker_id == worker_id) hit.emplace_back(id, MigrationAbortReason::kSourceLost);
    else if (r.destination_worker_id == worker_id) hit.emplace_back(id, MigrationAbortReason::kDestinationLost);
  }
  std::vector<MigrationRecord> out;
  for (const auto& [id, reason] : hit) out.push_back(Remove(id, reason));
  return out;
}

std::vector<MigrationRecord> MigrationTracker::Expire(absl::Time now) {
  std::vector<std::string> hit;
  for (const auto& [id, r] : in_flight_) {
    if (now - r.started >= options_.timeout) hit.push_back(id);
  }
  std::vector<MigrationRecord> out;
  for (const std::string& id : hit) out.push_back(Remove(id, MigrationAbortReason::kTimeout));
  return out;
}

const MigrationRecord* MigrationTracker::Find(const std::string& request_id) const {
  auto it = in_flight_.find(request_id);
  return it == in_flight_.end() ? nullptr : &it->second;
}

}  // namespace ferry
