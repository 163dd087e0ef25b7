#include "tools/engine_flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kvcache/kv_cache_memory.h"
#include "tools/builtin_model.h"

namespace ferry {

void EngineFlags::Register(FlagParser& flags) {
  flags.AddString(
      "model", &model,
      "GGUF file, Hugging Face directory or llama2.c checkpoint (default: the built-in model)");
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
  flags.AddString("backend", &backend,
                  "leave unset to run the model on --device; 'sim' runs a SIMULATED engine instead: no "
                  "model math, each step sleeps for the time --sim-profile's cost model gives it and "
                  "emits deterministic tokens (capacity planning and tests only)");
  flags.AddString("sim-profile", &sim_profile,
                  "with --backend sim: the cost model, cpu-small or GPU-MODEL, e.g. h100-llama3-8b "
                  "(ferry sim --list-profiles)");
  flags.AddString("dtype", &dtype,
                  "weights and KV dtype on a GPU: auto (bfloat16), bfloat16, float16, float32");
  flags.AddDouble("min-step-ms", &min_step_ms,
                  "pace the engine: each step that runs work takes at least this many ms (0: off; for "
                  "demos and tests of migration on small models)");
  flags.AddBool("no-cuda-graphs", &no_cuda_graphs, "launch decode steps kernel by kernel instead of as CUDA graphs");
  flags.AddBool("no-device-sampling", &no_device_sampling,
                "on a GPU, copy every logits row to the host and sample there instead of sampling on the device");
  flags.AddBool("no-shared-kv-pool", &no_shared_kv_pool,
                "on the cpu backend, keep the KV cache in private memory: workers on this host then "
                "receive its blocks through gRPC instead of copying them out of shared memory");
  flags.AddBool("mmap", &mmap,
                "decode from the model file's memory mapping instead of a copy of the weights in memory: "
                "less RAM where several processes serve one file, slower CPU decode (always on with a GPU)");
  flags.AddBool(
      "fp32-activations", &fp32_activations,
      "on the cpu backend, keep activations in fp32 for Q8_0, Q4_0, Q5_0 and k-quant weights "
      "instead of "
      "the integer kernels (int8 activations, as llama.cpp; about 2x faster where the CPU "
      "has AVX-512 VNNI or AVX2)");
  flags.AddInt(
      "speculative-ngram", &speculative_ngram,
      "speculative decoding by prompt lookup: up to this many draft tokens per step, taken "
      "from where the request's last tokens appeared before in its prompt or output and "
      "checked in one forward pass; the output is unchanged (0: off; 2-7 is useful)");
  flags.AddString("kv-host-memory", &kv_host_memory,
                  "host-memory tier of the prefix cache: cached KV blocks evicted from the KV cache are "
                  "copied there and copied back on a prefix hit instead of being recomputed; bytes "
                  "(e.g. 4GiB), a fraction of available host memory (e.g. 0.2), or 0 for off");
}

LoadOptions EngineFlags::ToLoadOptions() const {
  LoadOptions o;
  // Weights on a GPU are read from the file once, into device memory.
  o.map_weights = mmap || absl::StartsWith(device, "cuda");
  o.integer_kernels = !fp32_activations;
  return o;
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
  o.device_sampling = !no_device_sampling;
  o.shared_kv_pool = !no_shared_kv_pool;
  if (!(min_step_ms >= 0 && min_step_ms <= 60'000)) {
    return absl::InvalidArgumentError("--min-step-ms must be between 0 and 60000");
  }
  o.min_step_micros = static_cast<int64_t>(min_step_ms * 1000);
  if (speculative_ngram < 0 || speculative_ngram >= block_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--speculative-ngram must be between 0 (off) and --block-size - 1 (", block_size - 1, ")"));
  }
  o.speculative_ngram_tokens = static_cast<int>(speculative_ngram);
  if (backend == "sim") {
    if (sim_profile.empty()) {
      return absl::InvalidArgumentError("--backend sim needs --sim-profile (e.g. h100-llama3-8b)");
    }
    o.device = "sim";
    o.sim_profile = sim_profile;
  } else if (!backend.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --backend '", backend, "' (leave it unset, or 'sim' for a simulated engine)"));
  } else if (!sim_profile.empty()) {
    return absl::InvalidArgumentError("--sim-profile is only for --backend sim");
  }
  const bool gpu = device.rfind("cuda", 0) == 0;
  double fraction = 0;
  if (gpu && !kv_cache_memory.empty() && absl::SimpleAtod(kv_cache_memory, &fraction) && fraction > 0 &&
      fraction <= 1) {
    o.kv_cache_fraction = fraction;  // of the device's free memory, resolved by the backend
  } else if (!kv_cache_memory.empty()) {
    FERRY_ASSIGN_OR_RETURN(o.kv_cache_bytes, ParseKvCacheMemory(kv_cache_memory, AvailableMemoryBytes()));
  }
  double host_number = 0;
  const bool host_off =
      kv_host_memory.empty() || (absl::SimpleAtod(kv_host_memory, &host_number) && host_number == 0);
  if (!host_off) {
    auto host_bytes = ParseKvCacheMemory(kv_host_memory, AvailableMemoryBytes());
    if (!host_bytes.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--kv-host-memory: ", host_bytes.status().message()));
    }
    o.kv_host_bytes = *host_bytes;
  }
  return o;
}

absl::StatusOr<std::string> ResolveModelPath(const std::string& flag) {
  if (!flag.empty()) return flag;
  return EnsureBuiltinModel();
}

}  // namespace ferry
