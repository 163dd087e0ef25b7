#include "kvcache/block_pool.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/checksum.h"
#include "common/logging.h"

namespace ferry {
namespace {

// Token ids are hashed as their in-memory bytes; content hashes are shared
// between machines, so they must all agree on byte order.
static_assert(std::endian::native == std::endian::little,
              "content hashes assume a little-endian host");

// Changing how hashes are formed must change this, so that old and new hashes
// never meet in one cluster-wide index.
constexpr uint64_t kHashSchemeSeed = 0x4645'5252'594b'5631ULL;  // "FERRYKV1"

void PutLe64(uint64_t v, unsigned char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}

}  // namespace

uint64_t HashBlockTokens(uint64_t parent_hash, std::span<const int32_t> tokens,
                         uint64_t extra_key) {
  std::array<unsigned char, 16> prefix;
  PutLe64(parent_hash, prefix.data());
  PutLe64(extra_key, prefix.data() + 8);
  uint64_t seed = Checksum64(prefix.data(), prefix.size(), kHashSchemeSeed);
  return Checksum64(tokens.data(), tokens.size_bytes(), seed);
}

void CopyBlocks(KvCache& cache, std::span<const BlockCopy> copies) {
  const size_t bytes = static_cast<size_t>(cache.shape().bytes_per_block());
  for (const BlockCopy& c : copies) {
    if (c.src == c.dst) continue;
    std::memcpy(cache.Block(c.dst), cache.Block(c.src), bytes);
  }
}

// ---- BlockRef ----

BlockRef& BlockRef::operator=(BlockRef&& other) noexcept {
  if (this != &other) {
    Reset();
    pool_ = std::exchange(other.pool_, nullptr);
    id_ = std::exchange(other.id_, -1);
  }
  return *this;
}

BlockRef BlockRef::Share() const {
  if (pool_ == nullptr) return BlockRef();
  pool_->IncRef(id_);
  return BlockRef(pool_, id_);
}

void BlockRef::Reset() {
  if (pool_ == nullptr) return;
  pool_->DecRef(id_);
  pool_ = nullptr;
  id_ = -1;
}

int BlockRef::ref_count() const { return pool_ == nullptr ? 0 : pool_->ref_count(id_); }

// ---- BlockPool ----

absl::StatusOr<std::unique_ptr<BlockPool>> BlockPool::Create(const BlockPoolOptions& options) {
  if (options.num_blocks <= 0 || options.block_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("block pool needs positive num_blocks and block_size (got ",
                     options.num_blocks, " and ", options.block_size, ")"));
  }
  if (options.num_blocks > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_blocks ", options.num_blocks, " does not fit a 32-bit block id"));
  }
  if (options.host_tier != nullptr && options.host_tier->block_size() != options.block_size) {
    return absl::InvalidArgumentError(absl::StrCat("host tier block size ", options.host_tier->block_size(),
                                                   " differs from the pool's ", options.block_size));
  }
  return std::unique_ptr<BlockPool>(new BlockPool(options));
}

BlockPool::BlockPool(const BlockPoolOptions& options)
    : host_(options.host_tier),
      block_size_(options.block_size),
      root_hash_(Checksum64(options.model_key, kHashSchemeSeed)),
      max_pending_events_(options.max_pending_events),
      blocks_(static_cast<size_t>(options.num_blocks)),
      cached_tokens_(static_cast<size_t>(options.num_blocks) * options.block_size) {
  // Ascending ids from the head: the first allocations get low block ids,
  // which makes logs and tests easy to read.
  for (int32_t b = 0; b < static_cast<int32_t>(blocks_.size()); ++b) PushFreeTail(b);
}

BlockPool::~BlockPool() {
  if (num_used() != 0) {
    Logger("kvcache")->error("block pool destroyed with {} blocks still referenced", num_used());
  }
}

BlockPoolStats BlockPool::stats() const {
  BlockPoolStats s = counters_;
  s.num_blocks = num_blocks();
  s.num_free = num_free_;
  s.num_used = num_used();
  s.num_cached = num_cached();
  return s;
}

void BlockPool::IncRef(int32_t block) {
  BlockState& s = blocks_[block];
  if (s.ref_count == 0) Unlink(block);
  ++s.ref_count;
}

void BlockPool::DecRef(int32_t block) {
  BlockState& s = blocks_[block];
  if (--s.ref_count > 0) return;
  if (s.cached) {
    PushFreeTail(block);
  } else {
    PushFreeHead(block);
  }
}

void BlockPool::PushFreeHead(int32_t block) {
  BlockState& s = blocks_[block];
  s.prev = kNone;
  s.next = free_head_;
  if (free_head_ != kNone) {
    blocks_[free_head_].prev = block;
  } else {
    free_tail_ = block;
  }
  free_head_ = block;
  ++num_free_;
}

void BlockPool::PushFreeTail(int32_t block) {
  BlockState& s = blocks_[block];
  s.next = kNone;
  s.prev = free_tail_;
  if (free_tail_ != kNone) {
    blocks_[free_tail_].next = block;
  } else {
    free_head_ = block;
  }
  free_tail_ = block;
  ++num_free_;
}

void BlockPool::Unlink(int32_t block) {
  BlockState& s = blocks_[block];
  if (s.prev != kNone) {
    blocks_[s.prev].next = s.next;
  } else {
    free_head_ = s.next;
  }
  if (s.next != kNone) {
    blocks_[s.next].prev = s.prev;
  } else {
    free_tail_ = s.prev;
  }
  s.prev = s.next = kNone;
  --num_free_;
}

int32_t BlockPool::PopFreeHead() {
  int32_t block = free_head_;
  Unlink(block);
  return block;
}

void BlockPool::Evict(int32_t block) {
  BlockState& s = blocks_[block];
  if (!s.cached) return;
  cached_.erase(s.hash);
  s.cached = false;
  ++counters_.num_evictions;
  bool kept = false;
  if (host_ != nullptr) {
    // The content is still intact: the block is only being handed out.
    HostTier::StoreResult r =
        host_->Store(BlockContentKey{s.hash, s.parent_hash, s.extra_key, CachedTokens(block)}, block);
    for (uint64_t dropped : r.dropped) RecordEvent(BlockHashEvent::Kind::kRemoved, dropped);
    kept = r.stored;
  }
  if (!kept) RecordEvent(BlockHashEvent::Kind::kRemoved, s.hash);
}

void BlockPool::RecordEvent(BlockHashEvent::Kind kind, uint64_t hash) {
  if (static_cast<int64_t>(pending_events_.events.size()) >= max_pending_events_) {
    pending_events_.events.clear();
    pending_events_.overflowed = true;
  }
  pending_events_.events.push_back({kind, hash});
}

BlockHashEvents BlockPool::DrainEvents() { return std::exchange(pending_events_, {}); }

void NetBlockHashChanges(std::span<const BlockHashEvent> events, std::vector<uint64_t>* stored,
                         std::vector<uint64_t>* removed) {
  // Index of each hash's last event.
  absl::flat_hash_map<uint64_t, size_t> last;
  last.reserve(events.size());
  for (size_t i = 0; i < events.size(); ++i) last[events[i].hash] = i;
  for (size_t i = 0; i < events.size(); ++i) {
    if (last[events[i].hash] != i) continue;
    (events[i].kind == BlockHashEvent::Kind::kStored ? stored : removed)->push_back(events[i].hash);
  }
}

std::vector<uint64_t> BlockPool::CachedHashes() const {
  std::vector<uint64_t> out;
  out.reserve(cached_.size());
  for (const auto& [hash, block] : cached_) out.push_back(hash);
  if (host_ != nullptr) {
    std::vector<uint64_t> host = host_->Hashes();
    out.insert(out.end(), host.begin(), host.end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::vector<BlockRef>> BlockPool::Allocate(int64_t n) {
  if (!CanAllocate(n)) return std::nullopt;
  std::vector<BlockRef> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int32_t block = PopFreeHead();
    Evict(block);
    blocks_[block].ref_count = 1;
    out.push_back(BlockRef(this, block));
  }
  return out;
}

std::span<const int32_t> BlockPool::CachedTokens(int32_t block) const {
  return std::span<const int32_t>(cached_tokens_)
      .subspan(static_cast<size_t>(block) * block_size_, block_size_);
}

int32_t BlockPool::FindCached(uint64_t hash, uint64_t parent_hash, std::span<const int32_t> tokens,
                              uint64_t extra_key) const {
  auto it = cached_.find(hash);
  if (it == cached_.end()) return kNone;
  int32_t block = it->second;
  const BlockState& s = blocks_[block];
  std::span<const int32_t> stored = CachedTokens(block);
  if (s.parent_hash != parent_hash || s.extra_key != extra_key ||
      !std::equal(stored.begin(), stored.end(), tokens.begin(), tokens.end())) {
    Logger("kvcache")->warn("content hash collision on {:016x}; treating as a miss", hash);
    return kNone;
  }
  return block;
}

int64_t BlockPool::CountCachedPrefixTokens(std::span<const int32_t> tokens,
                                           uint64_t extra_key) const {
  uint64_t parent = root_hash_;
  int64_t found = 0;
  const size_t full = tokens.size() / block_size_;
  for (size_t i = 0; i < full; ++i) {
    auto block_tokens = tokens.subspan(i * block_size_, block_size_);
    uint64_t h = HashBlockTokens(parent, block_tokens, extra_key);
    if (FindCached(h, parent, block_tokens, extra_key) == kNone &&
        (host_ == nullptr ||
         host_->Find(BlockContentKey{h, parent, extra_key, block_tokens}) == HostTier::kNoSlot)) {
      break;
    }
    found += block_size_;
    parent = h;
  }
  return found;
}

int32_t BlockPool::SwapIn(int64_t slot, const BlockContentKey& key) {
  // Pinned, the slot cannot be dropped when the allocation below pushes
  // another evicted block into the host tier.
  host_->Pin(slot);
  if (!CanAllocate(1)) {
    host_->Unpin(slot);
    return kNone;
  }
  const int32_t block = PopFreeHead();
  Evict(block);
  if (absl::Status st = host_->MoveToPool(slot, block); !st.ok()) {
    Logger("kvcache")->warn("host tier: copying a block back failed: {}", st.ToString());
    PushFreeHead(block);
    return kNone;
  }
  BlockState& s = blocks_[block];
  s.ref_count = 0;
  s.cached = true;
  s.hash = key.hash;
  s.parent_hash = key.parent_hash;
  s.extra_key = key.extra_key;
  std::copy(key.tokens.begin(), key.tokens.end(),
            cached_tokens_.begin() + static_cast<ptrdiff_t>(block) * block_size_);
  cached_.emplace(key.hash, block);
  PushFreeTail(block);  // a free cached block, as if it had never left
  // Moving between the tiers is no event: the hash stayed stored.
  return block;
}

absl::StatusOr<int64_t> BlockPool::MatchPrefix(std::span<const int32_t> tokens, BlockTable& table) {
  return MatchPrefixImpl(tokens, table, /*count=*/true);
}

absl::StatusOr<int64_t> BlockPool::PinCachedPrefix(std::span<const int32_t> tokens, BlockTable& table) {
  return MatchPrefixImpl(tokens, table, /*count=*/false);
}

absl::StatusOr<int64_t> BlockPool::MatchPrefixImpl(std::span<const int32_t> tokens, BlockTable& table,
                                                   bool count) {
  if (table.num_blocks() != 0 || table.num_hashed_blocks() != 0 || table.num_tokens() != 0) {
    return absl::FailedPreconditionError("MatchPrefix needs an empty block table");
  }
  if (table.block_size() != block_size_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "block table has block size ", table.block_size(), ", pool has ", block_size_));
  }
  const uint64_t extra_key = table.extra_key();
  const size_t full = tokens.size() / block_size_;
  uint64_t parent = root_hash_;
  int64_t host_hits = 0;
  for (size_t i = 0; i < full; ++i) {
    auto block_tokens = tokens.subspan(i * block_size_, block_size_);
    uint64_t h = HashBlockTokens(parent, block_tokens, extra_key);
    int32_t block = FindCached(h, parent, block_tokens, extra_key);
    if (block == kNone && host_ != nullptr) {
      const BlockContentKey key{h, parent, extra_key, block_tokens};
      const int64_t slot = host_->Find(key);
      if (slot != HostTier::kNoSlot) {
        block = SwapIn(slot, key);
        if (block != kNone) ++host_hits;
      }
    }
    if (block == kNone) break;
    IncRef(block);  // a free block leaves the free list: it is in use again
    table.blocks_.push_back(BlockRef(this, block));
    table.block_hashes_.push_back(h);
    parent = h;
  }
  const int64_t hit_blocks = table.num_blocks();
  const int64_t hit_tokens = hit_blocks * block_size_;
  table.num_tokens_ = hit_tokens;
  if (!count) return hit_tokens;
  counters_.prefix_hit_blocks_host += host_hits;
  counters_.prefix_hit_tokens_host += host_hits * block_size_;
  ++counters_.prefix_queries;
  counters_.prefix_query_blocks += static_cast<int64_t>(full);
  counters_.prefix_hit_blocks += hit_blocks;
  counters_.prefix_query_tokens += static_cast<int64_t>(tokens.size());
  counters_.prefix_hit_tokens += hit_tokens;
  return hit_tokens;
}

absl::Status BlockPool::CommitFullBlocks(BlockTable& table, std::span<const int32_t> tokens) {
  if (table.block_size() != block_size_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "block table has block size ", table.block_size(), ", pool has ", block_size_));
  }
  if (static_cast<int64_t>(tokens.size()) < table.num_tokens()) {
    return absl::InvalidArgumentError(absl::StrCat("table stores ", table.num_tokens(),
                                                   " tokens but only ", tokens.size(),
                                                   " token ids were given"));
  }
  if (table.num_tokens() > table.capacity_tokens()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "table stores ", table.num_tokens(), " tokens in blocks for ", table.capacity_tokens()));
  }
  const uint64_t extra_key = table.extra_key();
  const int full = static_cast<int>(table.num_tokens() / block_size_);
  for (int i = table.num_hashed_blocks(); i < full; ++i) {
    const uint64_t parent = i == 0 ? root_hash_ : table.block_hashes_[i - 1];
    auto block_tokens = tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_);
    const uint64_t h = HashBlockTokens(parent, block_tokens, extra_key);
    table.block_hashes_.push_back(h);
    const int32_t block = table.blocks_[i].id();
    BlockState& s = blocks_[block];
    if (s.cached) {
      // Found by MatchPrefix or shared by Fork: the content must be what the
      // tokens say, or other sequences would read the wrong keys and values.
      if (s.hash != h) {
        table.block_hashes_.pop_back();
        return absl::InvalidArgumentError(absl::StrCat(
            "block ", i, " of the table is cached with other tokens than the ones given"));
      }
      continue;
    }
    if (cached_.contains(h)) continue;  // same content cached elsewhere: stay private
    cached_.emplace(h, block);
    const bool was_on_host = host_ != nullptr && host_->Contains(h);
    if (was_on_host) host_->Erase(h);  // the tiers are exclusive; the hash stays stored
    s.cached = true;
    s.hash = h;
    s.parent_hash = parent;
    s.extra_key = extra_key;
    std::copy(block_tokens.begin(), block_tokens.end(),
              cached_tokens_.begin() + static_cast<ptrdiff_t>(block) * block_size_);
    if (!was_on_host) RecordEvent(BlockHashEvent::Kind::kStored, h);
  }
  return absl::OkStatus();
}

std::optional<std::vector<BlockCopy>> BlockPool::MakeWritable(BlockTable& table) {
  const int first = static_cast<int>(table.num_tokens() / table.block_size());
  int needed = 0;
  for (int i = first; i < table.num_blocks(); ++i) {
    if (blocks_[table.blocks_[i].id()].ref_count > 1) ++needed;
  }
  std::vector<BlockCopy> copies;
  if (needed == 0) return copies;
  std::optional<std::vector<BlockRef>> fresh = Allocate(needed);
  if (!fresh) return std::nullopt;
  int next = 0;
  for (int i = first; i < table.num_blocks(); ++i) {
    const int32_t old_id = table.blocks_[i].id();
    if (blocks_[old_id].ref_count <= 1) continue;
    BlockRef& replacement = (*fresh)[next++];
    // Only a block that already holds some of this table's tokens has
    // content to carry over; later ones are still empty.
    if (int64_t{i} * table.block_size() < table.num_tokens()) {
      copies.push_back({old_id, replacement.id()});
    }
    table.Replace(i, std::move(replacement));
  }
  return copies;
}

std::vector<int32_t> BlockPool::FreeListForTest() const {
  std::vector<int32_t> out;
  for (int32_t b = free_head_; b != kNone; b = blocks_[b].next) out.push_back(b);
  return out;
}

absl::Status BlockPool::CheckInvariants() const {
  const int64_t n = num_blocks();
  std::vector<char> seen(static_cast<size_t>(n), 0);
  int64_t walked = 0;
  int32_t prev = kNone;
  for (int32_t b = free_head_; b != kNone; b = blocks_[b].next) {
    if (b < 0 || b >= n) return absl::InternalError(absl::StrCat("free list holds bad id ", b));
    if (seen[b]) return absl::InternalError(absl::StrCat("free list loops at block ", b));
    seen[b] = 1;
    if (blocks_[b].prev != prev) {
      return absl::InternalError(absl::StrCat("free list back link broken at block ", b));
    }
    if (blocks_[b].ref_count != 0) {
      return absl::InternalError(
          absl::StrCat("block ", b, " is free with ref_count ", blocks_[b].ref_count));
    }
    prev = b;
    ++walked;
  }
  if (prev != free_tail_) return absl::InternalError("free list tail does not match");
  if (walked != num_free_) {
    return absl::InternalError(
        absl::StrCat("free list has ", walked, " blocks, counter says ", num_free_));
  }
  for (int32_t b = 0; b < n; ++b) {
    const BlockState& s = blocks_[b];
    if (s.ref_count < 0) {
      return absl::InternalError(absl::StrCat("block ", b, " has ref_count ", s.ref_count));
    }
    if (s.ref_count == 0 && !seen[b]) {
      return absl::InternalError(absl::StrCat("unreferenced block ", b, " is not free"));
    }
    if (s.cached) {
      auto it = cached_.find(s.hash);
      if (it == cached_.end() || it->second != b) {
        return absl::InternalError(absl::StrCat("cached block ", b, " missing from the map"));
      }
    }
  }
  for (const auto& [hash, block] : cached_) {
    if (block < 0 || block >= n || !blocks_[block].cached || blocks_[block].hash != hash) {
      return absl::InternalError(absl::StrCat("map entry ", hash, " -> ", block, " is stale"));
    }
    if (host_ != nullptr && host_->Contains(hash)) {
      return absl::InternalError(absl::StrCat("hash ", hash, " is cached in both tiers"));
    }
  }
  if (host_ != nullptr) return host_->CheckInvariants();
  return absl::OkStatus();
}

}  // namespace ferry
