#include "kvcache/shared_pool.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace ferry {
namespace {

std::string ReadHostKey() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string boot;
  if (!in || !std::getline(in, boot)) return "";
  char ns[128];
  ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
  if (boot.empty() || n <= 0) return "";
  return absl::StrCat(boot, "/", std::string(ns, static_cast<size_t>(n)));
}

absl::Status Errno(absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": ", std::strerror(errno)));
}

std::string CacheKey(const SharedPoolRef& ref) {
  return absl::StrCat(ref.host, "|", ref.pid, "|", ref.fd, "|", ref.inode, "|", ref.device, "|", ref.size);
}

}  // namespace

const std::string& SharedPoolHostKey() {
  static const std::string* key = new std::string(ReadHostKey());
  return *key;
}

absl::StatusOr<std::unique_ptr<SharedMemory>> SharedMemory::Create(const std::string& name, size_t size) {
  if (size == 0) return absl::InvalidArgumentError("a shared memory region needs at least one byte");
  const int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Errno("memfd_create");
  auto fail = [fd](absl::Status s) {
    close(fd);
    return s;
  };
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) return fail(Errno("ftruncate of the KV memfd"));
  // Reserve the pages now, so a shortage shows here and not as a fault later.
  if (int err = posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0 && err != EOPNOTSUPP) {
    return fail(absl::ResourceExhaustedError(
        absl::StrCat("cannot reserve ", size, " bytes of shared memory: ", std::strerror(err))));
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return fail(Errno("sealing the KV memfd"));
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return fail(Errno("mmap of the KV memfd"));
  madvise(p, size, MADV_HUGEPAGE);  // best effort: where shmem allows huge pages
  // Touch every page now, as a private allocation is zeroed: the first
  // writes into a page cost a fault (in a VM, far more than the write), and
  // they would otherwise land in the engine's first steps and transfers.
  std::memset(p, 0, size);
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    munmap(p, size);
    return fail(Errno("fstat of the KV memfd"));
  }
  SharedPoolRef ref;
  ref.host = SharedPoolHostKey();
  ref.pid = getpid();
  ref.fd = fd;
  ref.inode = st.st_ino;
  ref.device = st.st_dev;
  ref.size = static_cast<int64_t>(size);
  return std::unique_ptr<SharedMemory>(new SharedMemory(p, size, fd, std::move(ref)));
}

SharedMemory::~SharedMemory() {
  munmap(data_, size_);
  close(fd_);
}

absl::StatusOr<std::shared_ptr<const MappedPool>> MappedPool::Open(const SharedPoolRef& ref) {
  if (ref.pid <= 0 || ref.fd < 0 || ref.size <= 0) {
    return absl::InvalidArgumentError("malformed shared KV pool reference");
  }
  if (ref.host.empty() || ref.host != SharedPoolHostKey()) {
    return absl::FailedPreconditionError("the KV pool is on another host or PID namespace");
  }
  const std::string path = absl::StrCat("/proc/", ref.pid, "/fd/", ref.fd);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("opening ", path));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    close(fd);
    return Errno(absl::StrCat("fstat of ", path));
  }
  if (st.st_ino != ref.inode || st.st_dev != ref.device || st.st_size != ref.size) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat(path, " is not the KV pool described (the peer restarted?)"));
  }
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat(path, " is not sealed against shrinking"));
  }
  void* p = mmap(nullptr, static_cast<size_t>(ref.size), PROT_READ, MAP_SHARED, fd, 0);
  close(fd);  // the mapping keeps the file
  if (p == MAP_FAILED) return Errno(absl::StrCat("mmap of ", path));
  return std::shared_ptr<const MappedPool>(
      new MappedPool(static_cast<const std::byte*>(p), static_cast<size_t>(ref.size)));
}

MappedPool::~MappedPool() { munmap(const_cast<std::byte*>(data_), size_); }

absl::StatusOr<std::shared_ptr<const MappedPool>> MappedPoolCache::Get(const SharedPoolRef& ref) {
  const std::string key = CacheKey(ref);
  {
    absl::MutexLock lock(&mu_);
    if (auto it = pools_.find(key); it != pools_.end()) {
      it->second.last_use = absl::Now();
      return it->second.pool;
    }
  }
  // Mapped outside the lock: it opens files. Two threads may both map one
  // pool; the second keeps the first's.
  absl::StatusOr<std::shared_ptr<const MappedPool>> opened = MappedPool::Open(ref);
  if (!opened.ok()) return opened.status();
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = pools_.try_emplace(key, Entry{*opened, ref, absl::Now()});
  it->second.last_use = absl::Now();
  std::shared_ptr<const MappedPool> pool = it->second.pool;
  if (inserted && pools_.size() > capacity_) {
    auto oldest = pools_.begin();
    for (auto e = pools_.begin(); e != pools_.end(); ++e) {
      if (e->first != key && (oldest->first == key || e->second.last_use < oldest->second.last_use)) oldest = e;
    }
    if (oldest->first != key) pools_.erase(oldest);
  }
  return pool;
}

int MappedPoolCache::DropStale(absl::Duration idle) {
  std::vector<std::pair<std::string, SharedPoolRef>> refs;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, entry] : pools_) refs.emplace_back(key, entry.ref);
  }
  const absl::Time now = absl::Now();
  std::vector<std::string> gone;
  for (const auto& [key, ref] : refs) {
    struct stat st {};
    const std::string path = absl::StrCat("/proc/", ref.pid, "/fd/", ref.fd);
    if (stat(path.c_str(), &st) != 0 || st.st_ino != ref.inode || st.st_dev != ref.device) gone.push_back(key);
  }
  int dropped = 0;
  absl::MutexLock lock(&mu_);
  for (const std::string& key : gone) dropped += static_cast<int>(pools_.erase(key));
  for (auto it = pools_.begin(); it != pools_.end();) {
    if (now - it->second.last_use >= idle) {
      pools_.erase(it++);
      ++dropped;
    } else {
      ++it;
    }
  }
  return dropped;
}

size_t MappedPoolCache::size() const {
  absl::MutexLock lock(&mu_);
  return pools_.size();
}

}  // namespace ferry
