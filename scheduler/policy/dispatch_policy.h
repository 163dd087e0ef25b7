// Where a new request goes. Policies are pure: they read a ClusterView and a
// description of the request and return a worker id; the service does the
// RPCs. One instance per scheduler, called from its event-loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/policy/cluster_view.h"

namespace ferry {

struct DispatchRequest {
  std::string request_id;
  int64_t num_prompt_tokens = 0;
  int64_t num_prompt_blocks = 0;  // KV blocks the prompt will take
  int num_samples = 1;
  int priority = 0;
  // Length, in blocks, of the prompt prefix each worker already caches
  // (from the prefix index); workers not listed cache none of it.
  std::map<std::string, int64_t> cached_prefix_blocks;
};

struct DispatchDecision {
  std::string worker_id;
  std::string reason;  // short, for logs and metrics labels
};

class DispatchPolicy {
 public:
  virtual ~DispatchPolicy() = default;
  virtual std::string_view name() const = 0;
  // Picks one of the workers in `view` that AcceptsNewWork. Unavailable when
  // there is none.
  virtual absl::StatusOr<DispatchDecision> Decide(const ClusterView& view, const DispatchRequest& request,
                                                  absl::Time now) = 0;
};

// Cycles through the accepting workers in worker-id order.
class RoundRobinPolicy final : public DispatchPolicy {
 public:
  std::string_view name() const override { return "round-robin"; }
  absl::StatusOr<DispatchDecision> Decide(const ClusterView& view, const DispatchRequest& request,
                                          absl::Time now) override;

 private:
  std::string last_worker_id_;
};

// The worker with the highest freeness (Llumnix); ties go to the one with
// fewer requests assigned, then to the lower id.
class LeastLoadedPolicy final : public DispatchPolicy {
 public:
  std::string_view name() const override { return "least-loaded"; }
  absl::StatusOr<DispatchDecision> Decide(const ClusterView& view, const DispatchRequest& request,
                                          absl::Time now) override;
};

struct PrefixAwareOptions {
  // Shorter cached prefixes are not worth giving up load balance for.
  int64_t min_match_blocks = 1;
  // The worker with the longest match is skipped when its freeness (free
  // blocks per request) is both under `max_freeness_gap` and more than that
  // below the least-loaded worker's, or when its queue (waiting plus
  // pending) is more than `max_queue_gap` longer, so one hot prefix cannot
  // pile every request onto one worker.
  double max_freeness_gap = 64;
  int max_queue_gap = 2;
};

// Prefers the worker caching the longest prefix of the prompt unless that
// worker is too loaded; otherwise least-loaded.
class PrefixAwarePolicy final : public DispatchPolicy {
 public:
  explicit PrefixAwarePolicy(const PrefixAwareOptions& options = {}) : options_(options) {}
  std::string_view name() const override { return "prefix-aware"; }
  absl::StatusOr<DispatchDecision> Decide(const ClusterView& view, const DispatchRequest& request,
                                          absl::Time now) override;

 private:
  PrefixAwareOptions options_;
  LeastLoadedPolicy least_loaded_;
};

// "round-robin", "least-loaded" or "prefix-aware"; InvalidArgument otherwise.
absl::StatusOr<std::unique_ptr<DispatchPolicy>> MakeDispatchPolicy(std::string_view name);

}  // namespace ferry
