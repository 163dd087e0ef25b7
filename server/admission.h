// Admission control for generation requests: a global and a per-key limit
// on requests running at once, and per-key wait queues with a deadline.
//
// Each API key (and the anonymous caller, key -1) has its own FIFO queue.
// When a slot frees, the keys with waiters take turns (round robin), so one
// key with a long queue cannot starve the others; inside a key, first come
// first served. A request whose queue is full, or that waits past its
// deadline, is refused (429 with Retry-After) instead of piling up.
#pragma once

#include <deque>
#include <map>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ferry {

struct AdmissionOptions {
  int max_running = 256;          // requests generating at once (all keys)
  int max_running_per_key = 0;    // per API key; 0: no per-key limit
  int max_waiting = 256;          // requests waiting for a slot (all keys)
  int max_waiting_per_key = 0;    // waiting per API key; 0: only the global limit
  absl::Duration max_wait = absl::Seconds(10);  // a waiter's deadline
  int retry_after_seconds = 1;
};

// What admission control did so far (for metrics).
struct AdmissionCounts {
  int64_t admitted = 0;
  int64_t refused_queue_full = 0;  // the global or the key's queue was full
  int64_t refused_deadline = 0;    // waited past the deadline
  int64_t waited = 0;              // admitted after queueing
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

  // `key` identifies the API key (-1: none). Waits in the key's queue until
  // `max_wait` from now. ResourceExhausted (carrying a Retry-After) when the
  // global or the key's queue is full or the deadline passes; Unavailable
  // once Close() was called.
  absl::StatusOr<Permit> Acquire(int key);
  // The same with an explicit deadline (the earlier of it and `max_wait`).
  absl::StatusOr<Permit> Acquire(int key, absl::Time deadline);
  // Refuses every later Acquire and wakes the waiters (shutdown).
  void Close();

  int running() const;
  int waiting() const;
  int waiting(int key) const;
  AdmissionCounts counts() const;

 private:
  struct Waiter {
    int key;
    bool granted = false;
  };

  void Release(int key);
  bool HasSlot(int key) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Take(int key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands free slots to waiters, the keys taking turns.
  void Dispatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unqueue(Waiter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Refusal(const std::string& why) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AdmissionOptions options_;
  mutable absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int, int> running_per_key_ ABSL_GUARDED_BY(mu_);
  // Waiters by key, oldest first; only keys with waiters are present.
  std::map<int, std::deque<Waiter*>> queues_ ABSL_GUARDED_BY(mu_);
  // The key served last: the next turn starts after it.
  int last_served_key_ ABSL_GUARDED_BY(mu_) = -2;
  AdmissionCounts counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
