// The engine's request, event and statistics types: what RPC and HTTP
// threads hand to the step loop and get back from it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/sampling_params.h"

namespace ferry {

class RemoteKv;

struct EngineOptions {
  int block_size = 16;             // tokens per KV block
  int64_t kv_cache_bytes = 0;      // KV memory; 0: enough for 4 full contexts
  int max_num_batched_tokens = 2048;  // token budget of one step
  int max_num_seqs = 256;          // sequences running at once
  int threads = 0;                 // CPU threads (0: one per core)
  bool enable_prefix_caching = true;
  // Prefix-cache hash events kept for a consumer (the worker's heartbeat)
  // between drains. Past it the backlog is replaced by a snapshot of every
  // cached hash (BlockHashEvents::reset), so the scheduler's index rebuilds
  // instead of drifting.
  int64_t max_block_hash_events = 1 << 16;
  int max_model_len = 0;           // 0: the model's max_position_embeddings
  // A request's tokens do not depend on what else is batched with it (same
  // seed, same output); costs prefill speed (no GEMM path).
  bool batch_invariant = true;
  // Compute backend: "cpu", "cuda" or "cuda:N".
  std::string device = "cpu";
  // Weights and KV dtype on a GPU: "auto" (bfloat16), "bfloat16", "float16",
  // "float32". The CPU backend computes in fp32.
  std::string dtype = "auto";
  // With a GPU and kv_cache_bytes == 0: this fraction of the device memory
  // left free after weights and scratch (0: 0.9).
  double kv_cache_fraction = 0;
  // On a GPU, replay decode steps as CUDA graphs (one per batch shape).
  bool cuda_graphs = true;
  // Where the backend can (cuda), sample on the device in steps whose every
  // row needs only greedy or temperature / top-k / top-p sampling, so that
  // token ids come back instead of logits rows.
  bool device_sampling = true;
  // On the cpu backend, keep the KV cache in shared memory (a sealed memfd)
  // so that workers on the same host copy blocks straight out of it for
  // migrations and prefix pulls (kvcache/shared_pool.h).
  bool shared_kv_pool = true;
  // With device "sim": the cost-model profile of the simulated backend
  // (engine/sim_cost_model.h), e.g. "h100-llama3-8b".
  std::string sim_profile;
  // Host-memory tier of the prefix cache in bytes (0: off); evicted cached
  // blocks are copied there and copied back on a prefix hit.
  int64_t kv_host_bytes = 0;
  // Each step that runs work takes at least this long (0: off): paces a
  // small model so live migration, preemption and load tests have time to
  // act while a request runs.
  int64_t min_step_micros = 0;
  // Speculative decoding by prompt lookup (engine/ngram_draft.h): up to
  // this many draft tokens per decoding sequence and step, checked in the
  // step's one forward pass (0: off). Sequences under a grammar, a
  // reasoning bound or borrowed KV decode one token at a time. Outputs do
  // not change: each emitted token is sampled as without drafts (exactly
  // the same tokens with batch_invariant).
  int speculative_ngram_tokens = 0;
};

// Where a sample left off, to continue it on this engine: after a migration
// (with its KV blocks) or after its worker died (recomputed).
struct ResumeState {
  std::vector<int32_t> output_ids;  // tokens generated so far
  std::string rng_state;            // empty: reseed and advance past output_ids
  int64_t emitted_text_bytes = 0;   // text already delivered to the client
  int sample_index = 0;
  int cached_prompt_tokens = 0;
};

// One generation request. Priorities follow vLLM: a lower value is served
// first and preempted last.
struct GenerateInput {
  std::string request_id;
  std::vector<int32_t> prompt_ids;
  SamplingParams params;
  int priority = 0;
  // Continue one sample (params.n is then 1 for this engine).
  std::optional<ResumeState> resume;
  // DistAttention (CPU backend, n = 1): positions from remote_kv->local_tokens()
  // on live in blocks borrowed from other workers.
  std::shared_ptr<RemoteKv> remote_kv;
  // params.structured compiled (by the engine on submission).
  std::shared_ptr<const structured::Grammar> grammar;
  // params.reasoning's start and end as tokens (by the engine on
  // submission): what it writes when it forces them.
  std::vector<int32_t> reasoning_start_ids, reasoning_end_ids;
};

// kMigrated: the sample continues on another worker (EngineEvent::migrated_to).
enum class FinishReason { kNone, kStop, kLength, kAbort, kError, kMigrated };

// What a request produced in one step, for one of its n samples.
struct EngineEvent {
  std::string request_id;
  int sample_index = 0;
  std::vector<int32_t> token_ids;       // new tokens (EOS included when generated)
  std::string text;                     // their text, complete UTF-8, stop strings cut
  std::vector<SampledToken> logprobs;   // one per token when asked for
  // params.prompt_logprobs: one per prompt token after the first, in the
  // first event of a sample.
  std::vector<SampledToken> prompt_logprobs;
  FinishReason finish = FinishReason::kNone;
  std::string stop_reason;              // the stop string matched, if any
  int32_t stop_token = -1;              // the stop token id matched, if any
  // Set on the last event of a sample.
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;
  std::string error;
  std::string migrated_to;
};

// Called on the engine's thread: must be quick and must not block or call
// back into the engine.
using EventSink = std::function<void(EngineEvent)>;

struct EngineStats {
  int64_t blocks_total = 0;
  int64_t blocks_free = 0;
  int64_t blocks_used = 0;
  int64_t blocks_cached = 0;
  int running = 0;
  int waiting = 0;
  int64_t blocks_needed_waiting = 0;  // to admit every waiting sequence now
  double tokens_per_second = 0;       // generated, smoothed over recent steps
  double prefix_cache_hit_rate = 0;   // hit tokens / queried tokens
  int64_t steps = 0;
  int64_t prompt_tokens_computed = 0;  // prompt tokens run through the model
  int64_t prompt_tokens_cached = 0;    // prompt tokens served from the prefix cache
  int64_t generated_tokens = 0;
  int64_t device_sampled_tokens = 0;  // of them, picked by the backend (device sampling)
  // Speculative decoding: draft tokens checked, and of them the accepted.
  int64_t draft_tokens = 0;
  int64_t accepted_draft_tokens = 0;
  int64_t preemptions = 0;
  int64_t requests_finished = 0;
  int64_t kv_cache_bytes = 0;
  int block_size = 0;
  // Prefix-cache hits by tier (host hits were copied back to the device).
  int64_t prefix_hit_blocks_device = 0;
  int64_t prefix_hit_blocks_host = 0;
  int64_t prefix_hit_tokens_device = 0;
  int64_t prefix_hit_tokens_host = 0;
  // Host tier (all 0 when off).
  int64_t host_blocks_total = 0;
  int64_t host_blocks_used = 0;
  int64_t host_swap_out_blocks = 0;
  int64_t host_swap_in_blocks = 0;
  int64_t host_swap_out_bytes = 0;
  int64_t host_swap_in_bytes = 0;
  int64_t host_evictions = 0;
  // Cached prefixes installed from or exported to other workers.
  int64_t prefix_blocks_imported = 0;
  int64_t prefix_blocks_exported = 0;
  double prefill_tokens_per_second = 0;  // prompt tokens computed per second, smoothed
  int64_t kv_bytes_per_block = 0;
  // DistAttention.
  int64_t blocks_lent = 0;              // reserved here for requests of other workers
  int64_t lent_leases = 0;
  int running_with_borrowed_kv = 0;     // running requests of ours with remote positions
  int64_t borrowed_kv_failures = 0;     // requests failed because a lender failed
};

}  // namespace ferry
