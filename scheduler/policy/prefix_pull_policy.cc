#include "scheduler/policy/prefix_pull_policy.h"

#include <algorithm>

namespace ferry {

std::optional<PrefixPullDecision> DecidePrefixPull(const PrefixPullPolicyOptions& options, const PrefixPullInput& input) {
  if (!options.enabled || input.kv_bytes_per_block <= 0 || input.block_size <= 0 ||
      options.link_bytes_per_second <= 0) {
    return std::nullopt;
  }
  const PrefixPullPeer* best = nullptr;
  int64_t best_blocks = 0;
  for (const PrefixPullPeer& p : input.peers) {
    const int64_t usable = std::min(p.cached_blocks, input.usable_blocks);
    // Ties go to the lower id, so the choice does not depend on map order.
    if (usable > best_blocks || (usable == best_blocks && best != nullptr && p.worker_id < best->worker_id)) {
      best = &p;
      best_blocks = usable;
    }
  }
  if (best == nullptr) return std::nullopt;
  const int64_t first = std::clamp<int64_t>(input.local_blocks, 0, best_blocks);
  const int64_t gained = best_blocks - first;
  if (gained < std::max<int64_t>(1, options.min_blocks)) return std::nullopt;
  double rate = options.prefill_tokens_per_second_override;
  if (rate <= 0) rate = input.prefill_tokens_per_second;
  if (rate <= 0) rate = options.default_prefill_tokens_per_second;
  if (rate <= 0) return std::nullopt;
  PrefixPullDecision d;
  d.peer_id = best->worker_id;
  d.first_block = first;
  d.num_blocks = gained;
  d.pull_seconds = absl::ToDoubleSeconds(options.fixed_cost) +
                   static_cast<double>(gained) * static_cast<double>(input.kv_bytes_per_block) /
                       options.link_bytes_per_second;
  d.recompute_seconds = static_cast<double>(gained * input.block_size) / rate;
  if (d.pull_seconds >= d.recompute_seconds) return std::nullopt;
  return d;
}

}  // namespace ferry
