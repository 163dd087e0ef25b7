// The gateway's Prometheus metrics (names start with ferry_).
#pragma once

#include <string>

#include "common/metrics.h"

namespace ferry {

struct GatewayMetrics {
  explicit GatewayMetrics(MetricsRegistry* registry);

  // Counts one answered HTTP request.
  void CountRequest(const std::string& endpoint, int status);

  MetricsRegistry* registry;
  CounterFamily* requests;             // {endpoint, status}
  GaugeFamily* in_flight;              // {endpoint}
  Gauge* waiting;                      // waiting for an admission slot
  Counter* rejected;                   // refused by admission control
  Counter* aborted;                    // clients that went away mid-request
  HistogramFamily* ttft;               // {endpoint}
  HistogramFamily* tpot;               // {endpoint}
  HistogramFamily* e2e_latency;        // {endpoint}
  Histogram* prompt_tokens_per_request;
  Histogram* generation_tokens_per_request;
  Counter* prompt_tokens;
  Counter* generation_tokens;
  Counter* cached_prompt_tokens;
};

}  // namespace ferry
