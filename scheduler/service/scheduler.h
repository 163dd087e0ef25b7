// The cluster scheduler's core: worker registry, dispatch, token relay with
// de-duplication, failure recovery by recompute, live migration and the
// prefill-to-decode hand-off. All state lives on one event-loop thread; the
// public calls post there and answer through callbacks that run on it.
// Protos in and out; the gRPC service (scheduler_service.h) only adapts.
#pragma once

#include <grpcpp/security/credentials.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "ferry/v1/worker.grpc.pb.h"
#include "scheduler/policy/disaggregation_policy.h"
#include "scheduler/policy/kv_ledger.h"
#include "scheduler/policy/migration_policy.h"
#include "scheduler/policy/migration_tracker.h"
#include "scheduler/policy/prefix_index.h"
#include "scheduler/policy/prefix_pull_policy.h"
#include "scheduler/service/client_stream.h"
#include "scheduler/service/event_loop.h"
#include "scheduler/service/sample_progress.h"
#include "scheduler/service/scheduler_metrics.h"
#include "scheduler/service/upstream_call.h"
#include "scheduler/service/worker_registry.h"

namespace ferry {

struct SchedulerOptions {
  absl::Duration worker_timeout = absl::Seconds(1);
  absl::Duration heartbeat_interval = absl::Milliseconds(50);
  absl::Duration policy_interval = absl::Milliseconds(100);
  std::string dispatch_policy = "least-loaded";
  // Load-balancing migrations (draining moves requests out either way).
  bool migration = true;
  MigrationOptions migration_options;
  DisaggregationOptions disaggregation;
  absl::Duration migration_timeout = absl::Seconds(30);
  // Attempts to recover one sample on another worker before it fails.
  int max_recoveries = 3;
  // How long a request waits for a worker to take it before it fails.
  absl::Duration placement_timeout = absl::Seconds(10);
  int default_block_size = 16;  // when a worker does not say
  // Telling a worker to pull a cached prefix from a peer (prefix_pull_policy.h).
  PrefixPullPolicyOptions prefix_pull;
  // Lending KV blocks to requests that do not fit their worker (kv_ledger.h).
  KvLedgerOptions kv_ledger;
  Clock* clock = Clock::Real();
  // Mutual TLS to the workers (common/grpc_credentials.h); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
};

class Scheduler {
 public:
  template <typename T>
  using Reply = std::function<void(absl::StatusOr<T>)>;

  // InvalidArgument for an unknown dispatch policy.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const SchedulerOptions& options);
  // Cancels every upstream stream and stops the loop.
  ~Scheduler();

  // Runs `request` on the cluster, relaying its events to `client`. Ends
  // `client` with InvalidArgument (bad request), AlreadyExists (id in use),
  // Unavailable (no worker within the placement timeout) or the worker's
  // error; OK once every sample finished.
  void Generate(v1::GenerateRequest request, std::shared_ptr<ClientStream> client);
  // The client of `request_id` went away: stop its work.
  void CancelGenerate(const std::string& request_id);
  void Abort(const v1::AbortRequest& request, Reply<v1::AbortResponse> reply);
  // InvalidArgument for a registration without address or incarnation.
  void RegisterWorker(const v1::RegisterWorkerRequest& request, Reply<v1::RegisterWorkerResponse> reply);
  void Heartbeat(const v1::HeartbeatRequest& request, Reply<v1::HeartbeatResponse> reply);
  void ListWorkers(Reply<v1::ListWorkersResponse> reply);
  // NotFound for an unknown worker.
  void DrainWorker(const v1::DrainWorkerRequest& request, Reply<v1::DrainWorkerResponse> reply);
  // Fault injection: forwards Worker.Kill to the worker (id or address) and
  // answers with its outcome. NotFound for an unknown worker,
  // FailedPrecondition for a dead one or a worker that refuses (started
  // without --enable-fault-injection), Unavailable when it cannot be reached.
  // Nothing is marked here: the worker's death is found as any crash is.
  void KillWorker(const v1::KillWorkerRequest& request, Reply<v1::KillWorkerResponse> reply);
  // Answers once the source reports the outcome; ok=false with the reason
  // when the request is unknown, not movable (n > 1, finished), already
  // migrating, or the source refused.
  void Migrate(const v1::MigrateRequest& request, Reply<v1::MigrateResponse> reply);

  // Borrowed KV blocks (scheduler_kv_lending.cc). BorrowKv answers once the
  // lenders reserved: NotFound for an unknown owner, InvalidArgument for a
  // bad size, AlreadyExists when the request already borrows,
  // ResourceExhausted when the cluster has too few blocks or a lender refused.
  void BorrowKv(const v1::BorrowKvRequest& request, Reply<v1::BorrowKvResponse> reply);
  // The request's leases end; the lenders free their blocks.
  void ReturnKv(const v1::ReturnKvRequest& request, Reply<v1::ReturnKvResponse> reply);

  SchedulerMetrics& metrics() { return metrics_; }
  // Prometheus text for the scheduler's counters plus a cluster snapshot.
  std::string RenderMetrics();

 private:
  struct Sample;
  struct Request;
  struct Call;
  explicit Scheduler(const SchedulerOptions& options, std::unique_ptr<DispatchPolicy> dispatch);

  // ---- on the loop thread (scheduler.cc) ----
  void Tick();
  void OnWorkersLost(const std::vector<std::string>& worker_ids, const std::string& why);
  ClusterView BuildView() const;
  std::shared_ptr<v1::Worker::Stub> StubFor(const std::string& address);
  int BlockSizeOf(const std::string& worker_id) const;
  // Fire and forget: the worker drops `request_id` if it still holds it.
  void SendWorkerAbort(const std::string& address, const std::string& request_id);
  std::vector<uint64_t> PromptHashesFor(const Request& r, const std::string& worker_id) const;

  // ---- requests, relay, recovery (scheduler_relay.cc) ----
  void StartRequest(v1::GenerateRequest request, std::shared_ptr<ClientStream> client);
  void PlaceUnplaced();
  bool TryPlaceFresh(Request& r);
  bool TryPlaceResume(Request& r, Sample& s);
  DispatchRequest MakeDispatchRequest(const Request& r) const;
  // Adds a prefix-pull hint to `upstream` when a peer of `w` caches more of
  // the prompt and pulling it is estimated cheaper than computing it.
  void MaybeAddPrefixPull(const Request& r, const WorkerRecord& w, v1::GenerateRequest& upstream);
  uint64_t StartCall(Request& r, const std::vector<int>& samples, const std::string& worker_id,
                     const std::string& address, v1::GenerateRequest upstream);
  void OnUpstreamEvent(uint64_t call_id, v1::TokenEvent event);
  void OnUpstreamDone(uint64_t call_id, grpc::Status status);
  void RecoverSample(Request& r, Sample& s, const std::string& failed_worker, const std::string& why);
  void FailSample(Request& r, Sample& s, const std::string& error);
  void FailRequest(Request& r, const absl::Status& status);
  void MaybeFinishRequest(const std::string& request_id);
  void DetachCall(uint64_t call_id, bool cancel);

  // ---- borrowed KV blocks (scheduler_kv_lending.cc) ----
  // Tells the lenders of `leases` (those still alive) to free their blocks.
  void ReleaseKvLeases(const std::vector<KvLease>& leases, const std::string& why);
  void ReleaseKvOf(const std::string& request_id) { ReleaseKvLeases(kv_ledger_.ReleaseRequest(request_id), "request ended"); }
  std::string RenderKvLendingMetrics() const;

  // ---- migration (scheduler_migration.cc) ----
  absl::Status StartMigration(Request& r, Sample& s, const std::string& destination_id,
                              const std::string& trigger, Reply<v1::MigrateResponse> reply);
  void OnMigrateOutDone(const std::string& request_id, const std::string& destination_id, grpc::Status status,
                        const v1::MigrateOutResponse& response, Reply<v1::MigrateResponse> reply);
  void OnMigrated(Request& r, Sample& s, const std::string& address);
  void MaybeHandOff(Request& r, Sample& s);
  void RunMigrationPolicy();
  RequestView ViewOf(const Request& r, const Sample& s) const;

  SchedulerOptions options_;
  SchedulerMetrics metrics_;
  WorkerRegistry registry_;
  DisaggregationPolicy placement_;
  MigrationPolicy migration_policy_;
  MigrationTracker migrations_;
  PrefixIndex prefix_index_;
  KvLedger kv_ledger_;
  std::map<std::string, std::shared_ptr<v1::Worker::Stub>> stubs_;
  std::map<std::string, std::unique_ptr<Request>> requests_;
  std::map<uint64_t, std::unique_ptr<Call>> calls_;
  uint64_t next_call_id_ = 1;
  uint64_t next_request_number_ = 1;
  std::shared_ptr<LoopPoster> poster_;
  EventLoop loop_;  // last: stops before the state above goes
};

}  // namespace ferry
