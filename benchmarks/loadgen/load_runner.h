// Sends a dataset to an OpenAI-compatible endpoint on an arrival schedule,
// streaming every answer (SSE), and measures each request. Each in-flight
// request holds one thread with a blocking HTTP client, so the number of
// concurrent streams is bounded by max_threads (hundreds are fine).
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmarks/loadgen/dataset.h"
#include "benchmarks/loadgen/metrics.h"

namespace ferry::loadgen {

struct TargetOptions {
  std::string url = "http://127.0.0.1:8000";  // scheme://host:port, optionally ending in /v1
  std::string endpoint = "completions";       // completions | chat
  std::string model;                          // left out of requests when empty
  std::string api_key;                        // sent as a Bearer token when set
  double timeout_s = 600;                     // per request, to the end of the stream
  bool ignore_eos = true;                     // generate exactly max_tokens (vLLM/Ferry extension)
  // Sent when set; 0 (greedy) makes a request stream the same tokens every
  // time, which the token checks after killing workers rely on.
  std::optional<double> temperature;
};

struct LoadOptions {
  int max_concurrency = 0;  // requests in flight at most (0: bounded by max_threads only)
  int max_threads = 1024;
  bool progress = true;  // a progress bar on stderr when it is a terminal
  bool keep_output = false;  // keep each chunk's text in RequestResult::output_chunks
  // Time zero of the run (arrivals and RequestResult times count from it);
  // unset: when RunLoad starts.
  std::optional<std::chrono::steady_clock::time_point> start;
};

struct LoadRun {
  std::vector<RequestResult> results;  // in dataset order
  double duration_s = 0;               // first send to last completion
  std::chrono::steady_clock::time_point start;  // time zero of the results
};

// InvalidArgument for a bad URL or endpoint, or arrivals of another length
// than requests. Failed requests are results, never a failed run.
absl::StatusOr<LoadRun> RunLoad(const TargetOptions& target,
                                const std::vector<BenchRequest>& requests,
                                const std::vector<double>& arrivals, const LoadOptions& options);

// The path requests go to ("/v1/completions", "/v1/chat/completions"), with
// the base (scheme://host:port) in *base. InvalidArgument for a bad URL.
absl::StatusOr<std::string> EndpointPath(const TargetOptions& target, std::string* base);

// The JSON body of one streaming request.
nlohmann::json RequestBody(const TargetOptions& target, const BenchRequest& request);

// What one streamed event (the data of an SSE event) carried.
struct StreamChunk {
  bool done = false;           // "[DONE]"
  bool has_output = false;     // a non-empty text or content delta
  std::string text;            // the text of those deltas
  std::string id;              // the chunk's "id", when it has one
  int completion_tokens = -1;  // from a usage object; -1 when absent
  int prompt_tokens = -1;
  std::string error;  // an error object's message, or "malformed chunk"
};
StreamChunk ParseChunk(std::string_view data);

}  // namespace ferry::loadgen
