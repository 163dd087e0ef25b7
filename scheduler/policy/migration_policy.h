// Which running requests to move, Llumnix-style: a draining worker moves all
// its requests out; otherwise, when the freeness gap between the most and
// the least loaded worker passes a threshold, one request moves from the
// most loaded to the least loaded, lowest priority and least KV first.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "scheduler/policy/cluster_view.h"

namespace ferry {

struct MigrationOptions {
  bool balance = true;            // off: only draining moves requests
  double freeness_gap_threshold = 16;
  int max_in_flight = 4;          // migrations running at once, cluster-wide
  // A request that just moved stays put this long (no ping-pong).
  absl::Duration cooldown = absl::Seconds(2);
};

struct MigrationOrder {
  std::string request_id;
  std::string source_worker_id;
  std::string destination_worker_id;
  std::string reason;  // "drain" or "balance"
};

class MigrationPolicy {
 public:
  explicit MigrationPolicy(const MigrationOptions& options = {}) : options_(options) {}
  const MigrationOptions& options() const { return options_; }

  std::vector<MigrationOrder> Decide(const ClusterView& view, absl::Time now) const;

  // A destination for moving `request` off its worker (the admin's Migrate
  // with no destination): the accepting non-prefill worker with the highest
  // freeness that can hold it. nullopt: none.
  std::optional<std::string> ChooseDestination(const ClusterView& view, const RequestView& request) const;

 private:
  MigrationOptions options_;
};

}  // namespace ferry
