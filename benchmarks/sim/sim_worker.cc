#include "benchmarks/sim/sim_worker.h"

#include <algorithm>

namespace ferry::sim {

void SimWorker::Enqueue(SimSeq& seq) {
  seq.worker = index_;
  waiting_.push_back(seq.id);
  blocks_needed_waiting_ += BlocksFor(seq.num_tokens() + 1) - seq.blocks;
}

bool SimWorker::AdmitMigrated(SimSeq& seq) {
  const int64_t need = BlocksFor(seq.computed);
  if (need > blocks_free()) return false;
  TakeFree(need);
  seq.blocks = need;
  seq.blocks_committed = 0;  // the next step hashes them here
  seq.worker = index_;
  running_.push_back(seq.id);
  return true;
}

void SimWorker::Detach(SimSeq& seq) {
  auto it = std::find(running_.begin(), running_.end(), seq.id);
  if (it != running_.end()) running_.erase(it);
  Free(seq);
}

bool SimWorker::Reserve(int64_t blocks) {
  if (blocks > blocks_free()) return false;
  blocks_reserved_ += blocks;
  return true;
}

void SimWorker::Unreserve(int64_t blocks) { blocks_reserved_ = std::max<int64_t>(0, blocks_reserved_ - blocks); }

bool SimWorker::Grow(SimSeq& seq, int64_t tokens) {
  const int64_t need = BlocksFor(tokens) - seq.blocks;
  if (need <= 0) return true;
  if (need > blocks_free()) return false;
  TakeFree(need);
  seq.blocks += need;
  return true;
}

void SimWorker::TakeFree(int64_t n) {
  const int64_t uncached = blocks_free_ - cache_.num_free_cached();
  if (n > uncached) cache_.Evict(n - uncached);
  blocks_free_ -= n;
}

void SimWorker::Free(SimSeq& seq) {
  const int64_t own = seq.blocks - static_cast<int64_t>(seq.cached_refs.size());
  blocks_free_ += own + cache_.Release(seq.cached_refs);
  seq.cached_refs.clear();
  seq.blocks = 0;
  seq.blocks_committed = 0;
}

PrefixMatch SimWorker::MatchWaiting(const SimSeq& seq) const {
  if (!options_.prefix_caching || seq.block_hashes.empty() || seq.computed > 0 || seq.blocks > 0) return {};
  // All tokens but the last, as the engine matches: it must still compute
  // the logits of the last one.
  return cache_.Match(seq.block_hashes, (seq.num_tokens() - 1) / options_.block_size);
}

void SimWorker::TakeCachedPrefix(SimSeq& seq, const PrefixMatch& hit) {
  if (options_.prefix_caching && !seq.block_hashes.empty() && seq.generated == 0) {
    prefix_prompt_tokens_ += seq.prompt_tokens;
    prefix_hit_tokens_ += hit.blocks * options_.block_size;
  }
  if (hit.blocks == 0) return;
  const std::span<const uint64_t> blocks = seq.block_hashes.first(static_cast<size_t>(hit.blocks));
  cache_.Acquire(blocks);
  blocks_free_ -= hit.free_blocks;
  seq.cached_refs.assign(blocks.begin(), blocks.end());
  seq.blocks = hit.blocks;
  seq.blocks_committed = hit.blocks;
  seq.computed = static_cast<int>(hit.blocks * options_.block_size);
}

void SimWorker::CommitBlocks(SimSeq& seq) {
  if (!options_.prefix_caching) return;
  const int64_t full = std::min<int64_t>(seq.computed / options_.block_size,
                                         static_cast<int64_t>(seq.block_hashes.size()));
  for (int64_t j = seq.blocks_committed; j < full; ++j) {
    // A block some other sequence cached meanwhile stays private here.
    if (cache_.Register(seq.block_hashes[j])) seq.cached_refs.push_back(seq.block_hashes[j]);
  }
  seq.blocks_committed = std::max(seq.blocks_committed, full);
}

void SimWorker::Preempt(std::vector<SimSeq>& seqs, StepOutcome* out) {
  SimSeq& victim = seqs[running_.back()];
  running_.pop_back();
  Free(victim);
  victim.computed = 0;  // recompute prompt and output so far
  waiting_.push_front(victim.id);
  blocks_needed_waiting_ += BlocksFor(victim.num_tokens() + 1);
  ++preemptions_;
  out->preempted.push_back(victim.id);
}

void SimWorker::Schedule(SimSeq& seq, int take) {
  batch_.emplace_back(seq.id, take);
  shape_.batch_tokens += take;
  shape_.num_seqs += 1;
  shape_.kv_tokens += seq.computed + take;
  shape_.attention_pairs += int64_t{take} * seq.computed + int64_t{take} * (take + 1) / 2;
}

bool SimWorker::GrowOrPreempt(std::vector<SimSeq>& seqs, size_t i, int take, StepOutcome* out) {
  SimSeq& seq = seqs[running_[i]];
  while (!Grow(seq, seq.computed + take)) {
    const bool last = running_.size() == i + 1;
    Preempt(seqs, out);
    if (last) return false;
  }
  return true;
}

void SimWorker::AdmitFront(SimSeq& seq, int64_t need_all, int grow_to, int take) {
  Grow(seq, grow_to);
  waiting_.pop_front();
  blocks_needed_waiting_ -= need_all;
  running_.push_back(seq.id);
  Schedule(seq, take);
}

void SimWorker::PlanChunked(std::vector<SimSeq>& seqs, StepOutcome* out) {
  int budget = options_.max_num_batched_tokens;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    SimSeq& seq = seqs[running_[i]];
    const int take = std::min(seq.num_tokens() - seq.computed, budget);
    if (!GrowOrPreempt(seqs, i, take, out)) break;
    Schedule(seq, take);
    budget -= take;
  }
  while (budget > 0 && !waiting_.empty() && static_cast<int>(running_.size()) < options_.max_num_seqs) {
    SimSeq& seq = seqs[waiting_.front()];
    // Admit only when the whole prompt fits, so admissions do not preempt
    // each other chunk by chunk. Cached blocks it reuses need no new block,
    // but those nobody references leave the free pool.
    const int64_t need_all = BlocksFor(seq.num_tokens() + 1) - seq.blocks;
    const PrefixMatch hit = MatchWaiting(seq);
    if (need_all - hit.blocks + hit.free_blocks > blocks_free()) break;
    TakeCachedPrefix(seq, hit);
    const int take = std::min(seq.num_tokens() - seq.computed, budget);
    AdmitFront(seq, need_all, seq.computed + take, take);
    budget -= take;
  }
}

void SimWorker::PlanSeparate(std::vector<SimSeq>& seqs, StepOutcome* out) {
  int budget = options_.max_num_batched_tokens;
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_num_seqs) {
    SimSeq& seq = seqs[waiting_.front()];
    const PrefixMatch hit = MatchWaiting(seq);
    const int take = seq.num_tokens() - seq.computed - static_cast<int>(hit.blocks * options_.block_size);
    if (!batch_.empty() && take > budget) break;  // a lone long prompt still runs
    const int64_t need_all = BlocksFor(seq.num_tokens() + 1) - seq.blocks;
    if (need_all - hit.blocks + hit.free_blocks > blocks_free()) break;
    TakeCachedPrefix(seq, hit);
    AdmitFront(seq, need_all, seq.num_tokens(), take);
    budget -= take;
  }
  if (!batch_.empty()) return;  // a prefill step: decodes wait
  for (size_t i = 0; i < running_.size(); ++i) {
    SimSeq& seq = seqs[running_[i]];
    const int take = seq.num_tokens() - seq.computed;
    if (!GrowOrPreempt(seqs, i, take, out)) break;
    Schedule(seq, take);
  }
}

double SimWorker::StartStep(std::vector<SimSeq>& seqs, StepOutcome* out) {
  batch_.clear();
  shape_ = StepShape{};
  if (options_.chunked_prefill) {
    PlanChunked(seqs, out);
  } else {
    PlanSeparate(seqs, out);
  }
  if (batch_.empty()) return 0;
  busy_ = true;
  const double dt = StepSeconds(*profile_, shape_);
  busy_s_ += dt;
  return dt;
}

void SimWorker::FinishStep(std::vector<SimSeq>& seqs, StepOutcome* out) {
  busy_ = false;
  ++steps_;
  bool any_finished = false;
  for (const auto& [id, take] : batch_) {
    SimSeq& seq = seqs[id];
    seq.computed += take;
    if (!seq.block_hashes.empty()) CommitBlocks(seq);
    if (seq.computed < seq.num_tokens()) continue;  // a prefill chunk
    ++seq.generated;
    out->tokens.push_back(id);
    if (seq.generated >= seq.max_tokens) {
      seq.finished = true;
      Free(seq);
      out->finished.push_back(id);
      any_finished = true;
    }
  }
  batch_.clear();
  if (any_finished) {
    std::erase_if(running_, [&](int64_t id) { return seqs[id].finished; });
  }
}

}  // namespace ferry::sim
