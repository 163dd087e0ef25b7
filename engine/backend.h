// The compute backends behind the engine's step loop: `cpu` (threads + SIMD,
// fp32 KV in host memory) and `cuda` (fused kernels and cuBLASLt GEMMs, KV in
// device memory in bf16, fp16 or fp32). The step loop owns the backend; RPC
// threads never touch it.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/thread_pool.h"
#include "engine/engine_types.h"
#include "engine/forward_batch.h"
#include "engine/model.h"
#include "kvcache/block_pool.h"
#include "kvcache/kv_cache.h"

namespace ferry {

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;
  // e.g. "cpu (16 threads)" or "cuda:0 (NVIDIA H100 80GB HBM3, bfloat16)".
  virtual std::string Describe() const = 0;
  virtual const KvCacheShape& kv_shape() const = 0;
  // Bytes of one KV block in the backend's own storage.
  virtual int64_t kv_bytes_per_block() const = 0;
  // One step: writes the batch's keys and values into their blocks and
  // fills `logits` (host memory) with [logits_indices.size(), vocab] rows.
  virtual absl::Status Forward(const ForwardBatch& batch, float* logits) = 0;
  // Sampling in the backend (on the device), so that a step returns a token
  // id per logits row instead of the rows themselves. One row's parameters:
  // greedy when temperature <= 0; else softmax(logits / temperature) over the
  // top_k (<= 0: all) most likely tokens, cut to the smallest set whose mass
  // reaches top_p, drawn with `uniform` in [0, 1) (the engine draws it from
  // the request's own generator, so its state moves with the request).
  struct RowSampling {
    float temperature = 0;
    int32_t top_k = 0;
    float top_p = 1;
    float uniform = 0;
  };
  virtual bool samples_on_device() const { return false; }
  // The most logits rows one Forward may ask for (the cuda backend's
  // buffers are sized for a number of rows; the host's grow).
  virtual int64_t max_logits_rows() const { return int64_t{1} << 30; }
  // InvalidArgument unless `rows` and `tokens` hold one entry per logits row
  // of `batch` (for ForwardAndSample implementations).
  static absl::Status CheckSamplingRows(const ForwardBatch& batch, std::span<const RowSampling> rows,
                                        std::span<const int32_t> tokens) {
    const size_t n = batch.logits_indices.size();
    if (rows.size() == n && tokens.size() == n) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("sampling ", rows.size(), " rows into ", tokens.size(),
                                                   " tokens for a batch of ", n, " logits rows"));
  }
  // Forward, then sampling as `rows` say (one per logits index): `tokens`
  // gets one id per row. Unimplemented where samples_on_device() is false.
  virtual absl::Status ForwardAndSample(const ForwardBatch& batch, std::span<const RowSampling> rows,
                                        std::span<int32_t> tokens) {
    return absl::UnimplementedError(absl::StrCat(Describe(), ": no sampling in the backend"));
  }
  // Copy-on-write copies planned by the block pool.
  virtual void CopyBlocks(std::span<const BlockCopy> copies) = 0;
  // The KV cache in host memory where the backend keeps it there (cpu), for
  // DistAttention, which computes on lent blocks in place; null otherwise.
  virtual KvCache* host_kv() = 0;
  // One block's keys and values as fp32 in the canonical block layout
  // [layer][k|v][slot][kv_head][head_dim] (kv_shape().floats_per_block()
  // floats), whatever the backend's own dtype and memory: the form KV blocks
  // move between workers in (kvcache/kv_transfer.h), so any two backends can
  // hand sequences and cached prefixes to each other.
  // Both may be called from any thread, also during a step: ReadKvBlockF32
  // for a block no step writes meanwhile (a referenced block: prefix and
  // migration exports copy from the RPC thread), WriteKvBlockF32 for a block
  // no step reads or writes (a block reserved for an incoming migration).
  // Converting to a narrower dtype rounds to nearest even. InvalidArgument
  // for a block out of range or a span of the wrong size; Internal for a
  // failed device copy; Unimplemented where the backend keeps no KV (sim).
  virtual absl::Status ReadKvBlockF32(int32_t block, std::span<float> out) {
    return absl::UnimplementedError(absl::StrCat(Describe(), ": KV blocks cannot be copied out"));
  }
  virtual absl::Status WriteKvBlockF32(int32_t block, std::span<const float> in) {
    return absl::UnimplementedError(absl::StrCat(Describe(), ": KV blocks cannot be copied in"));
  }
  // Whole-block copies between the backend's KV storage and host memory
  // (kv_bytes_per_block() bytes in the backend's own dtype), for the host
  // tier of the prefix cache; on the step loop's thread between steps.
  // Unimplemented where the backend has none (the host tier is then off).
  virtual absl::Status ReadKvBlock(int32_t block, std::span<std::byte> out) {
    return absl::UnimplementedError(absl::StrCat(Describe(), ": no KV block copies to host memory"));
  }
  virtual absl::Status WriteKvBlock(int32_t block, std::span<const std::byte> in) {
    return absl::UnimplementedError(absl::StrCat(Describe(), ": no KV block copies from host memory"));
  }

  // ---- Same-host transfers between devices (CUDA IPC) ----
  // A backend's KV blocks in device memory as another process on this host
  // opens them: an opaque handle of `kind`, blocks of `bytes_per_block`
  // bytes in `dtype` in the canonical layout. (Host KV is shared through
  // KvCache::shared_memory instead.)
  struct DeviceKvPool {
    std::string kind;  // "cuda-ipc"
    std::string handle;
    std::string dtype;  // "float32", "float16", "bfloat16"
    int64_t bytes_per_block = 0;
    int64_t num_blocks = 0;
    // The process that exported it, as a peer received it (0 for one's own).
    int64_t pid = 0;
  };
  // This backend's pool; nullopt where it has none to share. Any thread.
  virtual std::optional<DeviceKvPool> ExportDeviceKvPool() { return std::nullopt; }
  // Opens a peer's pool for CopyFromDeviceKvPool, once (later calls reuse
  // it). FailedPrecondition when it cannot be used here: another kind, dtype
  // or block size, the backend's own pool, one the mechanism cannot open
  // (CUDA IPC opens only another process's memory), or the driver refuses
  // it. Any thread.
  virtual absl::Status OpenDeviceKvPool(const DeviceKvPool& peer) {
    return absl::UnimplementedError(absl::StrCat(Describe(), ": no device KV pools"));
  }
  // Copies blocks `src` of an opened peer pool into this backend's blocks
  // `dst`, device to device, and waits for the copies. InvalidArgument for
  // ids out of range or spans of different sizes; FailedPrecondition for a
  // pool not opened. Any thread, for blocks no step reads or writes.
  virtual absl::Status CopyFromDeviceKvPool(const DeviceKvPool& peer, std::span<const int32_t> src,
                                            std::span<const int32_t> dst) {
    return absl::UnimplementedError(absl::StrCat(Describe(), ": no device KV pools"));
  }
};

// The CPU backend: LlamaForward over an fp32 host cache.
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCpuBackend(const Model& model, ThreadPool& pool,
                                                                  const EngineOptions& options,
                                                                  int64_t kv_bytes);

// The simulated backend (options.device "sim"): sleeps per the cost model
// of options.sim_profile and emits deterministic tokens; no model math.
// InvalidArgument for an unknown profile.
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateSimBackend(const Model& model, const EngineOptions& options);

// The CUDA backend on options.device ("cuda" or "cuda:N"). Unimplemented in a
// build without CUDA; FailedPrecondition without a usable device.
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaBackend(const Model& model,
                                                                   const EngineOptions& options);

}  // namespace ferry
