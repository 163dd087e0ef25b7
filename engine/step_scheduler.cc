#include "engine/step_scheduler.h"

#include <algorithm>

#include "common/logging.h"

namespace ferry {
namespace {

// Served-first order: lower priority value, then earlier arrival, then
// sample index.
bool Before(const Sequence& a, const Sequence& b) {
  if (a.priority() != b.priority()) return a.priority() < b.priority();
  if (a.arrival() != b.arrival()) return a.arrival() < b.arrival();
  return a.sample_index < b.sample_index;
}

}  // namespace

StepScheduler::StepScheduler(const StepSchedulerOptions& options, BlockPool& pool)
    : options_(options), pool_(pool) {}

void StepScheduler::InsertWaiting(std::unique_ptr<Sequence> seq) {
  auto it = std::upper_bound(waiting_.begin(), waiting_.end(), seq,
                             [](const auto& a, const auto& b) { return Before(*a, *b); });
  waiting_.insert(it, std::move(seq));
}

void StepScheduler::AddWaiting(std::unique_ptr<Sequence> seq) { InsertWaiting(std::move(seq)); }

void StepScheduler::AddRunning(std::unique_ptr<Sequence> seq) { running_.push_back(std::move(seq)); }

void StepScheduler::SortRunning() {
  std::stable_sort(running_.begin(), running_.end(),
                   [](const auto& a, const auto& b) { return Before(*a, *b); });
}

bool StepScheduler::EnsureBlocks(Sequence& seq, int num_tokens, std::vector<BlockCopy>& copies) {
  // Copy-on-write first: a shared partial last block becomes private.
  if (seq.table.num_blocks() > 0) {
    auto cow = pool_.MakeWritable(seq.table);
    if (!cow) return false;
    copies.insert(copies.end(), cow->begin(), cow->end());
  }
  int need = seq.table.NumBlocksToAdd(seq.LocalTokens(num_tokens));
  if (need == 0) return true;
  auto blocks = pool_.Allocate(need);
  if (!blocks) return false;
  seq.table.Append(std::move(*blocks));
  return true;
}

void StepScheduler::Preempt(std::unique_ptr<Sequence> seq) {
  // Recompute: drop the KV, keep the tokens (prompt and output so far).
  seq->table.Clear();
  seq->num_computed = 0;
  ++num_preemptions_;
  Logger("engine")->debug("req={} sample={} preempted ({} tokens to recompute)", seq->id(),
                          seq->sample_index, seq->num_tokens());
  InsertWaiting(std::move(seq));
}

StepPlan StepScheduler::Schedule() {
  StepPlan plan;
  int budget = options_.max_num_batched_tokens;
  int prompt_rows_left = options_.max_prompt_logprob_rows;
  SortRunning();
  size_t i = 0;
  while (i < running_.size() && budget > 0) {
    Sequence& seq = *running_[i];
    int num_new = PrefillChunk(seq, std::min(seq.num_tokens() - seq.num_computed, budget), &prompt_rows_left);
    if (num_new <= 0) {
      ++i;
      continue;
    }
    bool self_preempted = false;
    while (!EnsureBlocks(seq, seq.num_computed + num_new, plan.copies)) {
      // Free blocks by preempting the last sequence in served-first order;
      // those before it (already scheduled) keep theirs.
      std::unique_ptr<Sequence> victim = std::move(running_.back());
      running_.pop_back();
      ++plan.num_preempted;
      bool is_self = victim.get() == &seq;
      Preempt(std::move(victim));
      if (is_self) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    seq.table.set_num_tokens(seq.LocalTokens(seq.num_computed + num_new));
    plan.scheduled.push_back({&seq, num_new, seq.num_computed + num_new == seq.num_tokens()});
    plan.num_tokens += num_new;
    budget -= num_new;
    ++i;
  }
  // Admit waiting sequences, unless this step already had to preempt.
  while (plan.num_preempted == 0 && !waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < options_.max_num_seqs) {
    Sequence& seq = *waiting_.front();
    // Borrowed positions are not in the prefix cache: recompute them all.
    // A prompt whose logprobs are asked for is computed whole.
    if (seq.num_computed == 0 && seq.table.num_blocks() == 0 && options_.enable_prefix_caching &&
        seq.remote_kv() == nullptr && !WantsPromptLogprobs(seq)) {
      // All tokens but the last: the model must still produce its logits.
      auto matched = pool_.MatchPrefix(
          std::span<const int32_t>(seq.tokens.data(), seq.tokens.size() - 1), seq.table);
      if (matched.ok()) {
        seq.num_computed = static_cast<int>(*matched);
        if (seq.num_output_tokens() == 0) seq.num_cached_prompt = seq.num_computed;
      }
    }
    int num_new = PrefillChunk(seq, std::min(seq.num_tokens() - seq.num_computed, budget), &prompt_rows_left);
    if (num_new <= 0) break;  // no logits rows left for its prompt: next step
    if (!EnsureBlocks(seq, seq.num_computed + num_new, plan.copies)) {
      // Do not pin cached blocks while waiting.
      seq.table.Clear();
      seq.num_computed = 0;
      break;
    }
    seq.table.set_num_tokens(seq.LocalTokens(seq.num_computed + num_new));
    std::unique_ptr<Sequence> owned = std::move(waiting_.front());
    waiting_.pop_front();
    plan.scheduled.push_back({owned.get(), num_new, owned->num_computed + num_new == owned->num_tokens()});
    plan.num_tokens += num_new;
    budget -= num_new;
    running_.push_back(std::move(owned));
  }
  return plan;
}

void StepScheduler::Commit(const StepPlan& plan) {
  for (const ScheduledSequence& s : plan.scheduled) {
    s.seq->num_computed += s.num_new_tokens;
    if (options_.enable_prefix_caching) {
      absl::Status st = pool_.CommitFullBlocks(s.seq->table, s.seq->tokens);
      if (!st.ok()) Logger("engine")->warn("req={} prefix cache: {}", s.seq->id(), st.ToString());
    }
  }
}

std::unique_ptr<Sequence> StepScheduler::Remove(Sequence* seq) {
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if (it->get() == seq) {
      std::unique_ptr<Sequence> out = std::move(*it);
      running_.erase(it);
      return out;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (it->get() == seq) {
      std::unique_ptr<Sequence> out = std::move(*it);
      waiting_.erase(it);
      return out;
    }
  }
  return nullptr;
}

std::vector<Sequence*> StepScheduler::Find(const std::string& request_id) const {
  std::vector<Sequence*> out;
  for (const auto& s : running_) {
    if (s->id() == request_id) out.push_back(s.get());
  }
  for (const auto& s : waiting_) {
    if (s->id() == request_id) out.push_back(s.get());
  }
  return out;
}

int64_t StepScheduler::BlocksNeededByWaiting() const {
  int64_t total = 0;
  for (const auto& s : waiting_) {
    total += (s->LocalTokens(s->num_tokens()) + pool_.block_size() - 1) / pool_.block_size();
  }
  return total;
}

}  // namespace ferry
