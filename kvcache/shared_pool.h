// KV pools that other processes on the same host can read: the CPU twin of
// CUDA IPC. A worker keeps its host KV cache in a sealed memfd; a peer that
// runs on the same host, in the same PID namespace and as a user allowed to
// see the owner's file descriptors, maps that file read-only through
// /proc/<pid>/fd/<fd> and copies blocks straight out of it, so a migration or
// a prefix pull between two workers on one machine moves each block with one
// copy instead of encoding, two trips through gRPC and TCP, and decoding.
//
// The owner never shrinks or grows the file (it is sealed against both), so
// a mapping stays valid for as long as the reader holds it, even after the
// owner exits. Whether a block still holds what the owner meant to send is a
// separate question: transfers carry each block's checksum, and readers
// check it against what they copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ferry {

// Where a shared pool lives, as its owner describes it to a peer.
struct SharedPoolRef {
  std::string host;  // SharedPoolHostKey() of the owner
  int64_t pid = 0;
  int32_t fd = -1;
  uint64_t inode = 0;
  uint64_t device = 0;
  int64_t size = 0;  // bytes
};

// This process's host and PID namespace ("<boot id>/<pid namespace>"): two
// processes with the same key can reach each other's /proc entries. Empty
// when it cannot be told (no /proc).
const std::string& SharedPoolHostKey();

// An owned, zero-filled, sealed memfd mapping of `size` bytes. The memory is
// reserved when it is created (ResourceExhausted when it cannot be had).
class SharedMemory {
 public:
  static absl::StatusOr<std::unique_ptr<SharedMemory>> Create(const std::string& name, size_t size);
  ~SharedMemory();
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  // What a peer needs to map it.
  SharedPoolRef Ref() const { return ref_; }

 private:
  SharedMemory(void* data, size_t size, int fd, SharedPoolRef ref)
      : data_(data), size_(size), fd_(fd), ref_(std::move(ref)) {}
  void* data_;
  size_t size_;
  int fd_;
  SharedPoolRef ref_;
};

// A peer's pool, mapped read-only.
class MappedPool {
 public:
  // FailedPrecondition when `ref` names another host or PID namespace, or
  // the file cannot be opened, is not the one described (inode, device,
  // size), or is not sealed against shrinking; InvalidArgument for a
  // malformed ref.
  static absl::StatusOr<std::shared_ptr<const MappedPool>> Open(const SharedPoolRef& ref);
  ~MappedPool();
  MappedPool(const MappedPool&) = delete;
  MappedPool& operator=(const MappedPool&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedPool(const std::byte* data, size_t size) : data_(data), size_(size) {}
  const std::byte* data_;
  size_t size_;
};

// The peers' pools mapped so far, so a transfer maps each one once: keyed by
// host, pid, inode and device, so a restarted peer (another file) is mapped
// anew. At most `capacity` mappings are kept; the least recently used goes
// first (a transfer still using it keeps it alive). Thread-safe.
//
// A mapping keeps its file, and so the owner's whole pool, in memory even
// after the owner exits: call DropStale now and then.
class MappedPoolCache {
 public:
  explicit MappedPoolCache(size_t capacity = 16) : capacity_(capacity) {}
  absl::StatusOr<std::shared_ptr<const MappedPool>> Get(const SharedPoolRef& ref);
  // Drops the mappings whose owner is gone (or holds another file at that
  // descriptor) and those unused for `idle`. Returns how many it dropped.
  int DropStale(absl::Duration idle);
  size_t size() const;

 private:
  struct Entry {
    std::shared_ptr<const MappedPool> pool;
    SharedPoolRef ref;
    absl::Time last_use;
  };
  mutable absl::Mutex mu_;
  size_t capacity_;
  absl::flat_hash_map<std::string, Entry> pools_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
