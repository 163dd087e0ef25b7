#include "server/request_stream.h"

namespace ferry {

bool IsFinal(v1::FinishReason reason) {
  return reason == v1::FINISH_REASON_STOP || reason == v1::FINISH_REASON_LENGTH ||
         reason == v1::FINISH_REASON_ABORT || reason == v1::FINISH_REASON_ERROR;
}

GenerateBackend::EventCallback RequestStream::CallbackFor(int prompt_index) {
  std::shared_ptr<RequestStream> self = shared_from_this();
  return [self, prompt_index](const v1::TokenEvent& event) { self->Push(prompt_index, event); };
}

void RequestStream::Push(int prompt_index, const v1::TokenEvent& event) {
  absl::MutexLock lock(&mu_);
  if (IsFinal(event.finish_reason())) --unfinished_;
  pending_.push_back(Item{prompt_index, event});
}

bool RequestStream::WaitAndTake(absl::Time deadline, std::vector<Item>* out) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !pending_.empty() || unfinished_ <= 0; };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (pending_.empty()) return unfinished_ <= 0;
  for (Item& item : pending_) out->push_back(std::move(item));
  pending_.clear();
  return true;
}

bool RequestStream::finished() const {
  absl::MutexLock lock(&mu_);
  return unfinished_ <= 0 && pending_.empty();
}

}  // namespace ferry
