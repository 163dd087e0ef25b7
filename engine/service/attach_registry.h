// Samples that migrated into this worker run before anyone listens: their
// events wait here until the scheduler attaches a Generate stream
// (GenerateRequest.attach), then flow to it in order.
#pragma once

#include <deque>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/service/generate_stream.h"

namespace ferry {

class AttachRegistry {
 public:
  // Creates the buffer for `request_id` and returns the sink to give the
  // engine for it.
  EventSink Create(const std::string& request_id);
  // Connects `stream` (ending after one sample) to the buffer: buffered
  // events first, then live ones. NotFound when nothing migrated here under
  // that id (or it was already attached).
  absl::Status Attach(const std::string& request_id, GenerateStream* stream);
  // Drops the buffer of `request_id` if nobody attached to it yet (the
  // request was aborted here or never started); true when one was dropped.
  bool DropUnattached(const std::string& request_id);
  // Request ids whose buffers waited longer than `ttl` without a listener
  // (they are dropped; the caller aborts them).
  std::vector<std::string> Expire(absl::Duration ttl);

 private:
  struct Buffer {
    absl::Time created;
    std::deque<v1::TokenEvent> events;
    std::shared_ptr<StreamHandle> subscriber;
    bool finished = false;
  };
  void Push(const std::string& request_id, v1::TokenEvent event);

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Buffer>> buffers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
