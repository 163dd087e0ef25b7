#include "tools/dataset_flags.h"

namespace ferry {

void AddDatasetFlags(FlagParser& flags, const char* num_prompts_help, DatasetFlagValues* v,
                     loadgen::DatasetOptions* d) {
  flags.AddString("dataset", &d->name, "random, sharegpt, prefix or trace");
  flags.AddString("dataset-path", &d->path,
                  "ShareGPT JSON, or a trace (Azure CSV, Mooncake JSONL, or seconds,input,output CSV)");
  flags.AddInt("num-prompts", &v->num_prompts, num_prompts_help);
  flags.AddInt("input-len", &v->input_len, "random: prompt tokens; prefix: tokens after the shared prefix");
  flags.AddInt("output-len", &v->output_len, "output tokens (max_tokens) for random and prefix");
  flags.AddDouble("range-ratio", &d->range_ratio, "random: lengths uniform in len*(1 +- ratio)");
  flags.AddInt("num-prefixes", &v->num_prefixes, "prefix: distinct shared system prompts");
  flags.AddInt("prefix-len", &v->prefix_len, "prefix: tokens in each shared system prompt");
  flags.AddDouble("trace-time-scale", &d->trace_time_scale, "trace: multiply arrival times by this");
  flags.AddInt("max-input-len", &v->max_input_len, "trace, sharegpt: clip prompt lengths (0: no clip)");
  flags.AddInt("max-output-len", &v->max_output_len, "trace, sharegpt: clip output lengths (0: no clip)");
}

void ApplyDatasetFlags(const DatasetFlagValues& v, int64_t seed, loadgen::DatasetOptions* d) {
  d->num_prompts = static_cast<int>(v.num_prompts);
  d->input_len = static_cast<int>(v.input_len);
  d->output_len = static_cast<int>(v.output_len);
  d->num_prefixes = static_cast<int>(v.num_prefixes);
  d->prefix_len = static_cast<int>(v.prefix_len);
  d->max_input_len = static_cast<int>(v.max_input_len);
  d->max_output_len = static_cast<int>(v.max_output_len);
  d->seed = static_cast<uint64_t>(seed);
}

}  // namespace ferry
