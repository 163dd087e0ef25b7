#include "scheduler/service/scheduler_metrics.h"

#include <array>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/strings.h"

namespace ferry {
namespace {

constexpr std::array<double, 10> kDowntimeBounds = {0.001, 0.002, 0.005, 0.01, 0.02,
                                                    0.05,  0.1,   0.2,   0.5,  1.0};

}  // namespace

void SchedulerMetrics::Add(std::string_view name, int64_t delta) {
  absl::MutexLock lock(&mu_);
  auto it = values_.find(name);
  if (it == values_.end()) it = values_.emplace(std::string(name), 0).first;
  it->second += delta;
}

void SchedulerMetrics::Set(std::string_view name, int64_t value) {
  absl::MutexLock lock(&mu_);
  values_[std::string(name)] = value;
}

void SchedulerMetrics::ObserveDowntime(double seconds) {
  absl::MutexLock lock(&mu_);
  if (downtime_buckets_.empty()) downtime_buckets_.assign(kDowntimeBounds.size(), 0);
  for (size_t i = 0; i < kDowntimeBounds.size(); ++i) {
    if (seconds <= kDowntimeBounds[i]) ++downtime_buckets_[i];
  }
  downtime_sum_ += seconds;
  ++downtime_count_;
}

int64_t SchedulerMetrics::Get(std::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = values_.find(name);
  return it == values_.end() ? 0 : it->second;
}

std::string SchedulerMetrics::RenderPrometheus() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, value] : values_) absl::StrAppend(&out, name, " ", value, "\n");
  const char* h = "ferry_scheduler_migration_downtime_seconds";
  absl::StrAppend(&out, "# TYPE ", h, " histogram\n");
  for (size_t i = 0; i < kDowntimeBounds.size(); ++i) {
    const int64_t n = downtime_buckets_.empty() ? 0 : downtime_buckets_[i];
    absl::StrAppendFormat(&out, "%s_bucket{le=\"%g\"} %d\n", h, kDowntimeBounds[i], n);
  }
  absl::StrAppendFormat(&out, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", h, downtime_count_, h,
                        downtime_sum_, h, downtime_count_);
  return out;
}

}  // namespace ferry
