// A worker's engine statistics as Prometheus metrics (ferry_kv_blocks_*,
// ferry_requests_*, token counters, prefix-cache hit rate, tokens/s), read
// from Engine::Stats() at scrape time.
#pragma once

#include <string>

#include "common/metrics.h"
#include "engine/engine.h"
#include "engine/service/prefix_pull.h"

namespace ferry {

class WorkerMetrics {
 public:
  // `engine` (and `pulls`, when given) are not owned and must outlive this.
  explicit WorkerMetrics(const Engine* engine, const PrefixPullStats* pulls = nullptr);

  // Text format 0.0.4. Thread-safe.
  std::string Render() const { return registry_.Render(); }

 private:
  MetricsRegistry registry_;
};

}  // namespace ferry
