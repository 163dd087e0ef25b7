// Prefix pull between workers: a worker told by the scheduler that a peer
// caches a longer prefix of a prompt fetches the blocks it lacks (from the
// first one it does not cache itself) with the peer's Worker.ExportPrefix
// (the kv_transfer chunk format of live migration) and installs them as
// cached blocks before running the request. Any failure leaves the request
// to compute the prefix itself: a pull never fails a request.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/server_context.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "kvcache/shared_pool.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry {

// Counters for the worker's metrics (thread-safe).
struct PrefixPullStats {
  std::atomic<int64_t> pulls{0};          // pulls attempted
  std::atomic<int64_t> pulls_ok{0};       // pulls that installed at least one block
  std::atomic<int64_t> failures{0};       // pulls that failed (the request recomputed)
  std::atomic<int64_t> blocks{0};         // blocks received
  std::atomic<int64_t> bytes{0};          // payload bytes received
  std::atomic<int64_t> shared_pool{0};    // pulls that copied the blocks out of the peer's shared pool
  std::atomic<int64_t> device_pool{0};    // pulls that copied the blocks out of the peer's device pool
  std::atomic<int64_t> exports{0};        // ExportPrefix calls that sent every block
  std::atomic<int64_t> export_failures{0};  // refused, failed or cancelled by the puller
  std::atomic<int64_t> export_blocks{0};  // blocks sent
  std::atomic<int64_t> export_bytes{0};
};

struct PrefixPullOptions {
  // The whole pull (RPC plus install) must finish within this, or the
  // request goes on without it.
  absl::Duration timeout = absl::Seconds(10);
  // Mutual TLS to the peer (common/grpc_credentials.h); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  // Same-host pulls: offer to copy the blocks out of the exporter's shared
  // pool (kvcache/shared_pool.h), mapped through `pools` (null: never), or,
  // where this engine's backend has a device pool, out of the exporter's
  // device pool (CUDA IPC). A pool that turns out not to open here costs
  // one retry with bytes.
  bool shared_pool = true;
  MappedPoolCache* pools = nullptr;
};

struct PrefixPullResult {
  int64_t blocks_received = 0;  // installed: the pull's [first_block, end)
  int64_t bytes_received = 0;
  int64_t blocks_cached = 0;  // leading blocks of the prompt cached here afterwards
  bool shared_pool = false;  // the blocks were copied out of the exporter's shared pool
  bool device_pool = false;  // ... out of the exporter's device pool
};

// Fetches blocks [pull.first_block(), end) of the prefix `pull` names from
// its peer and installs them in `engine` after its own cached blocks
// [0, pull.first_block()). Unavailable/DeadlineExceeded when the peer cannot
// be reached in time, NotFound when it no longer caches them,
// DataLoss/InvalidArgument for a corrupt or mismatched stream,
// FailedPrecondition when `engine` no longer caches the blocks before
// first_block, ResourceExhausted when blocks are short.
absl::StatusOr<PrefixPullResult> PullPrefix(Engine& engine, const v1::PrefixPull& pull,
                                            const std::vector<int32_t>& prompt_ids,
                                            const PrefixPullOptions& options);

// Prefix exports whose blocks a puller copies out of this worker's device
// or shared pool: they outlive their stream (the puller copies the last
// chunk after the stream has ended) until the puller releases them, or
// `ttl` after the stream ended should it never do so. Thread-safe.
class HeldPrefixExports {
 public:
  explicit HeldPrefixExports(absl::Duration ttl) : ttl_(ttl) {}
  // A fresh transfer id.
  std::string NewId();
  void Hold(const std::string& id, std::unique_ptr<Engine::KvExport> blocks);
  // Lets go of `id`'s blocks; false when they were not held (any more).
  bool Release(const std::string& id);
  // Lets go of the exports held longer than ttl; returns how many.
  int Expire();
  // Lets go of everything (before the engine goes).
  void Clear();
  size_t size() const;

 private:
  struct Held {
    std::unique_ptr<Engine::KvExport> blocks;
    absl::Time until;
  };
  const absl::Duration ttl_;
  mutable absl::Mutex mu_;
  std::map<std::string, Held> held_ ABSL_GUARDED_BY(mu_);
};

// The server side of Worker.ExportPrefix: opens an export on the engine
// (its blocks stay referenced until the call ends, however it ends, and
// after that in `held` for a puller copying them out of a pool by id)
// and streams it as KvChunks, copying each chunk's blocks only when the
// previous chunk has been written, so an export holds about one chunk in
// memory whatever the prefix length. `held` null: never by device pool.
class ExportPrefixStream final : public grpc::ServerWriteReactor<v1::KvChunk> {
 public:
  ExportPrefixStream(Engine* engine, const v1::ExportPrefixRequest& request, PrefixPullStats* stats,
                     HeldPrefixExports* held = nullptr);
  void OnWriteDone(bool ok) override;
  void OnDone() override { delete this; }

 private:
  void WriteNext();

  PrefixPullStats* stats_;
  std::unique_ptr<Engine::KvExport> export_;
  std::optional<v1::SharedKvPool> pool_;  // set: chunks name blocks of this pool
  std::optional<v1::DeviceKvPool> device_pool_;  // set: chunks name blocks of this device pool
  HeldPrefixExports* held_;
  std::string transfer_id_;
  int64_t blocks_per_chunk_ = 1;
  int64_t next_block_ = 0;
  int64_t num_tokens_ = 0;
  v1::KvChunk current_;
};

}  // namespace ferry
