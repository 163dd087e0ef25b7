#include "common/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FERRY_CPU_RELAX() _mm_pause()
#else
#define FERRY_CPU_RELAX() ((void)0)
#endif

namespace ferry {
namespace {
// About 50-100 us of spinning before a worker sleeps.
constexpr int kSpinIterations = 20000;
}  // namespace

// One loop. Shared with workers through a shared_ptr, so a worker that wakes
// after the loop is over still reads valid (finished) state.
struct ThreadPool::Job {
  // Static mode (RunOnAll): each thread index runs once.
  const std::function<void(int)>* per_thread = nullptr;
  std::atomic<int> threads_left{0};
  // Dynamic mode (ParallelFor).
  const std::function<void(int64_t, int64_t)>* range = nullptr;
  int64_t n = 0;
  int64_t chunk = 1;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

int ThreadPool::DefaultThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads <= 0 ? DefaultThreads() : num_threads) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::Work(Job& job, int thread) {
  if (job.per_thread != nullptr) {
    (*job.per_thread)(thread);
    job.threads_left.fetch_sub(1, std::memory_order_acq_rel);
    return;
  }
  while (true) {
    int64_t begin = job.next.fetch_add(job.chunk, std::memory_order_relaxed);
    if (begin >= job.n) return;
    int64_t end = std::min(job.n, begin + job.chunk);
    (*job.range)(begin, end);
    job.done.fetch_add(end - begin, std::memory_order_acq_rel);
  }
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  while (true) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
      FERRY_CPU_RELAX();
      gen = generation_.load(std::memory_order_acquire);
    }
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (generation_.load(std::memory_order_acquire) == seen) {
        cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
      seen = generation_.load(std::memory_order_acquire);
      if (stop_.load()) return;
      job = job_;
    }
    if (job) Work(*job, index);
  }
}

void ThreadPool::Publish(std::shared_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = std::move(job);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
}

void ThreadPool::RunOnAll(const std::function<void(int)>& fn) {
  if (num_threads_ == 1) {
    fn(0);
    return;
  }
  auto job = std::make_shared<Job>();
  job->per_thread = &fn;
  job->threads_left.store(num_threads_ - 1, std::memory_order_release);
  Publish(job);
  fn(0);
  while (job->threads_left.load(std::memory_order_acquire) != 0) FERRY_CPU_RELAX();
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int64_t grain) {
  if (n <= 0) return;
  if (grain <= 0) grain = std::max<int64_t>(1, n / (4 * int64_t{num_threads_}));
  if (num_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  auto job = std::make_shared<Job>();
  job->range = &fn;
  job->n = n;
  job->chunk = grain;
  Publish(job);
  Work(*job, 0);
  // Only chunks already taken by a worker remain; wait for those.
  while (job->done.load(std::memory_order_acquire) != n) FERRY_CPU_RELAX();
}

}  // namespace ferry
