// Prefill/decode disaggregation (Splitwise, DistServe) on top of a dispatch
// policy: long prompts start on a prefill worker and, once the first token is
// out, move to a decode worker by live migration. Short prompts, n > 1
// requests and clusters without prefill workers stay colocated.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/policy/cluster_view.h"
#include "scheduler/policy/dispatch_policy.h"

namespace ferry {

struct DisaggregationOptions {
  bool enabled = true;
  // Prompts shorter than this are not worth a KV transfer: they stay on one
  // worker (a mixed one when there is one).
  int64_t min_prompt_tokens = 64;
};

struct Placement {
  std::string worker_id;
  // Move the request to a decode worker after its first token.
  bool hand_off_after_prefill = false;
  std::string reason;
};

class DisaggregationPolicy {
 public:
  // `dispatch` picks among the workers of the chosen role.
  DisaggregationPolicy(std::unique_ptr<DispatchPolicy> dispatch, const DisaggregationOptions& options)
      : dispatch_(std::move(dispatch)), options_(options) {}

  const DispatchPolicy& dispatch() const { return *dispatch_; }
  const DisaggregationOptions& options() const { return options_; }

  // Where the request starts. Unavailable when no worker accepts new work.
  absl::StatusOr<Placement> Place(const ClusterView& view, const DispatchRequest& request, absl::Time now);

  // The decode worker to hand `request` to after its prefill: the accepting
  // decode worker with the highest freeness that can hold the request's
  // blocks. nullopt: none, the prefill worker keeps decoding.
  std::optional<std::string> ChooseDecodeWorker(const ClusterView& view, const RequestView& request,
                                                absl::Time now) const;

 private:
  std::unique_ptr<DispatchPolicy> dispatch_;
  DisaggregationOptions options_;
};

}  // namespace ferry
