#include "engine/service/attach_registry.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/service/worker_service.h"

namespace ferry {

EventSink AttachRegistry::Create(const std::string& request_id) {
  {
    absl::MutexLock lock(&mu_);
    auto b = std::make_shared<Buffer>();
    b->created = absl::Now();
    buffers_[request_id] = std::move(b);
  }
  return [this, request_id](EngineEvent ev) { Push(request_id, ToTokenEvent(ev)); };
}

void AttachRegistry::Push(const std::string& request_id, v1::TokenEvent event) {
  // Lock order: registry, then the stream's handle (Attach does the same).
  absl::MutexLock lock(&mu_);
  auto it = buffers_.find(request_id);
  if (it == buffers_.end()) return;
  Buffer& b = *it->second;
  const bool last = event.finish_reason() != v1::FINISH_REASON_UNSPECIFIED;
  if (b.subscriber) {
    b.subscriber->Push(std::move(event));
  } else {
    b.events.push_back(std::move(event));
  }
  if (last) {
    b.finished = true;
    if (b.subscriber) buffers_.erase(it);
  }
}

absl::Status AttachRegistry::Attach(const std::string& request_id, GenerateStream* stream) {
  absl::MutexLock lock(&mu_);
  auto it = buffers_.find(request_id);
  if (it == buffers_.end() || it->second->subscriber) {
    return absl::NotFoundError(absl::StrCat("no migrated request ", request_id, " to attach to"));
  }
  Buffer& b = *it->second;
  b.subscriber = stream->handle();
  for (auto& ev : b.events) b.subscriber->Push(std::move(ev));
  b.events.clear();
  if (b.finished) buffers_.erase(it);
  return absl::OkStatus();
}

bool AttachRegistry::DropUnattached(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  auto it = buffers_.find(request_id);
  if (it == buffers_.end() || it->second->subscriber) return false;
  buffers_.erase(it);
  return true;
}

std::vector<std::string> AttachRegistry::Expire(absl::Duration ttl) {
  std::vector<std::string> out;
  absl::Time cutoff = absl::Now() - ttl;
  absl::MutexLock lock(&mu_);
  for (auto it = buffers_.begin(); it != buffers_.end();) {
    if (!it->second->subscriber && it->second->created < cutoff) {
      out.push_back(it->first);
      buffers_.erase(it++);
    } else {
      ++it;
    }
  }
  return out;
}

}  // namespace ferry
