// Whether the worker a request was dispatched to should pull a cached prompt
// prefix from a peer instead of computing it. Pure: it reads what the prefix
// index and the load reports say and returns a decision.
//
// Cost model: the destination caches the prompt's first L blocks itself and
// the peer its first P > L, so a pull moves only blocks [L, P), P - L blocks
// of B bytes, and takes about  fixed_cost + (P - L) * B / link_bandwidth.
// Computing those blocks (S tokens each) takes about  (P - L) * S /
// prefill_rate,  with the destination's measured prompt-token rate (or a
// configured one). The pull happens when it saves at least `min_blocks`
// blocks and is estimated cheaper. Both sides grow with P - L, so the choice
// comes down to the fixed cost against the per-block difference between
// the link and prefill.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace ferry {

struct PrefixPullPolicyOptions {
  bool enabled = true;
  // Pull only when the peer holds at least this many more blocks.
  int64_t min_blocks = 2;
  // Worker-to-worker bandwidth assumed for the copy, bytes per second.
  double link_bytes_per_second = 1e9;
  // Per-pull overhead (connection, round trips, install).
  absl::Duration fixed_cost = absl::Milliseconds(5);
  // Prompt tokens per second assumed when the destination has not measured
  // its own yet (> 0); a positive `prefill_tokens_per_second_override` is
  // used instead of any measurement.
  double default_prefill_tokens_per_second = 1000;
  double prefill_tokens_per_second_override = 0;
};

struct PrefixPullPeer {
  std::string worker_id;
  int64_t cached_blocks = 0;  // leading blocks of the prompt it caches
};

struct PrefixPullInput {
  int64_t local_blocks = 0;     // leading blocks the destination caches
  int64_t usable_blocks = 0;    // full blocks a prefix hit can cover ((tokens - 1) / block_size)
  int block_size = 16;          // tokens per block
  int64_t kv_bytes_per_block = 0;  // 0: unknown (no pull)
  double prefill_tokens_per_second = 0;  // the destination's measurement; 0: none
  std::vector<PrefixPullPeer> peers;     // other workers with the same layout
};

struct PrefixPullDecision {
  std::string peer_id;
  // Pull blocks [first_block, first_block + num_blocks) of the prompt: the
  // destination caches those before first_block itself.
  int64_t first_block = 0;
  int64_t num_blocks = 0;
  double pull_seconds = 0;      // estimates, for logs and metrics
  double recompute_seconds = 0;
};

// The peer with the longest usable prefix, when pulling it beats
// recomputing; nullopt otherwise (pulls off, nothing to gain, unknown sizes,
// or too slow a link).
std::optional<PrefixPullDecision> DecidePrefixPull(const PrefixPullPolicyOptions& options, const PrefixPullInput& input);

}  // namespace ferry
