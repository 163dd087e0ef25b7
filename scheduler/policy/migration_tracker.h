// The scheduler's side of each live migration, as a small state machine on
// an injected clock: started (MigrateOut sent) -> committed (the source's
// stream ended with MIGRATED and the destination took over) or aborted (the
// source refused, a side was lost, the request finished first, or it took too
// long). Pure bookkeeping: the service acts on what these calls return.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ferry {

enum class MigrationAbortReason {
  kRefused,          // MigrateOut answered migrated=false (destination full, ...)
  kSourceLost,       // the source died or its stream broke
  kDestinationLost,  // the destination died before the hand-over
  kRequestFinished,  // finished or cancelled before the hand-over
  kTimeout,          // no outcome within MigrationTrackerOptions::timeout
};
inline constexpr int kNumMigrationAbortReasons = 5;
std::string_view MigrationAbortReasonName(MigrationAbortReason reason);

struct MigrationRecord {
  std::string request_id;
  std::string source_worker_id;
  std::string destination_worker_id;
  std::string trigger;  // "drain", "balance", "pd", "admin"
  absl::Time started;
};

struct MigrationCounts {
  int64_t started = 0;
  int64_t committed = 0;
  std::array<int64_t, kNumMigrationAbortReasons> aborted{};
};

struct MigrationTrackerOptions {
  absl::Duration timeout = absl::Seconds(30);
};

class MigrationTracker {
 public:
  explicit MigrationTracker(const MigrationTrackerOptions& options = {}) : options_(options) {}

  // AlreadyExists when `request_id` is already migrating; InvalidArgument when
  // source and destination are the same worker.
  absl::Status Start(const std::string& request_id, const std::string& source, const std::string& destination,
                     std::string trigger, absl::Time now);
  // The hand-over happened. NotFound when no migration is in flight for it.
  absl::StatusOr<MigrationRecord> Commit(const std::string& request_id, absl::Time now);
  // NotFound when no migration is in flight for it.
  absl::StatusOr<MigrationRecord> Abort(const std::string& request_id, MigrationAbortReason reason,
                                        absl::Time now);
  // Aborts every migration from or to `worker_id`.
  std::vector<MigrationRecord> OnWorkerLost(const std::string& worker_id, absl::Time now);
  // Aborts the migrations older than the timeout.
  std::vector<MigrationRecord> Expire(absl::Time now);

  const MigrationRecord* Find(const std::string& request_id) const;
  size_t num_in_flight() const { return in_flight_.size(); }
  const MigrationCounts& counts() const { return counts_; }

 private:
  MigrationRecord Remove(const std::string& request_id, MigrationAbortReason reason);

  MigrationTrackerOptions options_;
  absl::flat_hash_map<std::string, MigrationRecord> in_flight_;
  MigrationCounts counts_;
};

}  // namespace ferry
