// Engine flags shared by the roles that run an engine (worker, serve).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/engine_types.h"
#include "engine/model.h"
#include "tools/flags.h"

namespace ferry {

struct EngineFlags {
  std::string model;
  int64_t block_size = 16;
  std::string kv_cache_memory;  // bytes ("2GiB") or a fraction of free memory ("0.5")
  int64_t max_num_batched_tokens = 2048;
  int64_t max_num_seqs = 256;
  int64_t max_model_len = 0;
  int64_t threads = 0;
  bool no_prefix_caching = false;
  bool no_batch_invariance = false;
  std::string device = "cpu";
  std::string backend;      // "" (the model on --device) or "sim"
  std::string sim_profile;  // with --backend sim
  std::string dtype = "auto";
  bool no_cuda_graphs = false;
  bool no_device_sampling = false;
  bool no_shared_kv_pool = false;
  bool mmap = false;
  bool fp32_activations = false;
  std::string kv_host_memory = "0";
  double min_step_ms = 0;
  int64_t speculative_ngram = 0;  // draft tokens per step by prompt lookup (0: off)  // host tier
                                  // of the prefix cache: bytes, a fraction, or 0 (off)

  void Register(FlagParser& flags);
  absl::StatusOr<EngineOptions> ToOptions() const;
  LoadOptions ToLoadOptions() const;
};

// The model path: --model, or the built-in model when empty.
absl::StatusOr<std::string> ResolveModelPath(const std::string& flag);

}  // namespace ferry
