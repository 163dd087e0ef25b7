// `ferry sim`: a discrete-event simulation of a Ferry cluster. The real
// scheduler policies (scheduler/policy: dispatch, disaggregation, migration)
// decide against a ClusterView built from simulated workers, each a
// SimWorker with the engine's step loop over block counts and a cost model
// for step times. Heartbeats bring loads to the scheduler at an interval,
// with the scheduler's own pending counts in between, as the service does.
// Workers cache prompt blocks (prefix caching); their heartbeats carry the
// block hashes cached and evicted, which keep the scheduler's prefix index
// for prefix-aware dispatch, as in the service.
// The same inputs give the same results: there is no wall clock and no
// randomness inside.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmarks/loadgen/metrics.h"
#include "benchmarks/sim/sim_worker.h"
#include "engine/sim_cost_model.h"
#include "scheduler/policy/disaggregation_policy.h"
#include "scheduler/policy/dispatch_policy.h"
#include "scheduler/policy/migration_policy.h"

namespace ferry::sim {

struct SimOptions {
  int num_workers = 8;
  // With disaggregation: this many workers prefill and the rest decode.
  int num_prefill_workers = 0;
  std::string profile = "h100-llama3-8b";
  std::string dispatch = "least-loaded";  // round-robin | least-loaded | prefix-aware
  bool migration = false;                 // Llumnix balancing
  bool disaggregation = false;            // prefill on prefill workers, decode moves on
  SimEngineOptions engine;                // num_blocks 0: the profile's KV capacity
  double heartbeat_s = 0.05;
  double migration_interval_s = 0.1;
  MigrationOptions migration_options;
  PrefixAwareOptions prefix_aware_options;  // with dispatch prefix-aware
  DisaggregationOptions disaggregation_options;
  // Scheduler to worker, one way (dispatch, hand-off orders).
  double rpc_latency_s = 0.0005;
  // Called now and then with (requests finished, requests in all); may be empty.
  std::function<void(int64_t, int64_t)> progress;
};

struct SimRequest {
  double arrival_s = 0;
  int input_tokens = 0;
  int output_tokens = 0;
  // One hash per full prompt block at options.engine.block_size
  // (SimBlockHashes); empty: the prompt shares nothing with others.
  std::vector<uint64_t> block_hashes;
};

struct SimStats {
  int64_t events = 0;
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t migrations_started = 0;
  int64_t migrations_done = 0;
  int64_t migrations_aborted = 0;
  int64_t handoffs = 0;  // PD hand-offs done
  int64_t rejected = 0;  // longer than a worker's KV cache
  double simulated_s = 0;
  double mean_worker_busy = 0;  // fraction of the simulated time steps ran
  // Prompt tokens of requests with block hashes when admitted before their
  // first token, and how many of those a worker's prefix cache held.
  int64_t prefix_prompt_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  int64_t cached_blocks_evicted = 0;
  // Blocks the workers still hold (or keep reserved) when every request has
  // finished: 0 unless blocks leak.
  int64_t blocks_held_at_end = 0;
  std::string profile_description;

  double prefix_hit_rate() const {
    return prefix_prompt_tokens > 0 ? static_cast<double>(prefix_hit_tokens) / prefix_prompt_tokens : 0;
  }
};

struct SimRun {
  std::vector<loadgen::RequestResult> results;  // in request order
  double duration_s = 0;                        // first arrival to last completion
  SimStats stats;
};

// InvalidArgument for bad options (no workers, an unknown profile or
// policy, disaggregation without both roles) or requests (no tokens, more
// block hashes than full prompt blocks).
absl::StatusOr<SimRun> RunSimulation(const SimOptions& options, const std::vector<SimRequest>& requests);

}  // namespace ferry::sim
