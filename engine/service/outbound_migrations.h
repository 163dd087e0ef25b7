// The requests this worker is moving out, so that an abort landing during
// the last stage of a migration (its client went away, Worker.Abort) still
// reaches the destination, which may already be running the request. Without
// this, the destination would hold the orphan until its attach timeout.
// Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ferry {

class OutboundMigrations {
 public:
  // A migration of `id` to `destination` starts (replacing any older entry).
  void Begin(const std::string& id, const std::string& destination);
  // `id` was aborted here. Returns the destination to abort it on as well
  // when the request was already handed over; otherwise the hand-over of a
  // migration in progress will refuse. Nullopt for ids not migrating out.
  std::optional<std::string> Cancel(const std::string& id);
  // The destination took `id`: true to commit, false when it was cancelled
  // meanwhile (the caller then aborts it on the destination).
  bool HandOver(const std::string& id);
  // The migration of `id` failed or was undone: forget it.
  void End(const std::string& id);
  // Forgets hand-overs older than `ttl` (an abort after that is the
  // scheduler's to route). Returns how many were dropped.
  int Expire(absl::Duration ttl);
  size_t size() const;

 private:
  struct Entry {
    std::string destination;
    bool cancelled = false;
    bool handed_over = false;
    absl::Time since;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
