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
  blocks_free_ -= need;
  seq.blocks = need;
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
  blocks_free_ -= need;
  seq.blocks += need;
  return true;
}

void SimWorker::Free(SimSeq& seq) {
  blocks_free_ += seq.blocks;
  seq.blocks = 0;
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
    // each other chunk by chunk.
    const int64_t need_all = BlocksFor(seq.num_tokens() + 1) - seq.blocks;
    if (need_all > blocks_free()) break;
    const int take = std::min(seq.num_tokens() - seq.computed, budget);
    AdmitFront(seq, need_all, seq.computed + take, take);
    budget -= take;
  }
}

void SimWorker::PlanSeparate(std::vector<SimSeq>& seqs, StepOutcome* out) {
  int budget = options_.max_num_batched_tokens;
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_num_seqs) {
    SimSeq& seq = seqs[waiting_.front()];
    const int take = seq.num_tokens() - seq.computed;
    if (!batch_.empty() && take > budget) break;  // a lone long prompt still runs
    const int64_t need_all = BlocksFor(seq.num_tokens() + 1) - seq.blocks;
    if (need_all > blocks_free()) break;
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
