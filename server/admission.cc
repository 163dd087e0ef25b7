#include "server/admission.h"

#include <algorithm>

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

// Every admission is a key's turn, queued or not: a key admitted straight
// away goes behind the keys already waiting when the next slot frees.
void Admission::Take(int key) {
  ++running_;
  if (key >= 0) ++running_per_key_[key];
  ++counts_.admitted;
  last_served_key_ = key;
}

void Admission::Dispatch() {
  while (running_ < options_.max_running && !queues_.empty()) {
    // The first key after the one served last whose oldest waiter may run.
    auto start = queues_.upper_bound(last_served_key_);
    auto pick = queues_.end();
    for (auto it = start; it != queues_.end() && pick == queues_.end(); ++it) {
      if (HasSlot(it->first)) pick = it;
    }
    for (auto it = queues_.begin(); it != start && pick == queues_.end(); ++it) {
      if (HasSlot(it->first)) pick = it;
    }
    if (pick == queues_.end()) return;  // every waiting key is at its own limit
    Waiter* w = pick->second.front();
    pick->second.pop_front();
    if (pick->second.empty()) queues_.erase(pick);
    --waiting_;
    w->granted = true;
    Take(w->key);
    ++counts_.waited;
  }
}

void Admission::Unqueue(Waiter* w) {
  auto it = queues_.find(w->key);
  if (it == queues_.end()) return;
  auto& q = it->second;
  auto pos = std::find(q.begin(), q.end(), w);
  if (pos == q.end()) return;
  q.erase(pos);
  --waiting_;
  if (q.empty()) queues_.erase(it);
}

absl::Status Admission::Refusal(const std::string& why) const {
  return WithRetryAfter(absl::ResourceExhaustedError(absl::StrCat("the server is overloaded: ", why, " (",
                                                                  running_, " requests running, ", waiting_,
                                                                  " waiting); try again later")),
                        options_.retry_after_seconds);
}

absl::StatusOr<Admission::Permit> Admission::Acquire(int key) {
  return Acquire(key, absl::InfiniteFuture());
}

absl::StatusOr<Admission::Permit> Admission::Acquire(int key, absl::Time deadline) {
  const absl::Time now = absl::Now();
  deadline = std::min(deadline, now + options_.max_wait);
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("the server is shutting down");
  // Nobody of this key is ahead in the queue: go at once when there is room.
  if (!queues_.contains(key) && HasSlot(key)) {
    Take(key);
    return Permit(this, key);
  }
  if (waiting_ >= options_.max_waiting) {
    ++counts_.refused_queue_full;
    return Refusal("the wait queue is full");
  }
  auto qit = queues_.find(key);
  const int key_waiting = qit == queues_.end() ? 0 : static_cast<int>(qit->second.size());
  if (options_.max_waiting_per_key > 0 && key_waiting >= options_.max_waiting_per_key) {
    ++counts_.refused_queue_full;
    return Refusal(absl::StrCat("this API key already has ", key_waiting, " requests waiting"));
  }
  Waiter self{key};
  queues_[key].push_back(&self);
  ++waiting_;
  Dispatch();  // a slot may be free but owed to another key's turn
  auto ready = [this, &self]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || self.granted; };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (self.granted) return Permit(this, key);
  Unqueue(&self);
  if (closed_) return absl::UnavailableError("the server is shutting down");
  ++counts_.refused_deadline;
  return Refusal(absl::StrCat("no slot became free within ", absl::FormatDuration(deadline - now)));
}

void Admission::Release(int key) {
  absl::MutexLock lock(&mu_);
  --running_;
  if (key >= 0 && --running_per_key_[key] <= 0) running_per_key_.erase(key);
  Dispatch();
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

int Admission::waiting(int key) const {
  absl::MutexLock lock(&mu_);
  auto it = queues_.find(key);
  return it == queues_.end() ? 0 : static_cast<int>(it->second.size());
}

AdmissionCounts Admission::counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

}  // namespace ferry
