#include "scheduler/policy/disaggregation_policy.h"

namespace ferry {
namespace {

bool HasAccepting(const ClusterView& view, WorkerRoleKind role) {
  for (const WorkerView& w : view.workers) {
    if (AcceptsNewWork(w) && w.role == role) return true;
  }
  return false;
}

ClusterView OnlyRole(const ClusterView& view, WorkerRoleKind role) {
  return view.FilterWorkers([role](const WorkerView& w) { return w.role == role; });
}

}  // namespace

absl::StatusOr<Placement> DisaggregationPolicy::Place(const ClusterView& view, const DispatchRequest& request,
                                                      absl::Time now) {
  const bool long_prompt = request.num_prompt_tokens >= options_.min_prompt_tokens;
  if (options_.enabled && long_prompt && HasAccepting(view, WorkerRoleKind::kPrefill)) {
    auto d = dispatch_->Decide(OnlyRole(view, WorkerRoleKind::kPrefill), request, now);
    if (!d.ok()) return d.status();
    const bool hand_off = request.num_samples == 1;
    return Placement{d->worker_id, hand_off, hand_off ? "prefill" : "prefill-colocated"};
  }
  // Colocated: mixed workers first, then decode workers (they can prefill
  // short prompts), then prefill workers that keep decoding.
  for (WorkerRoleKind role : {WorkerRoleKind::kMixed, WorkerRoleKind::kDecode, WorkerRoleKind::kPrefill}) {
    if (!HasAccepting(view, role)) continue;
    auto d = dispatch_->Decide(OnlyRole(view, role), request, now);
    if (!d.ok()) return d.status();
    return Placement{d->worker_id, false, d->reason};
  }
  return absl::UnavailableError("no worker accepts new requests");
}

std::optional<std::string> DisaggregationPolicy::ChooseDecodeWorker(const ClusterView& view,
                                                                    const RequestView& request,
                                                                    absl::Time now) const {
  const WorkerView* best = nullptr;
  for (const WorkerView& w : view.workers) {
    if (!AcceptsNewWork(w) || w.role != WorkerRoleKind::kDecode || w.worker_id == request.worker_id) continue;
    const int64_t room = w.load.blocks_free - w.load.blocks_needed_waiting - w.load.pending_blocks;
    if (room < request.num_blocks) continue;
    if (best == nullptr || Freeness(w.load) > Freeness(best->load)) best = &w;
  }
  if (best == nullptr) return std::nullopt;
  return best->worker_id;
}

}  // namespace ferry
