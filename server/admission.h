// Admission control for generation requests: a global and a per-key limit
// on requests running at once, with a bounded wait queue and a deadline.
// When the queue is full or the wait runs out the request is refused (429
// with Retry-After) instead of piling up.
#pragma once

#include <map>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ferry {

struct AdmissionOptions {
  int max_running = 256;       // requests generating at once (all keys)
  int max_running_per_key = 0; // per API key; 0: no per-key limit
  int max_waiting = 256;       // requests waiting for a slot
  absl::Duration max_wait = absl::Seconds(10);
  int retry_after_seconds = 1;
};

class Admission {
 public:
  // Holds a slot until destroyed.
  class Permit {
   public:
    Permit() = default;
    Permit(Permit&& o) noexcept : owner_(o.owner_), key_(o.key_) { o.owner_ = nullptr; }
    Permit& operator=(Permit&& o) noexcept;
    ~Permit() { Release(); }
    void Release();

   private:
    friend class Admission;
    Permit(Admission* owner, int key) : owner_(owner), key_(key) {}
    Admission* owner_ = nullptr;
    int key_ = -1;
  };

  explicit Admission(const AdmissionOptions& options) : options_(options) {}

  // `key` identifies the API key (-1: none). ResourceExhausted (carrying a
  // Retry-After) when the wait queue is full or `max_wait` passes;
  // Unavailable once Close() was called.
  absl::StatusOr<Permit> Acquire(int key);
  // Refuses every later Acquire and wakes the waiters (shutdown).
  void Close();

  int running() const;
  int waiting() const;

 private:
  void Release(int key);
  bool HasSlot(int key) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AdmissionOptions options_;
  mutable absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int, int> running_per_key_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
