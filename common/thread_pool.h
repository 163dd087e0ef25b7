// A fixed pool of worker threads for data-parallel loops in the CPU backend.
// The calling thread takes part in every loop, so a pool of N threads has N-1
// background workers. Workers spin briefly between loops (decode steps issue
// many short loops) and then sleep.
//
// ParallelFor hands out chunks dynamically: whoever is running takes the
// next chunk, so a worker the OS has descheduled (a busy machine) delays only
// the chunk it already holds, never the whole loop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
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

  // Runs fn(thread_index) once on each of the pool's threads and waits for
  // all of them. Not reentrant: one loop at a time, from one owner thread.
  void RunOnAll(const std::function<void(int)>& fn);

  // Covers [0, n) with calls fn(begin, end) on chunks of about `grain`
  // elements (0: a few chunks per thread) and waits for all of them.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 0);

  static int DefaultThreads();

 private:
  struct Job;
  void WorkerLoop(int index);
  void Publish(std::shared_ptr<Job> job);
  static void Work(Job& job, int thread);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<Job> job_;  // guarded by mu_; the latest loop
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace ferry
