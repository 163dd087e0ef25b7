// The worker-to-worker half of live migration (and of the prefill-to-decode
// hand-off, which is a migration right after the first token):
//
//   source: ReserveKv on the destination, then rounds of full blocks over one
//           ReceiveKv stream while the request keeps decoding, then the last
//           stage (pause, remaining blocks + state), then commit or abort.
//   destination: the ReceiveKv stream writes blocks into the reservation and,
//           on the last chunk, resumes the request; its events wait in the
//           AttachRegistry until the scheduler attaches.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/server_builder.h>

#include <functional>
#include <future>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/service/attach_registry.h"
#include "engine/service/outbound_migrations.h"
#include "kvcache/shared_pool.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry {

struct LiveMigrationOptions {
  int max_rounds = 8;            // copy rounds before the last stage is forced
  int final_stage_blocks = 2;    // go to the last stage when at most this many blocks are left
  absl::Duration reservation_ttl = absl::Seconds(10);
  absl::Duration rpc_timeout = absl::Seconds(30);
  // Largest KvChunk message. Small messages let gRPC's flow control hold the
  // copy rounds to the destination's pace, so no backlog of blocks is left
  // to absorb during the last stage (it would be downtime).
  int64_t max_message_bytes = 2 << 20;
  // Stop-and-copy (a baseline for benchmarks): pause first and send every
  // block in the last stage, so the whole copy is downtime.
  bool stop_and_copy = false;
  // Destination side, a baseline for benchmarks: write every received chunk
  // on the engine loop between steps, instead of the reserved blocks from
  // the receiving thread (Engine::KvImport).
  bool writes_on_loop = false;
  // Offer this engine's shared KV pool (kvcache/shared_pool.h), or its
  // device pool (CUDA IPC), to the destination: one on the same host then
  // copies the blocks out of it instead of receiving them through the
  // stream. Off: a benchmark baseline.
  bool shared_pool = true;
  // Same-host transfers: before pausing the request for the last stage,
  // wait up to this long for the destination to have copied what was sent
  // (Worker.KvTransferProgress), so its backlog is not downtime.
  absl::Duration catch_up_timeout = absl::Seconds(2);
  // Called on the migrating thread once the request is paused for the last
  // stage, before its last chunk goes out: lets tests act inside that window.
  std::function<void(const std::string& request_id)> on_last_stage;
  // Mutual TLS to other workers (common/grpc_credentials.h); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  // HTTP/2 keepalive on the link to the destination while a transfer runs: a
  // ping unanswered for `keepalive_timeout` fails the migration at once (a
  // cut link would otherwise hold it, and a request paused for the last
  // stage, until `rpc_timeout`). Destinations must accept the pings
  // (AllowMigrationKeepalive).
  absl::Duration keepalive_interval = absl::Seconds(1);
  absl::Duration keepalive_timeout = absl::Seconds(2);
};

// Lets a worker's gRPC server take the keepalive pings of migrations sent to
// it (by default gRPC answers frequent pings with GOAWAY).
void AllowMigrationKeepalive(grpc::ServerBuilder& builder);

struct MigrationResult {
  int rounds = 0;
  int64_t blocks_sent = 0;
  int64_t bytes_sent = 0;
  absl::Duration downtime;  // paused: last stage to commit
  bool shared_pool = false;  // the destination copied the blocks out of this engine's shared pool
  bool device_pool = false;  // ... out of this engine's device pool (CUDA IPC)
};

// Moves request `id` from `engine` to the worker at `destination`. On any
// failure the request stays (or resumes) here, the destination is told to
// drop what it holds of it (reservation or resumed copy), and an error says
// why:
// FailedPrecondition (not running here, n > 1, preempted or finished
// mid-copy), ResourceExhausted (the destination is out of blocks),
// Unavailable/DeadlineExceeded (the destination is unreachable or slow),
// Cancelled (aborted here during the last stage, after the destination had
// resumed it: it was aborted there too). With `outbound`, the migration is
// registered there so that aborts here reach the destination.
absl::StatusOr<MigrationResult> MigrateOut(Engine& engine, const std::string& id,
                                           const std::string& destination,
                                           const LiveMigrationOptions& options = {},
                                           OutboundMigrations* outbound = nullptr);


// The destination's ReceiveKv stream.
// ReceiveKv metadata: the id of the request whose blocks the stream carries.
inline constexpr char kTransferRequestIdKey[] = "ferry-transfer-request-id";

// How far each incoming transfer has got (Worker.KvTransferProgress), by
// request id. Thread-safe.
class TransferProgress {
 public:
  void Set(const std::string& request_id, int64_t blocks_written);
  void Erase(const std::string& request_id);
  // Blocks written so far; nullopt when no transfer of that id is open.
  std::optional<int64_t> Get(const std::string& request_id) const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> blocks_ ABSL_GUARDED_BY(mu_);
};

class ReceiveKvReactor final : public grpc::ServerReadReactor<v1::KvChunk> {
 public:
  // The sender names the request in the call's metadata (kTransferRequestIdKey)
  // so that a transfer that breaks before its first chunk still frees the
  // reservation here at once instead of at its expiry.
  ReceiveKvReactor(grpc::CallbackServerContext* context, Engine* engine, AttachRegistry* attach,
                   v1::ReceiveKvResponse* response, MappedPoolCache* pools, TransferProgress* progress,
                   bool writes_on_loop = false);
  void OnReadDone(bool ok) override;
  void OnCancel() override {}
  void OnDone() override;

 private:
  void Fail(const absl::Status& status);

  Engine* engine_;
  AttachRegistry* attach_;
  v1::ReceiveKvResponse* response_;
  v1::KvChunk chunk_;
  std::future<absl::Status> pending_write_;  // of the chunk before chunk_
  // A chunk ending at `end_block` is in place.
  void Written(int64_t end_block);

  MappedPoolCache* pools_;  // null: no same-host transfers
  TransferProgress* progress_;  // null: not reported
  int64_t pending_end_ = 0;  // of the chunk pending_write_ writes
  std::shared_ptr<const MappedPool> pool_;  // the sender's, once a chunk named it
  std::optional<ForwardBackend::DeviceKvPool> device_pool_;  // likewise, on a device
  std::unique_ptr<Engine::KvImport> import_;  // the reservation's blocks, once the transfer began
  bool import_tried_ = false;  // or not wanted (writes_on_loop)
  std::string request_id_;
  bool resumed_ = false;
  bool finished_ = false;
};

}  // namespace ferry
