#include "server/gateway_metrics.h"

namespace ferry {

GatewayMetrics::GatewayMetrics(MetricsRegistry* r) : registry(r) {
  requests = r->AddCounter("ferry_http_requests_total", "HTTP requests answered, by endpoint and status.",
                           {"endpoint", "status"});
  in_flight = r->AddGauge("ferry_http_requests_in_flight", "HTTP requests being answered now.", {"endpoint"});
  waiting = r->AddGauge("ferry_requests_waiting", "Generation requests waiting for an admission slot.")->Get();
  rejected = r->AddCounter("ferry_requests_rejected_total",
                           "Generation requests refused by admission control (429).")
                 ->Get();
  aborted = r->AddCounter("ferry_requests_aborted_total",
                          "Generation requests aborted because the client went away or timed out.")
                ->Get();
  ttft = r->AddHistogram("ferry_time_to_first_token_seconds",
                         "Time from receiving a request to its first generated token.",
                         MetricsRegistry::LatencyBuckets(), {"endpoint"});
  tpot = r->AddHistogram("ferry_time_per_output_token_seconds",
                         "Mean time between generated tokens after the first, per request.",
                         {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5,
                          0.75, 1.0, 2.5},
                         {"endpoint"});
  e2e_latency = r->AddHistogram("ferry_e2e_request_latency_seconds",
                                "Time from receiving a generation request to its last token.",
                                MetricsRegistry::LatencyBuckets(), {"endpoint"});
  prompt_tokens_per_request =
      r->AddHistogram("ferry_request_prompt_tokens", "Prompt tokens per generation request.",
                      MetricsRegistry::ExponentialBuckets(1, 2, 18))
          ->Get();
  generation_tokens_per_request =
      r->AddHistogram("ferry_request_generation_tokens", "Generated tokens per generation request.",
                      MetricsRegistry::ExponentialBuckets(1, 2, 18))
          ->Get();
  prompt_tokens = r->AddCounter("ferry_prompt_tokens_total", "Prompt tokens received.")->Get();
  generation_tokens = r->AddCounter("ferry_generation_tokens_total", "Tokens generated.")->Get();
  cached_prompt_tokens =
      r->AddCounter("ferry_cached_prompt_tokens_total", "Prompt tokens served from the prefix cache.")->Get();
}

void GatewayMetrics::CountRequest(const std::string& endpoint, int status) {
  requests->WithLabels({endpoint, std::to_string(status)})->Increment();
}

}  // namespace ferry
