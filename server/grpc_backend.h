// A GenerateBackend over gRPC: a ferry.v1.Worker (one engine) or the
// cluster's ferry.v1.Scheduler, which share the Generate / Abort message
// shapes. Each request is one server-streaming call; Abort cancels it, and
// the server side aborts the request and frees its KV blocks. A call that
// fails or breaks ends its unfinished samples with FINISH_REASON_ERROR and
// the gRPC status code in error_code; a server that went away mid-stream
// (a scheduler restart) says so: "lost the scheduler at ADDR mid-generation".
// Towards a scheduler it is also the ClusterAdmin of the admin endpoints.
#pragma once

#include <grpcpp/security/credentials.h>

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "ferry/v1/worker.grpc.pb.h"
#include "server/generate_backend.h"

namespace ferry {

enum class BackendTarget { kWorker, kScheduler };

struct GrpcBackendOptions {
  BackendTarget target = BackendTarget::kWorker;
  std::string address;  // host:port
  absl::Duration health_timeout = absl::Seconds(2);
  // ListWorkers, Drain and KillWorker; Migrate waits for the copy, up to migrate_timeout.
  absl::Duration admin_timeout = absl::Seconds(5);
  absl::Duration migrate_timeout = absl::Seconds(60);
  // Longest wait between attempts to reconnect to a server that went away
  // (a restarted scheduler is found again within about this time).
  absl::Duration max_reconnect_backoff = absl::Seconds(1);
  // Mutual TLS to the scheduler or worker (common/grpc_credentials.h); null:
  // plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
};

class GrpcBackend final : public GenerateBackend, public ClusterAdmin {
 public:
  // InvalidArgument for an empty address. Connecting is lazy: an unreachable
  // server shows as Ready() == false and as Unavailable errors per request.
  static absl::StatusOr<std::unique_ptr<GrpcBackend>> Create(const GrpcBackendOptions& options);
  // Cancels the calls still running and waits for them to end.
  ~GrpcBackend() override;

  absl::Status Generate(const v1::GenerateRequest& request, EventCallback on_event) override;
  void Abort(const std::string& request_id) override;
  bool Ready() override;
  // This backend when it talks to a scheduler; null for a worker.
  ClusterAdmin* cluster_admin() override;

  absl::StatusOr<v1::ListWorkersResponse> ListWorkers() override;
  absl::StatusOr<v1::MigrateResponse> Migrate(const std::string& request_id, const std::string& to) override;
  absl::Status Drain(const std::string& worker) override;
  absl::StatusOr<v1::KillWorkerResponse> KillWorker(const std::string& worker) override;

 private:
  class Call;
  explicit GrpcBackend(const GrpcBackendOptions& options);
  void Remove(const std::string& request_id, Call* call);
  // A call's object is gone (after Remove).
  void Ended();

  GrpcBackendOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Worker::Stub> worker_;
  std::unique_ptr<v1::Scheduler::Stub> scheduler_;
  absl::Mutex mu_;
  std::multimap<std::string, Call*> calls_ ABSL_GUARDED_BY(mu_);
  int live_calls_ ABSL_GUARDED_BY(mu_) = 0;  // started and not yet deleted
};

}  // namespace ferry
