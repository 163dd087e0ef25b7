// The host-memory tier of the prefix cache: a fixed number of block-sized
// slots in host memory holding KV blocks the pool evicted, keyed by the same
// content hash (and confirmed against the same parent hash, extra key and
// tokens, so a 64-bit collision is a miss). When the pool reuses a cached
// block, its content is copied here first; a prefix match that runs past the
// pool's cached blocks continues here, and a hit is copied back into a fresh
// pool block instead of being recomputed.
//
// The tiers are exclusive: a hash lives either in the pool or here, never in
// both. Slots are reused least recently stored first.
//
// The copies themselves go through KvBlockIo (the backend that owns the
// pool's memory). Threading: like BlockPool, one owner thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ferry {

// Whole-block copies between the pool's storage (wherever the backend keeps
// it) and host memory.
class KvBlockIo {
 public:
  virtual ~KvBlockIo() = default;
  // Copies pool block `block` into `out` (bytes_per_block bytes).
  virtual absl::Status ReadBlock(int32_t block, std::span<std::byte> out) = 0;
  // Copies `in` (bytes_per_block bytes) into pool block `block`.
  virtual absl::Status WriteBlock(int32_t block, std::span<const std::byte> in) = 0;
};

struct HostTierOptions {
  int64_t num_blocks = 0;       // slots; 0 is not allowed (no tier at all then)
  int64_t bytes_per_block = 0;  // as the backend stores one block
  int block_size = 16;          // tokens per block
};

// What identifies a block's content (see BlockPool's collision check).
struct BlockContentKey {
  uint64_t hash = 0;
  uint64_t parent_hash = 0;
  uint64_t extra_key = 0;
  std::span<const int32_t> tokens;  // block_size of them
};

struct HostTierStats {
  int64_t num_blocks = 0;   // capacity in blocks
  int64_t num_used = 0;     // slots holding a block
  int64_t bytes_per_block = 0;
  int64_t swap_out_blocks = 0;  // blocks copied in from the pool
  int64_t swap_in_blocks = 0;   // blocks copied back to the pool
  int64_t swap_out_failures = 0;
  int64_t swap_in_failures = 0;
  int64_t num_evictions = 0;    // blocks dropped to make room
  int64_t swap_out_bytes() const { return swap_out_blocks * bytes_per_block; }
  int64_t swap_in_bytes() const { return swap_in_blocks * bytes_per_block; }
};

class HostTier {
 public:
  static constexpr int64_t kNoSlot = -1;

  // InvalidArgument for non-positive sizes or a null `io`; ResourceExhausted
  // when the host memory cannot be had. `io` must outlive the tier.
  static absl::StatusOr<std::unique_ptr<HostTier>> Create(const HostTierOptions& options, KvBlockIo* io);
  HostTier(const HostTier&) = delete;
  HostTier& operator=(const HostTier&) = delete;

  int block_size() const { return block_size_; }
  int64_t num_blocks() const { return static_cast<int64_t>(slots_.size()); }
  int64_t num_used() const { return static_cast<int64_t>(map_.size()); }
  HostTierStats stats() const;

  struct StoreResult {
    // False when the block was not kept: no slot could be freed (all
    // pinned), the copy failed, or another content holds the hash here.
    bool stored = false;
    std::vector<uint64_t> dropped;  // hashes that left the tier to make room
  };
  // Copies pool block `block` here under `key`, dropping the least recently
  // stored unpinned block when full. A key already here is refreshed, not
  // copied again.
  StoreResult Store(const BlockContentKey& key, int32_t block);

  // The slot holding exactly `key`'s content, or kNoSlot (also on a hash
  // collision, which is logged).
  int64_t Find(const BlockContentKey& key) const;
  bool Contains(uint64_t hash) const { return map_.contains(hash); }
  // Every hash held here, sorted.
  std::vector<uint64_t> Hashes() const;

  // A pinned slot is never dropped to make room (while its content is about
  // to be copied back). Pin and Unpin nest no deeper than one level.
  void Pin(int64_t slot);
  void Unpin(int64_t slot);
  // Copies `slot` into pool block `block` and forgets it (the pool caches the
  // hash from now on). On a copy failure the slot is kept (unpinned) and the
  // error returned.
  absl::Status MoveToPool(int64_t slot, int32_t block);
  // Forgets `hash` if held (the pool cached the same content itself).
  void Erase(uint64_t hash);

  // Internal when the slot lists and the map disagree (a bug).
  absl::Status CheckInvariants() const;
  // Slots in eviction order, first to go first (for tests).
  std::vector<uint64_t> LruHashesForTest() const;

 private:
  static constexpr int64_t kNone = -1;
  struct Slot {
    bool used = false;
    bool pinned = false;
    uint64_t hash = 0;
    uint64_t parent_hash = 0;
    uint64_t extra_key = 0;
    int64_t prev = kNone;  // LRU links while used and not pinned
    int64_t next = kNone;
  };

  HostTier(const HostTierOptions& options, KvBlockIo* io, std::unique_ptr<std::byte[]> memory);
  std::span<std::byte> SlotBytes(int64_t slot);
  std::span<int32_t> SlotTokens(int64_t slot);
  std::span<const int32_t> SlotTokens(int64_t slot) const;
  void LinkTail(int64_t slot);
  void Unlink(int64_t slot);
  void Release(int64_t slot);

  int block_size_;
  int64_t bytes_per_block_;
  KvBlockIo* io_;
  std::unique_ptr<std::byte[]> memory_;
  std::vector<Slot> slots_;
  std::vector<int32_t> tokens_;       // [slot][block_size]
  std::vector<int64_t> free_slots_;   // unused slots
  int64_t lru_head_ = kNone;          // least recently stored
  int64_t lru_tail_ = kNone;
  absl::flat_hash_map<uint64_t, int64_t> map_;  // hash -> slot
  HostTierStats counters_;
};

}  // namespace ferry
