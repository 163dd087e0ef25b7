// How long one engine step takes, without running it: the cost model behind
// `ferry sim` and the worker's `--backend sim`. A step is described by its
// shape (tokens in the batch, KV tokens read, attention pairs); a profile
// turns the shape into seconds, either calibrated from this project's own
// CPU measurements or a roofline for a named GPU and model.
//
// Profiles are named "cpu-small" (the small preset on this project's 2-vCPU
// machine, from BENCHMARKS.md) or "<gpu>-<model>" with gpu in {a100, h100,
// h200} and model in {llama3-8b, llama2-7b, qwen2-7b, llama2-13b}, e.g.
// "h100-llama3-8b".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry {

// What one step computes.
struct StepShape {
  int64_t batch_tokens = 0;  // query tokens (prefill chunks + one per decode)
  int num_seqs = 0;          // sequences in the batch
  int64_t kv_tokens = 0;     // context tokens whose KV the step reads
  // Sum over query tokens of the context each attends to (prefill of n fresh
  // tokens: about n * n / 2); drives attention FLOPs.
  int64_t attention_pairs = 0;
};

struct SimProfile {
  std::string name;
  std::string description;
  // Roofline terms: time = overhead + per_seq * seqs + max(bytes / bandwidth,
  // flops / rate), or their sum when `additive` (a CPU overlaps little).
  bool additive = false;
  double step_overhead_s = 0;      // launch, sampling, scheduling per step
  double per_seq_s = 0;            // per sequence in the batch
  double weight_bytes = 0;         // read once per step
  double kv_bytes_per_token = 0;   // read per KV token per step
  double memory_bandwidth = 0;     // bytes/s, effective
  double flops_per_token = 0;      // dense (2 x parameters)
  double flops_per_attention_pair = 0;
  double compute_rate = 0;         // FLOP/s, effective
  // KV capacity of one worker in tokens (memory left after the weights).
  int64_t kv_capacity_tokens = 0;
  // Copy bandwidth between workers for KV (migration, PD hand-off), bytes/s.
  double kv_link_bandwidth = 0;
};

// The step time in seconds. Zero tokens: zero.
double StepSeconds(const SimProfile& profile, const StepShape& shape);

// InvalidArgument naming the known profiles for an unknown name, or when the
// model's weights do not fit the GPU.
absl::StatusOr<SimProfile> LookupSimProfile(std::string_view name);

// The names LookupSimProfile accepts, for --help and errors.
std::vector<std::string> SimProfileNames();

}  // namespace ferry
