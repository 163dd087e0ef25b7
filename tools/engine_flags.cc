#include "tools/engine_flags.h"

#include "absl/strings/numbers.h"
#include "common/status_macros.h"
#include "kvcache/kv_cache_memory.h"
#include "tools/builtin_model.h"

namespace ferry {

void EngineFlags::Register(FlagParser& flags) {
  flags.AddString("model", &model, "GGUF file or Hugging Face directory (default: the built-in model)");
  flags.AddInt("block-size", &block_size, "tokens per KV block");
  flags.AddString("kv-cache-memory", &kv_cache_memory,
                  "KV cache size: bytes (e.g. 2GiB) or a fraction of available memory (e.g. 0.3); "
                  "default: four full contexts");
  flags.AddInt("max-num-batched-tokens", &max_num_batched_tokens, "token budget of one engine step");
  flags.AddInt("max-num-seqs", &max_num_seqs, "sequences running at once");
  flags.AddInt("max-model-len", &max_model_len, "context length (0: the model's)");
  flags.AddInt("threads", &threads, "CPU threads (0: one per core)");
  flags.AddBool("no-prefix-caching", &no_prefix_caching, "turn prefix caching off");
  flags.AddBool("no-batch-invariance", &no_batch_invariance,
                "faster prefill (GEMM), but a request's tokens may then depend on its batch");
  flags.AddString("device", &device, "compute backend: cpu, cuda or cuda:N");
  flags.AddString("dtype", &dtype,
                  "weights and KV dtype on a GPU: auto (bfloat16), bfloat16, float16, float32");
  flags.AddBool("no-cuda-graphs", &no_cuda_graphs, "launch decode steps kernel by kernel instead of as CUDA graphs");
}

absl::StatusOr<EngineOptions> EngineFlags::ToOptions() const {
  EngineOptions o;
  o.block_size = static_cast<int>(block_size);
  o.max_num_batched_tokens = static_cast<int>(max_num_batched_tokens);
  o.max_num_seqs = static_cast<int>(max_num_seqs);
  o.max_model_len = static_cast<int>(max_model_len);
  o.threads = static_cast<int>(threads);
  o.enable_prefix_caching = !no_prefix_caching;
  o.batch_invariant = !no_batch_invariance;
  o.device = device;
  o.dtype = dtype;
  o.cuda_graphs = !no_cuda_graphs;
  const bool gpu = device.rfind("cuda", 0) == 0;
  double fraction = 0;
  if (gpu && !kv_cache_memory.empty() && absl::SimpleAtod(kv_cache_memory, &fraction) && fraction > 0 &&
      fraction <= 1) {
    o.kv_cache_fraction = fraction;  // of the device's free memory, resolved by the backend
  } else if (!kv_cache_memory.empty()) {
    FERRY_ASSIGN_OR_RETURN(o.kv_cache_bytes, ParseKvCacheMemory(kv_cache_memory, AvailableMemoryBytes()));
  }
  return o;
}

absl::StatusOr<std::string> ResolveModelPath(const std::string& flag) {
  if (!flag.empty()) return flag;
  return EnsureBuiltinModel();
}

}  // namespace ferry
