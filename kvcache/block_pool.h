// Bookkeeping for paged KV blocks: which blocks are free, who references
// them, and which full blocks hold a known token prefix (the prefix cache).
// The memory itself is KvCache; a block id here is a block index there.
//
// Threading: a BlockPool and every BlockRef/BlockTable pointing into it are
// owned and used by one thread (the engine step loop). There are no locks;
// other threads must go through that loop.
//
// Free blocks sit in one list in eviction order. A freed block that holds a
// cached (hashed) prefix goes to the tail and stays findable by MatchPrefix
// until allocation reaches it at the head; only then is its hash forgotten.
// So least recently used prefixes are evicted first without a separate LRU.
// A freed block without a hash goes to the head, as it has nothing worth
// keeping and should be reused before any cached one.
//
// The pool must outlive every BlockRef and BlockTable that refers to it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvcache/block_ref.h"
#include "kvcache/block_table.h"
#include "kvcache/host_tier.h"
#include "kvcache/kv_cache.h"

namespace ferry {

struct BlockPoolOptions {
  int64_t num_blocks = 0;
  int block_size = 16;  // tokens per block
  // Identifies the model (and anything else that changes the KV values for the
  // same tokens, e.g. its dtype). Mixed into every content hash so that hashes
  // from different models never match, also in a cluster-wide index.
  std::string model_key;
  // Hash events kept for DrainEvents before they are dropped (and the drain
  // reports an overflow).
  int64_t max_pending_events = 1 << 20;
  // Second tier for evicted cached blocks (not owned; must outlive the pool),
  // or null for none. Its block size must match.
  HostTier* host_tier = nullptr;
};

// One change to the set of cached block hashes.
struct BlockHashEvent {
  enum class Kind { kStored, kRemoved };
  Kind kind;
  uint64_t hash;
};

struct BlockHashEvents {
  std::vector<BlockHashEvent> events;  // in the order they happened
  // Events were dropped because nobody drained them; a consumer should rebuild
  // its view from BlockPool::CachedHashes().
  bool overflowed = false;
  // `events` starts from an empty cache (a snapshot of every cached hash,
  // then what followed): the consumer forgets what it knew before applying
  // them. Set by a drainer that turns an overflow into a snapshot.
  bool reset = false;
};

// The net change of `events` (in the order they happened): the hashes whose
// last event stored them and those whose last event removed them, each once,
// in order of their last event. A hash evicted and cached again between two
// drains ends up stored, one cached and then evicted removed: applying
// `stored` and `removed` in either order gives the right set.
void NetBlockHashChanges(std::span<const BlockHashEvent> events, std::vector<uint64_t>* stored,
                         std::vector<uint64_t>* removed);

struct BlockPoolStats {
  int64_t num_blocks = 0;
  int64_t num_free = 0;             // reference count 0, cached or not
  int64_t num_used = 0;             // reference count > 0
  int64_t num_cached = 0;           // findable by MatchPrefix (used or free)
  int64_t prefix_queries = 0;       // MatchPrefix calls
  int64_t prefix_query_blocks = 0;  // full blocks asked for
  int64_t prefix_hit_blocks = 0;    // full blocks found
  int64_t prefix_query_tokens = 0;  // tokens asked for
  int64_t prefix_hit_tokens = 0;    // tokens found
  // Of the hits above, those found in the host tier and copied back.
  int64_t prefix_hit_blocks_host = 0;
  int64_t prefix_hit_tokens_host = 0;
  int64_t num_evictions = 0;        // cached blocks reused for other content
};

// A block copy the caller must perform (KvCache block `src` to block `dst`)
// before the step writes into `dst`.
struct BlockCopy {
  int32_t src;
  int32_t dst;
};

// Copies whole blocks in `cache`.
void CopyBlocks(KvCache& cache, std::span<const BlockCopy> copies);

// Content hash of one full block: H(parent block hash, token ids, extra key).
// Stable across processes and machines.
uint64_t HashBlockTokens(uint64_t parent_hash, std::span<const int32_t> tokens, uint64_t extra_key);

class BlockPool {
 public:
  // InvalidArgument when num_blocks or block_size is not positive, or
  // num_blocks does not fit an int32 block id.
  static absl::StatusOr<std::unique_ptr<BlockPool>> Create(const BlockPoolOptions& options);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  int block_size() const { return block_size_; }
  int64_t num_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t num_free() const { return num_free_; }
  int64_t num_used() const { return num_blocks() - num_free_; }
  int64_t num_cached() const { return static_cast<int64_t>(cached_.size()); }
  BlockPoolStats stats() const;
  // Parent hash of every sequence's first block (derived from model_key).
  uint64_t root_hash() const { return root_hash_; }

  // A new, empty table for a sequence (see BlockTable for `extra_key`).
  BlockTable NewTable(uint64_t extra_key = 0) const { return BlockTable(block_size_, extra_key); }

  bool CanAllocate(int64_t n) const { return n >= 0 && n <= num_free_; }
  // n fresh blocks, each with one reference, or nullopt (and no change at all)
  // when fewer than n blocks are free; the caller then preempts. Taking a free
  // cached block evicts its hash.
  std::optional<std::vector<BlockRef>> Allocate(int64_t n);

  // Appends to the empty `table` the longest chain of cached full blocks that
  // holds a prefix of `tokens` (hashed with table.extra_key()), taking a
  // reference to each (a free block leaves the free list). Where the pool's
  // chain ends, the match goes on in the host tier: each hit there is copied
  // back into a freshly allocated block (which is then cached here again); it
  // stops at the first miss, at a failed copy, or when no block is free. Sets
  // the table's token count to the tokens found. Returns that count, a multiple of
  // block_size. Pass all prompt tokens but the last when the model must still
  // compute logits for the last one, so the match never covers a token that
  // will be written again. FailedPrecondition when the table is not empty or
  // has another block size.
  absl::StatusOr<int64_t> MatchPrefix(std::span<const int32_t> tokens, BlockTable& table);
  // MatchPrefix without counting a prefix query (for exporting cached blocks
  // to another worker).
  absl::StatusOr<int64_t> PinCachedPrefix(std::span<const int32_t> tokens, BlockTable& table);
  // Tokens MatchPrefix would find now in either tier, without taking
  // references or counting a query (for scheduling and routing decisions).
  int64_t CountCachedPrefixTokens(std::span<const int32_t> tokens, uint64_t extra_key = 0) const;

  // Hashes and registers every block of `table` that has become full since the
  // last call (blocks [table.num_hashed_blocks(), table.num_tokens() /
  // block_size)). `tokens` are the sequence's tokens, at least
  // table.num_tokens() of them. When another block already caches the same
  // content, this one stays private and is freed normally.
  // InvalidArgument when `tokens` is shorter than table.num_tokens() or the
  // table has fewer blocks than its token count needs; FailedPrecondition when
  // the table has another block size.
  absl::Status CommitFullBlocks(BlockTable& table, std::span<const int32_t> tokens);

  // Before writing tokens at table.num_tokens() and after: every block from
  // the one holding that position on that is shared with another table gets
  // replaced by a private block. Returns the copies the caller must do
  // (CopyBlocks) for replaced blocks that already hold tokens: empty when none
  // is needed. nullopt, with nothing changed, when there are too few free
  // blocks (the caller preempts).
  std::optional<std::vector<BlockCopy>> MakeWritable(BlockTable& table);

  // Events since the last call. A hash is stored while either tier holds it:
  // moving between the tiers is no event, leaving both is kRemoved.
  BlockHashEvents DrainEvents();
  // Every hash MatchPrefix can find now, in either tier, sorted.
  std::vector<uint64_t> CachedHashes() const;
  // The host tier, or null.
  const HostTier* host_tier() const { return host_; }

  // Reference count of a block (for tests and debugging).
  int ref_count(int32_t block) const { return blocks_[block].ref_count; }
  bool is_cached(int32_t block) const { return blocks_[block].cached; }
  // Free blocks from next-to-be-allocated to last.
  std::vector<int32_t> FreeListForTest() const;

  // Checks the free list, counts and cache map against each other. Internal
  // if anything is inconsistent (a bug).
  absl::Status CheckInvariants() const;

 private:
  friend class BlockRef;
  static constexpr int32_t kNone = -1;

  struct BlockState {
    int32_t ref_count = 0;
    int32_t prev = kNone;  // free list links, valid while ref_count == 0
    int32_t next = kNone;
    bool cached = false;  // registered in cached_ under `hash`
    uint64_t hash = 0;
    // Kept with a cached block so a hash hit is confirmed against the real
    // content; a 64-bit collision then cannot hand out another prefix's KV.
    uint64_t parent_hash = 0;
    uint64_t extra_key = 0;
  };

  explicit BlockPool(const BlockPoolOptions& options);

  void IncRef(int32_t block);
  void DecRef(int32_t block);
  void PushFreeHead(int32_t block);
  void PushFreeTail(int32_t block);
  void Unlink(int32_t block);
  int32_t PopFreeHead();
  void Evict(int32_t block);
  void RecordEvent(BlockHashEvent::Kind kind, uint64_t hash);
  // The cached block whose content is exactly (parent, tokens, extra_key) with
  // hash `hash`, or kNone.
  int32_t FindCached(uint64_t hash, uint64_t parent_hash, std::span<const int32_t> tokens,
                     uint64_t extra_key) const;
  std::span<const int32_t> CachedTokens(int32_t block) const;
  absl::StatusOr<int64_t> MatchPrefixImpl(std::span<const int32_t> tokens, BlockTable& table, bool count);
  // Copies the host tier's `slot` (content `key`) into a fresh block and
  // caches it here; kNone when no block is free or the copy failed.
  int32_t SwapIn(int64_t slot, const BlockContentKey& key);

  HostTier* host_;
  int block_size_;
  uint64_t root_hash_;
  int64_t max_pending_events_;
  std::vector<BlockState> blocks_;
  // Token ids of each cached block, [block][block_size].
  std::vector<int32_t> cached_tokens_;
  int32_t free_head_ = kNone;
  int32_t free_tail_ = kNone;
  int64_t num_free_ = 0;
  absl::flat_hash_map<uint64_t, int32_t> cached_;  // content hash -> block
  BlockHashEvents pending_events_;
  BlockPoolStats counters_;  // only the prefix/eviction counters are kept here
};

}  // namespace ferry
