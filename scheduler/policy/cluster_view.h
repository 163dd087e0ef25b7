// What the scheduler's policies see of the cluster: a plain snapshot of the
// workers and the requests on them, built by the service on each decision.
// Nothing here talks to a worker; tests build views by hand.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace ferry {

enum class WorkerRoleKind { kMixed, kPrefill, kDecode };

// The last load a worker reported, plus what the scheduler sent it since
// (so a burst between two heartbeats does not all land on one worker).
struct WorkerLoad {
  int64_t blocks_free = 0;
  int64_t blocks_total = 0;
  int running_requests = 0;
  int waiting_requests = 0;
  int64_t blocks_needed_waiting = 0;
  double tokens_per_second = 0;
  int64_t cached_blocks = 0;
  int64_t kv_bytes_per_block = 0;          // 0: not reported
  double prefill_tokens_per_second = 0;    // 0: not measured yet
  // Dispatched by the scheduler after the report was taken.
  int pending_requests = 0;
  int64_t pending_blocks = 0;
};

// Llumnix's freeness: KV blocks left per running request once the waiting
// (and pending) requests are admitted. Negative when the queue needs more
// blocks than are free. Higher means less loaded.
double Freeness(const WorkerLoad& load);

struct WorkerView {
  std::string worker_id;
  std::string address;
  WorkerRoleKind role = WorkerRoleKind::kMixed;
  WorkerLoad load;
  bool alive = true;
  bool draining = false;
  absl::Time last_heartbeat = absl::InfinitePast();
  // Requests the scheduler has placed on this worker and not seen finish.
  int num_assigned = 0;
};

// A request (one sample) running on a worker, as migration sees it.
struct RequestView {
  std::string request_id;
  std::string worker_id;
  int priority = 0;            // higher is more important
  int64_t num_tokens = 0;      // prompt plus generated so far
  int64_t num_blocks = 0;      // KV blocks it holds (estimated)
  bool migratable = true;      // false for n > 1 and finished samples
  bool migrating = false;      // a migration is in flight
  absl::Time last_migrated = absl::InfinitePast();
};

struct ClusterView {
  std::vector<WorkerView> workers;
  std::vector<RequestView> requests;

  const WorkerView* FindWorker(const std::string& worker_id) const;
  // A copy that keeps only the workers `keep` accepts (requests are kept).
  ClusterView FilterWorkers(const std::function<bool(const WorkerView&)>& keep) const;
};

// A worker that may receive new requests: alive and not draining.
bool AcceptsNewWork(const WorkerView& w);

// Blocks a sequence of `num_tokens` tokens occupies (rounded up).
int64_t BlocksForTokens(int64_t num_tokens, int block_size);

}  // namespace ferry
