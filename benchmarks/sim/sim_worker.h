// One simulated engine: the step loop of engine/step_scheduler (continuous
// batching with a token budget per step, chunked prefill on or off,
// preemption by recompute when KV blocks run out, prefix caching) over
// block counts instead of tensors, with the step time from a cost model.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "benchmarks/sim/sim_prefix_cache.h"
#include "engine/sim_cost_model.h"

namespace ferry::sim {

struct SimEngineOptions {
  int block_size = 16;
  int64_t num_blocks = 0;
  int max_num_batched_tokens = 2048;
  int max_num_seqs = 256;
  // On: decodes first, then prefill chunks fill the budget (vLLM v1,
  // Dynamic SplitFuse). Off: a step either prefills whole prompts or
  // decodes, prefills first (vLLM v0), so a long prompt stalls every decode.
  bool chunked_prefill = true;
  // Reuse cached prompt blocks (for sequences that carry block hashes).
  bool prefix_caching = true;
};

// A request's sample as the engine holds it.
struct SimSeq {
  int64_t id = 0;
  int prompt_tokens = 0;
  int max_tokens = 0;
  int generated = 0;
  int computed = 0;  // tokens whose KV is in the cache
  int64_t blocks = 0;
  int worker = -1;
  bool hand_off_after_prefill = false;
  int migration = -1;  // index of the migration in flight, -1: none
  bool finished = false;
  // One hash per full prompt block (SimBlockHashes); empty: the prompt
  // shares nothing, so it is neither looked up nor cached.
  std::span<const uint64_t> block_hashes;
  // Cached blocks it references, counted in `blocks`; the rest are its own.
  std::vector<uint64_t> cached_refs;
  int64_t blocks_committed = 0;  // leading blocks already offered to the cache

  int num_tokens() const { return prompt_tokens + generated; }
};

// What a finished step produced, for the simulator to act on.
struct StepOutcome {
  std::vector<int64_t> tokens;     // seq ids that produced a token, in batch order
  std::vector<int64_t> finished;   // seq ids that reached max_tokens (blocks freed)
  std::vector<int64_t> preempted;  // seq ids preempted while planning the step
};

class SimWorker {
 public:
  SimWorker(int index, const SimEngineOptions& options, const SimProfile* profile)
      : index_(index), options_(options), profile_(profile), blocks_free_(options.num_blocks) {}

  int index() const { return index_; }
  bool busy() const { return busy_; }
  bool has_work() const { return !running_.empty() || !waiting_.empty(); }

  void Enqueue(SimSeq& seq);
  // Takes a migrated sequence with its KV in place; false when the blocks
  // are not there (the caller keeps it where it was).
  bool AdmitMigrated(SimSeq& seq);
  // Removes a running sequence (moving away); frees its blocks.
  void Detach(SimSeq& seq);
  // Blocks held back for an incoming migration; false when not free.
  bool Reserve(int64_t blocks);
  void Unreserve(int64_t blocks);

  // Plans the next step and returns its duration in seconds (0: nothing to
  // do). `seqs` is the table of all sequences by id.
  double StartStep(std::vector<SimSeq>& seqs, StepOutcome* preempted_into);
  // Applies the step planned by StartStep.
  void FinishStep(std::vector<SimSeq>& seqs, StepOutcome* out);

  // The load report a heartbeat carries. Free blocks include cached blocks
  // nobody references (an allocation evicts them), as in the engine.
  int64_t blocks_free() const { return blocks_free_ - blocks_reserved_; }
  int64_t blocks_total() const { return options_.num_blocks; }
  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int64_t blocks_needed_waiting() const { return blocks_needed_waiting_; }
  const std::vector<int64_t>& running() const { return running_; }
  const SimPrefixCache& prefix_cache() const { return cache_; }
  // Block hashes cached and evicted since the last call (the heartbeat's
  // stored and removed lists).
  void TakeBlockHashEvents(std::vector<uint64_t>* stored, std::vector<uint64_t>* removed) {
    cache_.TakeEvents(stored, removed);
  }

  int64_t steps() const { return steps_; }
  int64_t preemptions() const { return preemptions_; }
  double busy_s() const { return busy_s_; }
  // Prompt tokens of sequences with block hashes admitted before their first
  // token, and how many of those were found cached.
  int64_t prefix_prompt_tokens() const { return prefix_prompt_tokens_; }
  int64_t prefix_hit_tokens() const { return prefix_hit_tokens_; }

 private:
  int64_t BlocksFor(int64_t tokens) const { return (tokens + options_.block_size - 1) / options_.block_size; }
  // Grows `seq` to hold `tokens` tokens; false when the blocks are not free.
  bool Grow(SimSeq& seq, int64_t tokens);
  // Takes `n` free blocks (n <= blocks_free()), evicting cached ones only
  // when the uncached free blocks run short.
  void TakeFree(int64_t n);
  void Free(SimSeq& seq);
  // The cached prefix a waiting `seq` would start with; empty when it has
  // computed tokens or nothing to look up.
  PrefixMatch MatchWaiting(const SimSeq& seq) const;
  // Gives a waiting `seq` the blocks of `hit`, counted as computed.
  void TakeCachedPrefix(SimSeq& seq, const PrefixMatch& hit);
  // Registers the full prompt blocks `seq` has computed since the last call.
  void CommitBlocks(SimSeq& seq);
  void Preempt(std::vector<SimSeq>& seqs, StepOutcome* out);
  void PlanChunked(std::vector<SimSeq>& seqs, StepOutcome* out);
  void PlanSeparate(std::vector<SimSeq>& seqs, StepOutcome* out);
  void Schedule(SimSeq& seq, int take);
  // Grows running_[i] by `take` tokens, preempting from the back until it
  // fits; false when it was itself preempted (it was the last one).
  bool GrowOrPreempt(std::vector<SimSeq>& seqs, size_t i, int take, StepOutcome* out);
  // Moves `seq`, the front of waiting_ (needing `need_all` blocks in all),
  // to running_ with blocks for `grow_to` tokens, and schedules `take`.
  void AdmitFront(SimSeq& seq, int64_t need_all, int grow_to, int take);
  void RecountWaiting(const std::vector<SimSeq>& seqs);

  int index_;
  SimEngineOptions options_;
  const SimProfile* profile_;
  int64_t blocks_free_;
  int64_t blocks_reserved_ = 0;
  int64_t blocks_needed_waiting_ = 0;
  SimPrefixCache cache_;
  std::vector<int64_t> running_;  // admission order
  std::deque<int64_t> waiting_;
  // The step in flight: (seq id, tokens it computes).
  std::vector<std::pair<int64_t, int>> batch_;
  StepShape shape_;
  bool busy_ = false;
  int64_t steps_ = 0;
  int64_t preemptions_ = 0;
  double busy_s_ = 0;
  int64_t prefix_prompt_tokens_ = 0;
  int64_t prefix_hit_tokens_ = 0;
};

}  // namespace ferry::sim
