#include "scheduler/service/event_loop.h"

#include "absl/time/clock.h"

namespace ferry {

EventLoop::EventLoop(absl::Duration tick_interval, Task tick)
    : tick_interval_(tick_interval), tick_(std::move(tick)) {}

EventLoop::~EventLoop() { Stop(); }

void EventLoop::Start() { thread_ = std::thread([this] { Run(); }); }

void EventLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool EventLoop::Post(Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  tasks_.push_back(std::move(task));
  return true;
}

void EventLoop::Run() {
  absl::Time next_tick = absl::Now() + tick_interval_;
  while (true) {
    std::deque<Task> batch;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this] { return stopping_ || !tasks_.empty(); };
      mu_.AwaitWithDeadline(absl::Condition(&ready), next_tick);
      if (stopping_) return;
      batch.swap(tasks_);
    }
    for (Task& t : batch) t();
    if (absl::Now() >= next_tick) {
      if (tick_) tick_();
      next_tick = absl::Now() + tick_interval_;
    }
  }
}

}  // namespace ferry
