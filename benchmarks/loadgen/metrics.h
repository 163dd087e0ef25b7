// Per-request measurements of a load test and their summary: TTFT, TPOT,
// ITL and E2E distributions, throughput, goodput under an SLO, errors.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry::loadgen {

// What one request measured. Times are seconds.
struct RequestResult {
  bool ok = false;
  // Error class for failures: "http_<status>", "connection", "timeout",
  // "read", "stream_error", "no_output", ...
  std::string error;
  std::string error_detail;         // the first part of the server's answer
  double scheduled_s = 0;           // arrival offset from the schedule
  double start_s = 0;               // when it was sent, from the start of the run
  double ttft_s = 0;                // to the first chunk with output
  double e2e_s = 0;                 // to the end of the stream
  std::vector<double> itl_s;        // gaps between chunks with output
  int output_tokens = 0;            // from the stream's usage, else chunks counted
  int prompt_tokens = 0;            // from the stream's usage; 0 if not reported
  int requested_output_tokens = 0;  // max_tokens sent
  std::string response_id;          // the "id" of its stream's chunks
  // Each output chunk's text, in order (LoadOptions::keep_output).
  std::vector<std::string> output_chunks;
};

// TPOT = (E2E - TTFT) / (output tokens - 1); none for fewer than 2 tokens.
std::optional<double> Tpot(const RequestResult& r);

// Linear interpolation between closest ranks (numpy's default); `sorted`
// must be ascending and non-empty; p in [0, 100].
double Percentile(const std::vector<double>& sorted, double p);

struct Distribution {
  int count = 0;
  double mean = 0, median = 0, p90 = 0, p99 = 0, max = 0;
};
Distribution Summarize(std::vector<double> values);

// Service-level objective for goodput; unset bounds always pass.
struct Slo {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
};
// Parses "ttft:MS,tpot:MS" (either part may be left out; "" is no SLO).
// InvalidArgument for an unknown key or a value that is not a number >= 0.
absl::StatusOr<Slo> ParseSlo(const std::string& text);
bool MeetsSlo(const RequestResult& r, const Slo& slo);

struct BenchSummary {
  int num_requests = 0;
  int completed = 0;
  int failed = 0;
  double duration_s = 0;
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  double request_throughput = 0;  // completed requests / s
  double output_throughput = 0;   // output tokens / s
  double total_token_throughput = 0;
  double goodput = 0;  // requests / s meeting the SLO
  int good_requests = 0;
  // Completed requests whose output length differs from max_tokens: lost or
  // duplicated tokens when ignore_eos asked for exactly max_tokens.
  int output_token_mismatches = 0;
  std::map<std::string, int> errors;                  // error class -> count
  std::map<std::string, std::string> error_examples;  // error class -> the first one's detail
  Distribution ttft_ms, tpot_ms, itl_ms, e2e_ms;
  std::vector<double> ttft_values_ms;  // sorted, for CDF plots
};

BenchSummary Summarize(const std::vector<RequestResult>& results, double duration_s,
                       const Slo& slo);

}  // namespace ferry::loadgen
