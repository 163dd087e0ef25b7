// Counters and one histogram for the scheduler, rendered in the Prometheus
// text format. Thread-safe. A stand-in until a shared metrics registry
// exists in common/.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace ferry {

class SchedulerMetrics {
 public:
  // `name` may carry labels: `ferry_scheduler_dispatch_total{policy="rr"}`.
  void Add(std::string_view name, int64_t delta = 1);
  void Set(std::string_view name, int64_t value);
  // Migration downtime, in seconds.
  void ObserveDowntime(double seconds);
  int64_t Get(std::string_view name) const;
  std::string RenderPrometheus() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, int64_t, std::less<>> values_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> downtime_buckets_ ABSL_GUARDED_BY(mu_);
  double downtime_sum_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t downtime_count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ferry
