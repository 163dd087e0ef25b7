// An owning reference to one KV block of a BlockPool. Holding a BlockRef keeps
// the block out of the free list; dropping it (destructor, Reset, move-assign)
// gives the reference back. Because release is tied to the handle's lifetime,
// a finished, aborted or preempted sequence cannot leak blocks: its BlockTable
// goes away and so do its references.
#pragma once

#include <cstdint>

namespace ferry {

class BlockPool;

class BlockRef {
 public:
  BlockRef() = default;
  ~BlockRef() { Reset(); }

  BlockRef(BlockRef&& other) noexcept : pool_(other.pool_), id_(other.id_) {
    other.pool_ = nullptr;
    other.id_ = -1;
  }
  BlockRef& operator=(BlockRef&& other) noexcept;

  // Copies would make ownership invisible; sharing is spelled Share().
  BlockRef(const BlockRef&) = delete;
  BlockRef& operator=(const BlockRef&) = delete;

  // A second reference to the same block (its reference count goes up by one).
  // Sharing an empty handle gives an empty handle.
  BlockRef Share() const;

  // Gives the reference back now; the handle becomes empty.
  void Reset();

  bool valid() const { return pool_ != nullptr; }
  // The block id (index into KvCache), or -1 for an empty handle.
  int32_t id() const { return id_; }
  // Current number of references to the block (0 for an empty handle).
  int ref_count() const;

 private:
  friend class BlockPool;
  BlockRef(BlockPool* pool, int32_t id) : pool_(pool), id_(id) {}

  BlockPool* pool_ = nullptr;  // not owned; the pool outlives every handle
  int32_t id_ = -1;
};

}  // namespace ferry
