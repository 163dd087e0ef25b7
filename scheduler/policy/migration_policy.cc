#include "scheduler/policy/migration_policy.h"

#include <algorithm>
#include <map>

namespace ferry {
namespace {

bool CanReceive(const WorkerView& w) { return AcceptsNewWork(w) && w.role != WorkerRoleKind::kPrefill; }

int64_t Room(const WorkerLoad& l) { return l.blocks_free - l.blocks_needed_waiting - l.pending_blocks; }

// Applies a move of `r` from `src` to `dst` to the loads, so later choices in
// the same round see it.
void ApplyMove(const RequestView& r, WorkerLoad& src, WorkerLoad& dst) {
  src.blocks_free += r.num_blocks;
  src.running_requests = std::max(0, src.running_requests - 1);
  dst.pending_blocks += r.num_blocks;
  dst.pending_requests += 1;
}

// Lowest priority first, then the least KV (cheapest to move).
bool MoveFirst(const RequestView* a, const RequestView* b) {
  if (a->priority != b->priority) return a->priority < b->priority;
  if (a->num_blocks != b->num_blocks) return a->num_blocks < b->num_blocks;
  return a->request_id < b->request_id;
}

WorkerView* BestDestination(std::vector<WorkerView>& workers, const RequestView& r) {
  WorkerView* best = nullptr;
  for (WorkerView& w : workers) {
    if (!CanReceive(w) || w.worker_id == r.worker_id || Room(w.load) < r.num_blocks) continue;
    if (best == nullptr || Freeness(w.load) > Freeness(best->load)) best = &w;
  }
  return best;
}

}  // namespace

std::vector<MigrationOrder> MigrationPolicy::Decide(const ClusterView& view, absl::Time now) const {
  std::vector<MigrationOrder> orders;
  int budget = options_.max_in_flight;
  std::map<std::string, std::vector<const RequestView*>> movable;
  for (const RequestView& r : view.requests) {
    if (r.migrating) --budget;
    if (r.migrating || !r.migratable || now - r.last_migrated < options_.cooldown) continue;
    movable[r.worker_id].push_back(&r);
  }
  for (auto& [id, list] : movable) std::sort(list.begin(), list.end(), MoveFirst);
  std::vector<WorkerView> workers = view.workers;

  // Draining workers first: everything goes.
  for (WorkerView& src : workers) {
    if (!src.alive || !src.draining) continue;
    for (const RequestView* r : movable[src.worker_id]) {
      if (budget <= 0) return orders;
      WorkerView* dst = BestDestination(workers, *r);
      if (dst == nullptr) continue;
      ApplyMove(*r, src.load, dst->load);
      orders.push_back({r->request_id, src.worker_id, dst->worker_id, "drain"});
      --budget;
    }
  }
  if (!options_.balance) return orders;

  // Balance: at most one request per source per round.
  std::vector<WorkerView*> sources;
  for (WorkerView& w : workers) {
    if (AcceptsNewWork(w) && w.role != WorkerRoleKind::kPrefill && !movable[w.worker_id].empty()) {
      sources.push_back(&w);
    }
  }
  std::sort(sources.begin(), sources.end(),
            [](const WorkerView* a, const WorkerView* b) { return Freeness(a->load) < Freeness(b->load); });
  for (WorkerView* src : sources) {
    if (budget <= 0) break;
    for (const RequestView* r : movable[src->worker_id]) {
      WorkerView* dst = BestDestination(workers, *r);
      if (dst == nullptr) continue;
      if (Freeness(dst->load) - Freeness(src->load) < options_.freeness_gap_threshold) break;
      WorkerLoad src_after = src->load, dst_after = dst->load;
      ApplyMove(*r, src_after, dst_after);
      if (Freeness(dst_after) < Freeness(src_after)) continue;  // would just swap the imbalance
      src->load = src_after;
      dst->load = dst_after;
      orders.push_back({r->request_id, src->worker_id, dst->worker_id, "balance"});
      --budget;
      break;
    }
  }
  return orders;
}

std::optional<std::string> MigrationPolicy::ChooseDestination(const ClusterView& view,
                                                              const RequestView& request) const {
  std::vector<WorkerView> workers = view.workers;
  WorkerView* dst = BestDestination(workers, request);
  if (dst == nullptr) return std::nullopt;
  return dst->worker_id;
}

}  // namespace ferry
