// Which worker caches which prompt blocks, by content hash, so prefix-aware
// dispatch can count how much of a prompt each worker already holds. Fed
// from two sources: the blocks a worker reports stored/removed in its
// heartbeats, and the prompts the scheduler itself sent there (an estimate
// that needs nothing from the worker). Each worker keeps at most
// `max_blocks_per_worker` hashes, the oldest forgotten first.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

namespace ferry {

class PrefixIndex {
 public:
  explicit PrefixIndex(size_t max_blocks_per_worker = 1 << 16) : max_blocks_(max_blocks_per_worker) {}

  void Insert(const std::string& worker_id, std::span<const uint64_t> block_hashes);
  void Remove(const std::string& worker_id, std::span<const uint64_t> block_hashes);
  void DropWorker(const std::string& worker_id);

  // How many leading blocks of a prompt (its chained block hashes, in
  // order) `worker_id` holds.
  int64_t MatchBlocks(const std::string& worker_id, std::span<const uint64_t> block_hashes) const;
  size_t NumBlocks(const std::string& worker_id) const;

 private:
  struct Entry {
    absl::flat_hash_set<uint64_t> hashes;
    std::deque<uint64_t> order;  // insertion order, may hold removed hashes
  };
  size_t max_blocks_;
  absl::flat_hash_map<std::string, Entry> workers_;
};

}  // namespace ferry
