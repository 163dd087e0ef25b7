#include "kvcache/host_tier.h"

#include <algorithm>
#include <new>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<HostTier>> HostTier::Create(const HostTierOptions& options, KvBlockIo* io) {
  if (options.num_blocks <= 0 || options.bytes_per_block <= 0 || options.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "host KV tier needs positive num_blocks, bytes_per_block and block_size (got ", options.num_blocks,
        ", ", options.bytes_per_block, ", ", options.block_size, ")"));
  }
  if (io == nullptr) return absl::InvalidArgumentError("host KV tier needs a block copier");
  if (options.num_blocks > (int64_t{1} << 40) / options.bytes_per_block) {
    return absl::InvalidArgumentError(
        absl::StrCat("host KV tier of ", options.num_blocks, " blocks is too large"));
  }
  std::unique_ptr<std::byte[]> memory(
      new (std::nothrow) std::byte[static_cast<size_t>(options.num_blocks * options.bytes_per_block)]);
  if (memory == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", options.num_blocks * options.bytes_per_block,
                                                     " bytes for the host KV tier"));
  }
  return std::unique_ptr<HostTier>(new HostTier(options, io, std::move(memory)));
}

HostTier::HostTier(const HostTierOptions& options, KvBlockIo* io, std::unique_ptr<std::byte[]> memory)
    : block_size_(options.block_size),
      bytes_per_block_(options.bytes_per_block),
      io_(io),
      memory_(std::move(memory)),
      slots_(static_cast<size_t>(options.num_blocks)),
      tokens_(static_cast<size_t>(options.num_blocks) * options.block_size) {
  free_slots_.reserve(slots_.size());
  // Lowest slot first off the back.
  for (int64_t s = num_blocks() - 1; s >= 0; --s) free_slots_.push_back(s);
  counters_.bytes_per_block = bytes_per_block_;
}

HostTierStats HostTier::stats() const {
  HostTierStats s = counters_;
  s.num_blocks = num_blocks();
  s.num_used = num_used();
  return s;
}

std::span<std::byte> HostTier::SlotBytes(int64_t slot) {
  return std::span<std::byte>(memory_.get() + slot * bytes_per_block_, static_cast<size_t>(bytes_per_block_));
}

std::span<int32_t> HostTier::SlotTokens(int64_t slot) {
  return std::span<int32_t>(tokens_).subspan(static_cast<size_t>(slot) * block_size_, block_size_);
}

std::span<const int32_t> HostTier::SlotTokens(int64_t slot) const {
  return std::span<const int32_t>(tokens_).subspan(static_cast<size_t>(slot) * block_size_, block_size_);
}

void HostTier::LinkTail(int64_t slot) {
  Slot& s = slots_[slot];
  s.next = kNone;
  s.prev = lru_tail_;
  if (lru_tail_ != kNone) {
    slots_[lru_tail_].next = slot;
  } else {
    lru_head_ = slot;
  }
  lru_tail_ = slot;
}

void HostTier::Unlink(int64_t slot) {
  Slot& s = slots_[slot];
  if (s.prev != kNone) {
    slots_[s.prev].next = s.next;
  } else {
    lru_head_ = s.next;
  }
  if (s.next != kNone) {
    slots_[s.next].prev = s.prev;
  } else {
    lru_tail_ = s.prev;
  }
  s.prev = s.next = kNone;
}

void HostTier::Release(int64_t slot) {
  Slot& s = slots_[slot];
  if (!s.pinned) Unlink(slot);
  map_.erase(s.hash);
  s = Slot{};
  free_slots_.push_back(slot);
}

HostTier::StoreResult HostTier::Store(const BlockContentKey& key, int32_t block) {
  StoreResult result;
  if (static_cast<int>(key.tokens.size()) != block_size_) return result;
  if (auto it = map_.find(key.hash); it != map_.end()) {
    // Same hash already here: the pool and this tier are exclusive, so this
    // is either the same content (refresh) or a collision (keep the old one).
    const int64_t slot = it->second;
    if (Find(key) == slot && !slots_[slot].pinned) {
      Unlink(slot);
      LinkTail(slot);
      result.stored = true;
    }
    return result;
  }
  if (free_slots_.empty()) {
    if (lru_head_ == kNone) return result;  // every slot pinned
    const int64_t victim = lru_head_;
    result.dropped.push_back(slots_[victim].hash);
    ++counters_.num_evictions;
    Release(victim);
  }
  const int64_t slot = free_slots_.back();
  if (absl::Status st = io_->ReadBlock(block, SlotBytes(slot)); !st.ok()) {
    ++counters_.swap_out_failures;
    Logger("kvcache")->warn("host tier: copying block {} out failed: {}", block, st.ToString());
    return result;  // a block dropped to make room is gone either way
  }
  free_slots_.pop_back();
  Slot& s = slots_[slot];
  s.used = true;
  s.hash = key.hash;
  s.parent_hash = key.parent_hash;
  s.extra_key = key.extra_key;
  std::copy(key.tokens.begin(), key.tokens.end(), SlotTokens(slot).begin());
  LinkTail(slot);
  map_.emplace(key.hash, slot);
  ++counters_.swap_out_blocks;
  result.stored = true;
  return result;
}

int64_t HostTier::Find(const BlockContentKey& key) const {
  auto it = map_.find(key.hash);
  if (it == map_.end()) return kNoSlot;
  const Slot& s = slots_[it->second];
  std::span<const int32_t> stored = SlotTokens(it->second);
  if (s.parent_hash != key.parent_hash || s.extra_key != key.extra_key ||
      !std::equal(stored.begin(), stored.end(), key.tokens.begin(), key.tokens.end())) {
    Logger("kvcache")->warn("host tier: content hash collision on {:016x}; treating as a miss", key.hash);
    return kNoSlot;
  }
  return it->second;
}

std::vector<uint64_t> HostTier::Hashes() const {
  std::vector<uint64_t> out;
  out.reserve(map_.size());
  for (const auto& [hash, slot] : map_) out.push_back(hash);
  std::sort(out.begin(), out.end());
  return out;
}

void HostTier::Pin(int64_t slot) {
  Slot& s = slots_[slot];
  if (!s.used || s.pinned) return;
  Unlink(slot);
  s.pinned = true;
}

void HostTier::Unpin(int64_t slot) {
  Slot& s = slots_[slot];
  if (!s.used || !s.pinned) return;
  s.pinned = false;
  LinkTail(slot);
}

absl::Status HostTier::MoveToPool(int64_t slot, int32_t block) {
  if (slot < 0 || slot >= num_blocks() || !slots_[slot].used) {
    return absl::InvalidArgumentError(absl::StrCat("host tier slot ", slot, " holds no block"));
  }
  if (absl::Status st = io_->WriteBlock(block, SlotBytes(slot)); !st.ok()) {
    ++counters_.swap_in_failures;
    Unpin(slot);
    return st;
  }
  ++counters_.swap_in_blocks;
  Release(slot);
  return absl::OkStatus();
}

void HostTier::Erase(uint64_t hash) {
  auto it = map_.find(hash);
  if (it == map_.end()) return;
  Release(it->second);
}

std::vector<uint64_t> HostTier::LruHashesForTest() const {
  std::vector<uint64_t> out;
  for (int64_t s = lru_head_; s != kNone; s = slots_[s].next) out.push_back(slots_[s].hash);
  return out;
}

absl::Status HostTier::CheckInvariants() const {
  int64_t linked = 0;
  int64_t prev = kNone;
  std::vector<char> seen(slots_.size(), 0);
  for (int64_t s = lru_head_; s != kNone; s = slots_[s].next) {
    if (s < 0 || s >= num_blocks() || seen[s]) {
      return absl::InternalError(absl::StrCat("host tier LRU list broken at slot ", s));
    }
    seen[s] = 1;
    if (slots_[s].prev != prev) return absl::InternalError(absl::StrCat("host tier back link broken at ", s));
    if (!slots_[s].used || slots_[s].pinned) {
      return absl::InternalError(absl::StrCat("host tier slot ", s, " is listed but unused or pinned"));
    }
    prev = s;
    ++linked;
  }
  if (prev != lru_tail_) return absl::InternalError("host tier LRU tail does not match");
  int64_t used = 0, pinned = 0;
  for (int64_t s = 0; s < num_blocks(); ++s) {
    const Slot& slot = slots_[s];
    if (!slot.used) continue;
    ++used;
    if (slot.pinned) ++pinned;
    auto it = map_.find(slot.hash);
    if (it == map_.end() || it->second != s) {
      return absl::InternalError(absl::StrCat("host tier slot ", s, " missing from the map"));
    }
  }
  if (used != static_cast<int64_t>(map_.size())) return absl::InternalError("host tier map size mismatch");
  if (linked + pinned != used) return absl::InternalError("host tier LRU list misses used slots");
  if (used + static_cast<int64_t>(free_slots_.size()) != num_blocks()) {
    return absl::InternalError("host tier free slot count mismatch");
  }
  return absl::OkStatus();
}

}  // namespace ferry
