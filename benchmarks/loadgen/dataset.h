// The requests a load test sends: synthetic random lengths, a ShareGPT-format
// JSON file, a shared-prefix set, or a replayed trace (arrival time, input
// and output length: the Azure LLM inference CSV, Mooncake JSONL, or a plain
// CSV of seconds,input,output).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry::loadgen {

struct BenchRequest {
  std::string prompt;               // the completion prompt, or the chat user message
  int input_tokens = 0;             // intended or declared prompt length (approximate)
  int output_tokens = 0;            // sent as max_tokens
  std::optional<double> arrival_s;  // trace replay: offset from the first request
  // Which parts of the prompt other requests share, for the simulator's
  // prefix cache (a real engine hashes the prompt's tokens instead): the
  // first hash_ids.size() pieces of hash_block_tokens tokens each, where
  // two prompts have equal ids at piece i exactly when they agree on
  // everything up to the end of that piece. Mooncake traces carry these
  // (512-token blocks); the prefix set names its shared system prompt.
  // Empty: nothing known to be shared.
  std::vector<uint64_t> hash_ids;
  int hash_block_tokens = 0;
};

struct DatasetOptions {
  std::string name = "random";  // random | sharegpt | prefix | trace
  std::string path;             // sharegpt and trace
  int num_prompts = 100;        // trace: at most this many rows (0: all)
  int input_len = 256;
  int output_len = 128;
  // random: lengths uniform in [len * (1 - r), len * (1 + r)].
  double range_ratio = 0.0;
  int num_prefixes = 4;           // prefix: distinct shared system prompts
  int prefix_len = 512;           // prefix: tokens in each shared prompt
  double trace_time_scale = 1.0;  // trace: arrival times multiplied by this
  int max_input_len = 0;          // trace, sharegpt: clip lengths (0: no clip)
  int max_output_len = 0;
  uint64_t seed = 0;
};

// InvalidArgument for an unknown dataset, bad lengths or a malformed file
// (the message names the file and the line or entry); NotFound when the
// file cannot be read.
absl::StatusOr<std::vector<BenchRequest>> LoadDataset(const DatasetOptions& options);

// The parsers behind LoadDataset, on file contents (`origin` names the file
// in errors).
absl::StatusOr<std::vector<BenchRequest>> ParseShareGpt(const std::string& text,
                                                        const std::string& origin,
                                                        const DatasetOptions& options);
absl::StatusOr<std::vector<BenchRequest>> ParseTrace(const std::string& text,
                                                     const std::string& origin,
                                                     const DatasetOptions& options);

// `num_tokens` words of filler text (about one token each for BPE models),
// varied by `seed`.
std::string SyntheticText(int num_tokens, uint64_t seed);

}  // namespace ferry::loadgen
