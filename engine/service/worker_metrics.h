// A worker's engine statistics as Prometheus metrics (ferry_kv_blocks_*,
// ferry_requests_*, token counters, prefix-cache hit rate, tokens/s), read
// from Engine::Stats() at scrape time.
#pragma once

#include <string>

#include "common/metrics.h"
#include "engine/engine.h"

namespace ferry {

class WorkerMetrics {
 public:
  // `engine` is not owned and must outlive this.
  explicit WorkerMetrics(const Engine* engine);

  // Text format 0.0.4. Thread-safe.
  std::string Render() const { return registry_.Render(); }

 private:
  MetricsRegistry registry_;
};

}  // namespace ferry
