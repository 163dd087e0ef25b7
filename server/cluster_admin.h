// What the gateway's admin endpoints (/admin/cluster, /admin/migrate,
// /admin/drain, /admin/kill) ask of the cluster. The scheduler backend implements it over
// gRPC; a backend that is one worker or one engine has none
// (GenerateBackend::cluster_admin() returns null) and the endpoints say so.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "ferry/v1/scheduler.pb.h"

namespace ferry {

class ClusterAdmin {
 public:
  virtual ~ClusterAdmin() = default;

  // Every worker the scheduler knows, with its load and the requests it runs.
  // Unavailable when the scheduler cannot be reached.
  virtual absl::StatusOr<v1::ListWorkersResponse> ListWorkers() = 0;
  // Moves `request_id` to the worker `to` (its id or address; empty: the
  // scheduler's choice) and returns once the move committed. NotFound
  // (unknown request or worker), FailedPrecondition (not movable now),
  // Aborted or the refusing side's error (the request stays where it was),
  // Unavailable.
  virtual absl::StatusOr<v1::MigrateResponse> Migrate(const std::string& request_id,
                                                      const std::string& to) = 0;
  // Marks `worker` (id or address) draining: it gets no new requests and its
  // requests move out. NotFound for an unknown worker, Unavailable.
  virtual absl::Status Drain(const std::string& worker) = 0;
  // Fault injection: ends the process of `worker` (id or address) abruptly,
  // as a crash would; the cluster recovers its requests as from any crash.
  // NotFound for an unknown worker; FailedPrecondition for a dead worker or
  // one started without --enable-fault-injection; Unavailable.
  virtual absl::StatusOr<v1::KillWorkerResponse> KillWorker(const std::string& worker) = 0;
};

}  // namespace ferry
