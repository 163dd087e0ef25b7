// The dataset flags `ferry bench` and `ferry sim` share: which requests to
// make (random, ShareGPT, shared prefixes or a trace) and their lengths.
#pragma once

#include <cstdint>

#include "benchmarks/loadgen/dataset.h"
#include "tools/flags.h"

namespace ferry {

// The integer flags (FlagParser takes int64); the string and double ones go
// straight into a loadgen::DatasetOptions.
struct DatasetFlagValues {
  int64_t num_prompts = 100;
  int64_t input_len = 256, output_len = 128, num_prefixes = 4, prefix_len = 512;
  int64_t max_input_len = 0, max_output_len = 0;
};

// Registers --dataset, --dataset-path, --num-prompts (with `num_prompts_help`),
// --input-len, --output-len, --range-ratio, --num-prefixes, --prefix-len,
// --trace-time-scale, --max-input-len and --max-output-len.
void AddDatasetFlags(FlagParser& flags, const char* num_prompts_help, DatasetFlagValues* values,
                     loadgen::DatasetOptions* dataset);

// Copies the integer flags and `seed` into `dataset`.
void ApplyDatasetFlags(const DatasetFlagValues& values, int64_t seed, loadgen::DatasetOptions* dataset);

}  // namespace ferry
