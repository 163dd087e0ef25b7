// The gRPC face of one worker engine: ferry.v1.Worker (Generate as a server
// stream of token events, Abort, Stats, Health, and the migration RPCs
// ReserveKv, ReceiveKv, MigrateOut). RPC threads only convert messages and
// post to the engine; a client that goes away aborts its request, which
// frees its KV blocks.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "engine/engine.h"
#include "engine/service/attach_registry.h"
#include "engine/service/migration.h"
#include "engine/service/outbound_migrations.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry {

struct WorkerServiceOptions {
  v1::WorkerRole role = v1::WORKER_ROLE_MIXED;
  LiveMigrationOptions migration;
  // A migrated-in request nobody attaches to within this time is aborted.
  absl::Duration attach_timeout = absl::Seconds(30);
};

// The proto's sampling parameters with its "zero means default" rules.
SamplingParams ToSamplingParams(const v1::SamplingParams& p);
// Converts a Generate request (fresh or resumed) for the engine. Tokenizes
// `prompt` when there are no ids.
absl::StatusOr<GenerateInput> ToGenerateInput(const v1::GenerateRequest& request, const Model& model);
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
  grpc::ServerUnaryReactor* MigrateOut(grpc::CallbackServerContext* context,
                                       const v1::MigrateOutRequest* request,
                                       v1::MigrateOutResponse* response) override;

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

  Engine* engine_;
  WorkerServiceOptions options_;
  std::string incarnation_id_;
  AttachRegistry attach_;
  OutboundMigrations outbound_;
  std::atomic<int> migrations_in_flight_{0};
  absl::Notification stop_;
  std::thread janitor_;
};

}  // namespace ferry
