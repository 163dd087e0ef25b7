// One thread that owns the scheduler's mutable state: everything that
// changes it runs as a task posted here, and a periodic tick runs between
// tasks. Other threads (gRPC callbacks) only post.
#pragma once

#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ferry {

class EventLoop {
 public:
  using Task = std::function<void()>;
  // `tick` runs about every `tick_interval` (real time) on the loop thread.
  EventLoop(absl::Duration tick_interval, Task tick);
  // Stops the loop; tasks still queued are dropped.
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  void Start();
  void Stop();
  // Queues `task`; false (and the task is dropped) once stopped.
  bool Post(Task task);
  bool InLoopThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void Run();

  const absl::Duration tick_interval_;
  const Task tick_;
  absl::Mutex mu_;
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Posts to a loop that may be gone: callbacks from gRPC threads hold one of
// these instead of the loop, and their posts are dropped once it is closed.
class LoopPoster {
 public:
  explicit LoopPoster(EventLoop* loop) : loop_(loop) {}
  bool Post(EventLoop::Task task) {
    absl::MutexLock lock(&mu_);
    return loop_ != nullptr && loop_->Post(std::move(task));
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    loop_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  EventLoop* loop_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
