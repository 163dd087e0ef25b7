// The scheduler's table of workers: registration with incarnations,
// heartbeats, silence timeouts and draining. Pure bookkeeping on times the
// caller passes in; called from the scheduler's event-loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/policy/cluster_view.h"

namespace ferry {

struct WorkerRegistration {
  std::string address;         // host:port the worker serves on
  WorkerRoleKind role = WorkerRoleKind::kMixed;
  std::string model_id;
  std::string incarnation_id;  // new on every process start
  int block_size = 0;          // tokens per KV block; 0: unknown
  uint64_t block_hash_root = 0;  // parent hash of a prompt's first block; 0: unknown
};

struct WorkerRecord {
  std::string worker_id;
  WorkerRegistration registration;
  WorkerLoad load;
  bool alive = true;
  bool draining = false;
  // A stream to it just broke: no new work until its next heartbeat shows
  // it is still there.
  bool suspect = false;
  absl::Time registered;
  absl::Time last_heartbeat;
  absl::Time died = absl::InfiniteFuture();
};

struct WorkerRegistryOptions {
  absl::Duration worker_timeout = absl::Seconds(1);
  // Dead workers stay listed (alive=false) this long, then are forgotten.
  absl::Duration forget_after = absl::Minutes(1);
};

struct RegisterResult {
  std::string worker_id;
  // Workers this registration replaces (same address, older incarnation):
  // they are dead now and their requests need recovery.
  std::vector<std::string> replaced;
};

class WorkerRegistry {
 public:
  explicit WorkerRegistry(const WorkerRegistryOptions& options = {}) : options_(options) {}

  // InvalidArgument for an empty address or incarnation id. The same address
  // and incarnation registering again (after a timeout) gets its old id back.
  absl::StatusOr<RegisterResult> Register(const WorkerRegistration& registration, absl::Time now);
  // NotFound (the worker must register again) for an unknown or dead id or
  // another incarnation. Resets what was dispatched since the last report.
  absl::StatusOr<const WorkerRecord*> Heartbeat(const std::string& worker_id, const std::string& incarnation_id,
                                                const WorkerLoad& load, absl::Time now);
  // Marks workers silent for longer than the timeout dead; returns their ids.
  std::vector<std::string> ExpireSilent(absl::Time now);
  // Marks a worker dead at once (its connection broke for good).
  void MarkDead(const std::string& worker_id, absl::Time now);
  void MarkSuspect(const std::string& worker_id);
  // NotFound for an unknown id.
  absl::Status SetDraining(const std::string& worker_id, bool draining);
  // Counts a request sent to the worker until its next report.
  void AddPending(const std::string& worker_id, int64_t blocks);

  const WorkerRecord* Find(const std::string& worker_id) const;
  // The live worker serving at `address`, if any.
  const WorkerRecord* FindByAddress(const std::string& address) const;
  std::vector<const WorkerRecord*> All() const;
  const WorkerRegistryOptions& options() const { return options_; }

 private:
  WorkerRegistryOptions options_;
  std::map<std::string, WorkerRecord> workers_;  // by id, ordered for listing
  int64_t next_id_ = 1;
};

}  // namespace ferry
