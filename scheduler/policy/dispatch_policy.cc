#include "scheduler/policy/dispatch_policy.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace ferry {
namespace {

std::vector<const WorkerView*> Accepting(const ClusterView& view) {
  std::vector<const WorkerView*> out;
  for (const WorkerView& w : view.workers) {
    if (AcceptsNewWork(w)) out.push_back(&w);
  }
  return out;
}

absl::Status NoWorker() { return absl::UnavailableError("no worker accepts new requests"); }

int QueueLength(const WorkerView& w) { return w.load.waiting_requests + w.load.pending_requests; }

}  // namespace

absl::StatusOr<DispatchDecision> RoundRobinPolicy::Decide(const ClusterView& view, const DispatchRequest& request,
                                                          absl::Time now) {
  std::vector<const WorkerView*> workers = Accepting(view);
  if (workers.empty()) return NoWorker();
  std::sort(workers.begin(), workers.end(),
            [](const WorkerView* a, const WorkerView* b) { return a->worker_id < b->worker_id; });
  // The first id after the last one chosen, so joins and leaves do not reset
  // the rotation.
  const WorkerView* pick = workers.front();
  for (const WorkerView* w : workers) {
    if (w->worker_id > last_worker_id_) {
      pick = w;
      break;
    }
  }
  last_worker_id_ = pick->worker_id;
  return DispatchDecision{pick->worker_id, "round-robin"};
}

absl::StatusOr<DispatchDecision> LeastLoadedPolicy::Decide(const ClusterView& view, const DispatchRequest& request,
                                                           absl::Time now) {
  const WorkerView* best = nullptr;
  double best_freeness = 0;
  for (const WorkerView* w : Accepting(view)) {
    const double f = Freeness(w->load);
    const bool better = best == nullptr || f > best_freeness ||
                        (f == best_freeness && (w->num_assigned < best->num_assigned ||
                                                (w->num_assigned == best->num_assigned &&
                                                 w->worker_id < best->worker_id)));
    if (better) {
      best = w;
      best_freeness = f;
    }
  }
  if (best == nullptr) return NoWorker();
  return DispatchDecision{best->worker_id, "least-loaded"};
}

absl::StatusOr<DispatchDecision> PrefixAwarePolicy::Decide(const ClusterView& view, const DispatchRequest& request,
                                                           absl::Time now) {
  auto balanced = least_loaded_.Decide(view, request, now);
  if (!balanced.ok()) return balanced.status();
  const WorkerView* best = view.FindWorker(balanced->worker_id);

  const WorkerView* match = nullptr;
  int64_t match_blocks = 0;
  for (const WorkerView* w : Accepting(view)) {
    auto it = request.cached_prefix_blocks.find(w->worker_id);
    if (it == request.cached_prefix_blocks.end()) continue;
    if (it->second > match_blocks || (it->second == match_blocks && match != nullptr &&
                                      Freeness(w->load) > Freeness(match->load))) {
      match = w;
      match_blocks = it->second;
    }
  }
  if (match == nullptr || match_blocks < options_.min_match_blocks) return balanced;
  if (match == best) return DispatchDecision{match->worker_id, "prefix-hit"};

  // Short of room: well below the least-loaded worker and little left in
  // absolute terms. A gap alone is no reason to miss the cache: on a quiet
  // cluster every worker has plenty and the gaps are large.
  const double match_free = Freeness(match->load);
  const bool too_loaded = (match_free < Freeness(best->load) - options_.max_freeness_gap &&
                           match_free < options_.max_freeness_gap) ||
                          QueueLength(*match) > QueueLength(*best) + options_.max_queue_gap ||
                          (Freeness(match->load) <= 0 && Freeness(best->load) > 0);
  if (too_loaded) return DispatchDecision{best->worker_id, "prefix-overloaded"};
  return DispatchDecision{match->worker_id, "prefix-hit"};
}

absl::StatusOr<std::unique_ptr<DispatchPolicy>> MakeDispatchPolicy(std::string_view name) {
  if (name == "round-robin") return std::make_unique<RoundRobinPolicy>();
  if (name == "least-loaded") return std::make_unique<LeastLoadedPolicy>();
  if (name == "prefix-aware") return std::make_unique<PrefixAwarePolicy>();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dispatch policy '", Sv(name), "' (round-robin, least-loaded or prefix-aware)"));
}

}  // namespace ferry
