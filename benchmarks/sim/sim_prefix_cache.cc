#include "benchmarks/sim/sim_prefix_cache.h"

#include <algorithm>

namespace ferry::sim {

PrefixMatch SimPrefixCache::Match(std::span<const uint64_t> hashes, int64_t max_blocks) const {
  PrefixMatch m;
  const int64_t limit = std::min<int64_t>(max_blocks, static_cast<int64_t>(hashes.size()));
  for (; m.blocks < limit; ++m.blocks) {
    auto it = blocks_.find(hashes[m.blocks]);
    if (it == blocks_.end()) break;
    if (it->second.refs == 0) ++m.free_blocks;
  }
  return m;
}

void SimPrefixCache::Acquire(std::span<const uint64_t> hashes) {
  for (uint64_t h : hashes) {
    Entry& e = blocks_.at(h);
    if (e.refs++ == 0) free_.erase(e.free_at);
  }
}

bool SimPrefixCache::Register(uint64_t hash) {
  auto [it, inserted] = blocks_.try_emplace(hash);
  if (!inserted) return false;
  it->second.refs = 1;
  events_.push_back({BlockHashEvent::Kind::kStored, hash});
  return true;
}

int64_t SimPrefixCache::Release(std::span<const uint64_t> hashes) {
  int64_t freed = 0;
  for (auto h = hashes.rbegin(); h != hashes.rend(); ++h) {
    Entry& e = blocks_.at(*h);
    if (--e.refs > 0) continue;
    e.free_at = free_.insert(free_.end(), *h);
    ++freed;
  }
  return freed;
}

int64_t SimPrefixCache::Evict(int64_t n) {
  int64_t evicted = 0;
  for (; evicted < n && !free_.empty(); ++evicted) {
    const uint64_t h = free_.front();
    free_.pop_front();
    blocks_.erase(h);
    events_.push_back({BlockHashEvent::Kind::kRemoved, h});
  }
  num_evicted_ += evicted;
  return evicted;
}

void SimPrefixCache::TakeEvents(std::vector<uint64_t>* stored, std::vector<uint64_t>* removed) {
  stored->clear();
  removed->clear();
  NetBlockHashChanges(events_, stored, removed);
  events_.clear();
}

}  // namespace ferry::sim
