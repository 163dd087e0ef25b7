// A fixed pool of worker threads for data-parallel loops in the CPU backend.
// The calling thread takes part in every loop, so a pool of N threads has N-1
// background workers. Workers spin briefly between loops (decode steps issue
// many short loops) and then sleep.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry {

class ThreadPool {
 public:
  // `num_threads` <= 0 means one per available core.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs fn(thread_index) once on each of the pool's threads and waits.
  // Not reentrant: one loop at a time, called from one owner thread.
  void RunOnAll(const std::function<void(int)>& fn);

  // Splits [0, n) into contiguous chunks, one per thread, and runs
  // fn(begin, end) on each non-empty chunk.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  static int DefaultThreads();

 private:
  void WorkerLoop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace ferry
