// Decides what runs in each engine step (vLLM v1 style): there is no separate
// prefill path; every sequence's computed tokens catch up with its tokens
// within a per-step token budget. Running sequences go first (decodes and
// unfinished prefill chunks), then waiting ones are admitted while budget,
// blocks and the sequence cap allow. When blocks run out, the lowest-priority,
// latest-arriving running sequence is preempted by recompute: its blocks are
// freed and it returns to the waiting queue.
//
// The scheduler never calls the model: Schedule() returns a plan, the engine
// runs it, and Commit() records what was computed.
#pragma once

#include <algorithm>
#include <deque>
#include <memory>
#include <vector>

#include "engine/sequence.h"
#include "kvcache/block_pool.h"
#include "kvcache/kv_cache.h"

namespace ferry {

struct StepSchedulerOptions {
  int max_num_batched_tokens = 2048;
  int max_num_seqs = 256;
  bool enable_prefix_caching = true;
  // Logits rows a step may spend on prompt logprobs (one per prompt token
  // scored): a prefill chunk of a sample that asks for them is cut to fit.
  int max_prompt_logprob_rows = 256;
};

struct ScheduledSequence {
  Sequence* seq;
  int num_new_tokens;  // tokens [seq->num_computed, + num_new_tokens) run this step
  bool samples;        // the chunk reaches the end of the tokens: sample next
};

struct StepPlan {
  std::vector<ScheduledSequence> scheduled;
  std::vector<BlockCopy> copies;  // copy-on-write, before the forward
  int num_tokens = 0;
  int num_preempted = 0;
};

class StepScheduler {
 public:
  // `pool` must outlive the scheduler.
  StepScheduler(const StepSchedulerOptions& options, BlockPool& pool);

  void AddWaiting(std::unique_ptr<Sequence> seq);
  const StepSchedulerOptions& options() const { return options_; }
  // Adds a sequence that already holds its blocks and computed tokens (a
  // sample forked from another after the prompt's prefill).
  void AddRunning(std::unique_ptr<Sequence> seq);

  StepPlan Schedule();
  // After the forward pass: advances computed tokens and registers full
  // blocks in the prefix cache.
  void Commit(const StepPlan& plan);

  // Removes and returns a sequence (finished or aborted); its blocks are
  // released when the returned pointer is dropped.
  std::unique_ptr<Sequence> Remove(Sequence* seq);
  // Every sequence of a request, running or waiting.
  std::vector<Sequence*> Find(const std::string& request_id) const;

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int64_t BlocksNeededByWaiting() const;
  int64_t num_preemptions() const { return num_preemptions_; }
  const std::vector<std::unique_ptr<Sequence>>& running() const { return running_; }

 private:
  // A sample still to send its prompt's logprobs (params.prompt_logprobs).
  static bool WantsPromptLogprobs(const Sequence& seq) {
    return seq.group->input.params.prompt_logprobs >= 0 && !seq.group->input.resume;
  }
  // `num_new` tokens of `seq` for this step, fewer for a prompt whose
  // logprobs are asked for: each of its tokens but the last takes a logits
  // row, out of `rows_left` this step (which it then takes).
  static int PrefillChunk(const Sequence& seq, int num_new, int* rows_left) {
    if (!WantsPromptLogprobs(seq) || !seq.in_prefill()) return num_new;
    const int scored_to = seq.num_prompt_tokens - 1;  // positions [0, scored_to) score a next prompt token
    const int needed = std::max(0, std::min(seq.num_computed + num_new, scored_to) - seq.num_computed);
    if (needed > *rows_left) num_new = *rows_left;  // then ends before scored_to, on exactly that many rows
    *rows_left -= std::min(needed, *rows_left);
    return num_new;
  }
  // Makes room in `seq`'s table for `num_tokens` tokens (private last block,
  // new blocks). False, with nothing changed, when blocks are short.
  bool EnsureBlocks(Sequence& seq, int num_tokens, std::vector<BlockCopy>& copies);
  void Preempt(std::unique_ptr<Sequence> seq);
  void SortRunning();
  void InsertWaiting(std::unique_ptr<Sequence> seq);

  StepSchedulerOptions options_;
  BlockPool& pool_;
  std::vector<std::unique_ptr<Sequence>> running_;
  std::deque<std::unique_ptr<Sequence>> waiting_;  // by (priority, arrival)
  int64_t num_preemptions_ = 0;
};

}  // namespace ferry
