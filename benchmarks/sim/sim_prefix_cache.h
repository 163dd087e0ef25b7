// The prefix cache of one simulated engine, as kvcache/BlockPool keeps it
// but over block hashes instead of block ids: a full prompt block, once
// computed, is registered under its hash; later prompts that start with the
// same blocks take references to it instead of computing them. A cached
// block nobody references is free but reusable: it waits in LRU order (the
// last block of a sequence first, as a BlockTable releases them) until an
// allocation needs it, which evicts it. The owner (SimWorker) keeps the
// count of free blocks, cached ones included; this class knows which of
// them are cached.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "kvcache/block_pool.h"

namespace ferry::sim {

struct PrefixMatch {
  int64_t blocks = 0;       // leading blocks found
  int64_t free_blocks = 0;  // of those, unreferenced (they leave the free pool when taken)
};

class SimPrefixCache {
 public:
  // The longest run of leading `hashes` (at most `max_blocks`) that is
  // cached. Changes nothing.
  PrefixMatch Match(std::span<const uint64_t> hashes, int64_t max_blocks) const;
  // Takes a reference to each of `hashes`, all cached (a Match result).
  void Acquire(std::span<const uint64_t> hashes);
  // Registers a block just computed, with one reference; false (and no
  // change) when the hash is cached already: that copy stays private.
  bool Register(uint64_t hash);
  // Drops one reference to each of `hashes`, the last first; returns how
  // many became free.
  int64_t Release(std::span<const uint64_t> hashes);
  // Forgets up to `n` free cached blocks, least recently released first,
  // so an allocation can reuse them; returns how many.
  int64_t Evict(int64_t n);

  int64_t num_cached() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t num_free_cached() const { return static_cast<int64_t>(free_.size()); }
  int64_t num_evicted() const { return num_evicted_; }
  // The net change since the last call, for the heartbeat's stored/removed
  // lists (NetBlockHashChanges, as a worker's heartbeat sends them).
  void TakeEvents(std::vector<uint64_t>* stored, std::vector<uint64_t>* removed);

 private:
  struct Entry {
    int64_t refs = 0;
    std::list<uint64_t>::iterator free_at;  // valid when refs == 0
  };
  absl::flat_hash_map<uint64_t, Entry> blocks_;
  std::list<uint64_t> free_;  // eviction order: front first
  std::vector<BlockHashEvent> events_;  // since the last TakeEvents
  int64_t num_evicted_ = 0;
};

}  // namespace ferry::sim
