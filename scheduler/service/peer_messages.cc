#include "scheduler/service/peer_messages.h"

#include <algorithm>
#include <cmath>
#include <span>

namespace ferry {
namespace {

int64_t NonNegative(int64_t v) { return std::max<int64_t>(v, 0); }

double Rate(double v) { return std::isfinite(v) && v > 0 ? v : 0; }

}  // namespace

WorkerRoleKind RoleKindFromProto(v1::WorkerRole role) {
  switch (role) {
    case v1::WORKER_ROLE_PREFILL: return WorkerRoleKind::kPrefill;
    case v1::WORKER_ROLE_DECODE: return WorkerRoleKind::kDecode;
    default: return WorkerRoleKind::kMixed;
  }
}

v1::WorkerRole RoleToProto(WorkerRoleKind role) {
  switch (role) {
    case WorkerRoleKind::kPrefill: return v1::WORKER_ROLE_PREFILL;
    case WorkerRoleKind::kDecode: return v1::WORKER_ROLE_DECODE;
    case WorkerRoleKind::kMixed: return v1::WORKER_ROLE_MIXED;
  }
  return v1::WORKER_ROLE_MIXED;
}

WorkerRegistration RegistrationFromProto(const v1::RegisterWorkerRequest& request) {
  WorkerRegistration reg;
  reg.address = request.address();
  reg.role = RoleKindFromProto(request.role());
  reg.model_id = request.model_id();
  reg.incarnation_id = request.incarnation_id();
  reg.block_size = std::max(request.kv_layout().block_size(), 0);
  reg.block_hash_root = request.block_hash_root();
  return reg;
}

WorkerLoad LoadFromProto(const v1::LoadReport& r) {
  WorkerLoad l;
  l.blocks_total = NonNegative(r.blocks_total());
  l.blocks_free = NonNegative(r.blocks_free());
  if (l.blocks_total > 0) l.blocks_free = std::min(l.blocks_free, l.blocks_total);
  l.running_requests = std::max(r.running_requests(), 0);
  l.waiting_requests = std::max(r.waiting_requests(), 0);
  l.blocks_needed_waiting = NonNegative(r.blocks_needed_waiting());
  l.tokens_per_second = Rate(r.tokens_per_second());
  l.kv_bytes_per_block = NonNegative(r.kv_bytes_per_block());
  l.prefill_tokens_per_second = Rate(r.prefill_tokens_per_second());
  l.cached_blocks = NonNegative(r.cached_blocks());
  return l;
}

v1::LoadReport LoadToProto(const WorkerLoad& load) {
  v1::LoadReport r;
  r.set_blocks_free(load.blocks_free);
  r.set_blocks_total(load.blocks_total);
  r.set_running_requests(load.running_requests);
  r.set_waiting_requests(load.waiting_requests);
  r.set_blocks_needed_waiting(load.blocks_needed_waiting);
  r.set_tokens_per_second(load.tokens_per_second);
  r.set_kv_bytes_per_block(load.kv_bytes_per_block);
  r.set_prefill_tokens_per_second(load.prefill_tokens_per_second);
  r.set_cached_blocks(load.cached_blocks);
  return r;
}

void ApplyBlockHashes(const WorkerRecord& worker, const v1::LoadReport& load, PrefixIndex& index) {
  // Hashes on another chain root than ours could never match a prompt.
  if (worker.registration.block_hash_root == 0) return;
  if (load.block_hashes_reset()) index.DropWorker(worker.worker_id);
  index.Insert(worker.worker_id, std::span(load.stored_block_hashes().data(), load.stored_block_hashes_size()));
  index.Remove(worker.worker_id, std::span(load.removed_block_hashes().data(), load.removed_block_hashes_size()));
}

void AddWorkerViews(const WorkerRegistry& registry, const std::map<std::string, int>& assigned,
                    ClusterView& view) {
  for (const WorkerRecord* w : registry.All()) {
    if (!w->alive || w->suspect) continue;
    WorkerView v;
    v.worker_id = w->worker_id;
    v.address = w->registration.address;
    v.role = w->registration.role;
    v.load = w->load;
    v.alive = w->alive;
    v.draining = w->draining;
    v.last_heartbeat = w->last_heartbeat;
    auto it = assigned.find(w->worker_id);
    v.num_assigned = it == assigned.end() ? 0 : it->second;
    view.workers.push_back(std::move(v));
  }
}

}  // namespace ferry
