#include "server/admission.h"

#include "absl/strings/str_cat.h"
#include "server/openai_error.h"

namespace ferry {

Admission::Permit& Admission::Permit::operator=(Permit&& o) noexcept {
  if (this != &o) {
    Release();
    owner_ = o.owner_;
    key_ = o.key_;
    o.owner_ = nullptr;
  }
  return *this;
}

void Admission::Permit::Release() {
  if (owner_ != nullptr) owner_->Release(key_);
  owner_ = nullptr;
}

bool Admission::HasSlot(int key) const {
  if (running_ >= options_.max_running) return false;
  if (key >= 0 && options_.max_running_per_key > 0) {
    auto it = running_per_key_.find(key);
    if (it != running_per_key_.end() && it->second >= options_.max_running_per_key) return false;
  }
  return true;
}

absl::StatusOr<Admission::Permit> Admission::Acquire(int key) {
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("the server is shutting down");
  if (!HasSlot(key)) {
    if (waiting_ >= options_.max_waiting) {
      return WithRetryAfter(absl::ResourceExhaustedError(absl::StrCat(
                                "the server is overloaded: ", running_, " requests running and ",
                                waiting_, " waiting; try again later")),
                            options_.retry_after_seconds);
    }
    ++waiting_;
    auto can_go = [this, key]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || HasSlot(key); };
    bool got = mu_.AwaitWithTimeout(absl::Condition(&can_go), options_.max_wait);
    --waiting_;
    if (closed_) return absl::UnavailableError("the server is shutting down");
    if (!got) {
      return WithRetryAfter(absl::ResourceExhaustedError(absl::StrCat(
                                "the server is overloaded: no slot became free within ",
                                absl::FormatDuration(options_.max_wait), "; try again later")),
                            options_.retry_after_seconds);
    }
  }
  ++running_;
  if (key >= 0) ++running_per_key_[key];
  return Permit(this, key);
}

void Admission::Release(int key) {
  absl::MutexLock lock(&mu_);
  --running_;
  if (key >= 0 && --running_per_key_[key] <= 0) running_per_key_.erase(key);
}

void Admission::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

int Admission::running() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

int Admission::waiting() const {
  absl::MutexLock lock(&mu_);
  return waiting_;
}

}  // namespace ferry
