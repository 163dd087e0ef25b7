// The gRPC face of one worker engine: ferry.v1.Worker (Generate as a server
// stream of token events, Abort, Stats, Health, the migration RPCs
// ReserveKv, ReceiveKv, MigrateOut, and Kill for fault injection). RPC
// threads only convert messages and post to the engine; a client that goes
// away aborts its request, which frees its KV blocks.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "engine/engine.h"
#include "engine/service/attach_registry.h"
#include "engine/service/dist_attention_client.h"
#include "engine/service/dist_attention_lender.h"
#include "engine/service/migration.h"
#include "engine/service/outbound_migrations.h"
#include "engine/service/prefix_pull.h"
#include "engine/service/request_convert.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry {

struct WorkerServiceOptions {
  v1::WorkerRole role = v1::WORKER_ROLE_MIXED;
  LiveMigrationOptions migration;
  // A migrated-in request nobody attaches to within this time is aborted.
  absl::Duration attach_timeout = absl::Seconds(30);
  // Prefix pulls the scheduler asks for (channel credentials: migration's).
  PrefixPullOptions prefix_pull;
  // An exported prefix a puller copies out of this worker's device or
  // shared pool stays held after its stream until the puller releases it
  // (Worker.ReleasePrefixExport), or for this long.
  absl::Duration prefix_export_hold = absl::Seconds(30);
  // Fault injection: an accepted Kill SIGKILLs this process about 20 ms
  // after its answer was sent (no drain, no goodbye to the scheduler). Off,
  // Kill is refused.
  bool enable_fault_injection = false;
};

v1::TokenEvent ToTokenEvent(const EngineEvent& event);

class WorkerService final : public v1::Worker::CallbackService {
 public:
  // `engine` must outlive the service.
  WorkerService(Engine* engine, const WorkerServiceOptions& options);
  ~WorkerService() override;

  grpc::ServerWriteReactor<v1::TokenEvent>* Generate(grpc::CallbackServerContext* context,
                                                     const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context,
                                  const v1::StatsRequest* request,
                                  v1::StatsResponse* response) override;
  grpc::ServerUnaryReactor* Health(grpc::CallbackServerContext* context,
                                   const v1::HealthRequest* request,
                                   v1::HealthResponse* response) override;
  grpc::ServerUnaryReactor* ReserveKv(grpc::CallbackServerContext* context,
                                      const v1::ReserveKvRequest* request,
                                      v1::ReserveKvResponse* response) override;
  grpc::ServerReadReactor<v1::KvChunk>* ReceiveKv(grpc::CallbackServerContext* context,
                                                  v1::ReceiveKvResponse* response) override;
  grpc::ServerUnaryReactor* KvTransferProgress(grpc::CallbackServerContext* context,
                                               const v1::KvTransferProgressRequest* request,
                                               v1::KvTransferProgressResponse* response) override;
  grpc::ServerUnaryReactor* MigrateOut(grpc::CallbackServerContext* context,
                                       const v1::MigrateOutRequest* request,
                                       v1::MigrateOutResponse* response) override;
  // FailedPrecondition unless enable_fault_injection; OK, then the process
  // ends.
  grpc::ServerUnaryReactor* Kill(grpc::CallbackServerContext* context,
                                 const v1::KillRequest* request,
                                 v1::KillResponse* response) override;
  grpc::ServerUnaryReactor* LendKv(grpc::CallbackServerContext* context, const v1::LendKvRequest* request,
                                   v1::LendKvResponse* response) override;
  grpc::ServerUnaryReactor* ReleaseKv(grpc::CallbackServerContext* context, const v1::ReleaseKvRequest* request,
                                      v1::ReleaseKvResponse* response) override;
  grpc::ServerBidiReactor<v1::BorrowedAttentionRequest, v1::BorrowedAttentionResponse>* AttendBorrowed(
      grpc::CallbackServerContext* context) override;

  // From now on, a request whose context does not fit this worker's KV pool
  // borrows blocks on other workers through the scheduler (DistAttention)
  // instead of being refused. Call before serving; `worker_id` as for
  // KvBorrower.
  void EnableKvBorrowing(const std::string& scheduler_address, std::function<std::string()> worker_id);
  // Null until EnableKvBorrowing.
  const DistAttentionCounters* borrow_counters() const {
    return borrower_ ? borrower_->counters().get() : nullptr;
  }
  const KvLenderCounters& lender_counters() const { return lender_.counters(); }
  // Prometheus text for borrowing and lending KV blocks.
  std::string RenderDistAttentionMetrics() const;
  grpc::ServerWriteReactor<v1::KvChunk>* ExportPrefix(grpc::CallbackServerContext* context,
                                                      const v1::ExportPrefixRequest* request) override;
  grpc::ServerUnaryReactor* ReleasePrefixExport(grpc::CallbackServerContext* context,
                                                const v1::ReleasePrefixExportRequest* request,
                                                v1::ReleasePrefixExportResponse* response) override;
  const PrefixPullStats& prefix_pull_stats() const { return pull_stats_; }
  // Exported prefixes held for pullers copying them out of the device pool.
  size_t held_prefix_exports() const { return held_exports_.size(); }

  const std::string& incarnation_id() const { return incarnation_id_; }
  // The load report sent to the scheduler and returned by Stats.
  v1::LoadReport Load() const;

 private:
  void Janitor();
  // Aborts `request_id` here, drops a migrated-in buffer nobody attached to,
  // and follows a request handed over mid-abort to its destination.
  void AbortRequest(const std::string& request_id);
  // Fire and forget: Worker.Abort on the worker at `address`.
  static void SendAbort(const std::string& address, const std::string& request_id,
                        const std::shared_ptr<grpc::ChannelCredentials>& credentials);
  // The KV blocks `input` needs beyond this worker's pool (0: it fits).
  int64_t BlocksToBorrow(const GenerateInput& input) const;
  // Borrows on its own thread, then starts the request on `stream`.
  void StartBorrowing(GenerateInput input, GenerateStream* stream, int64_t remote_blocks);
  // Pulls the prefix `pull` names (off the RPC threads), then starts `input`
  // on `stream`, with or without the pulled blocks.
  void PullThenStart(GenerateStream* stream, v1::PrefixPull pull, GenerateInput input);

  Engine* engine_;
  WorkerServiceOptions options_;
  std::string incarnation_id_;
  AttachRegistry attach_;
  OutboundMigrations outbound_;
  std::atomic<int> migrations_in_flight_{0};
  KvLender lender_;
  std::unique_ptr<KvBorrower> borrower_;
  PrefixPullStats pull_stats_;
  HeldPrefixExports held_exports_;
  // Peers' shared KV pools mapped for same-host transfers.
  MappedPoolCache peer_pools_;
  TransferProgress transfer_progress_;
  absl::Notification stop_;
  std::thread janitor_;
};

}  // namespace ferry
