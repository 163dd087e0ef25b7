// What the scheduler takes from its workers' messages (RegisterWorker and
// Heartbeat): the trust boundary between a peer's bytes and the registry,
// the prefix index and the policies. A worker may be buggy, or another
// build, or (without mTLS) not a worker at all; whatever a message holds,
// what comes out of here is within range.
#pragma once

#include <map>
#include <string>

#include "ferry/v1/scheduler.pb.h"
#include "scheduler/policy/cluster_view.h"
#include "scheduler/policy/prefix_index.h"
#include "scheduler/service/worker_registry.h"

namespace ferry {

WorkerRoleKind RoleKindFromProto(v1::WorkerRole role);
v1::WorkerRole RoleToProto(WorkerRoleKind role);

// Unknown roles are mixed; a negative block size is unknown (0).
WorkerRegistration RegistrationFromProto(const v1::RegisterWorkerRequest& request);

// Counts below 0 read as 0 and free blocks as at most the total (when the
// total is known); a rate that is negative, NaN or infinite reads as 0 (not
// measured), so no policy ever compares a NaN.
WorkerLoad LoadFromProto(const v1::LoadReport& report);
// A worker's load as ListWorkers reports it: every figure LoadFromProto
// reads (no block hashes, nothing dispatched since the report).
v1::LoadReport LoadToProto(const WorkerLoad& load);

// The prefix-cache changes a heartbeat of `worker` reports, into `index`:
// a reset first drops what the index held for it; stored hashes are added,
// then removed ones taken out (the worker sends the net change, so no hash
// is in both). Nothing for a worker on another hash chain root (0).
void ApplyBlockHashes(const WorkerRecord& worker, const v1::LoadReport& load, PrefixIndex& index);

// One view per live, unsuspected worker of `registry`, in registry order,
// with the number of requests `assigned` to it.
void AddWorkerViews(const WorkerRegistry& registry, const std::map<std::string, int>& assigned,
                    ClusterView& view);

}  // namespace ferry
