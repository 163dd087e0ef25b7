// A worker's link to the scheduler: registers, then sends a heartbeat with
// the worker's load every interval on its own thread; registers again when
// the scheduler no longer knows it (scheduler restart, missed heartbeats).
// Keeps retrying while the scheduler is unreachable.
#pragma once

#include <grpcpp/security/credentials.h>

#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ferry/v1/scheduler.grpc.pb.h"

namespace ferry {

struct SchedulerClientOptions {
  std::string scheduler_address;  // host:port of `ferry scheduler`
  // What the worker tells the scheduler (address, role, model, incarnation,
  // KV layout, block hash root).
  v1::RegisterWorkerRequest registration;
  // Used until the scheduler names its own interval.
  absl::Duration heartbeat_interval = absl::Milliseconds(50);
  absl::Duration rpc_timeout = absl::Milliseconds(500);
  absl::Duration retry_delay = absl::Milliseconds(200);
  // Longest wait between reconnection attempts to the scheduler.
  absl::Duration max_reconnect_backoff = absl::Seconds(1);
  // Mutual TLS to the scheduler (common/grpc_credentials.h); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
};

class SchedulerClient {
 public:
  using LoadFn = std::function<v1::LoadReport()>;
  // `load` runs on the client's thread before each heartbeat. `on_drain`
  // (optional) runs once when the scheduler first asks for a drain.
  SchedulerClient(SchedulerClientOptions options, LoadFn load, std::function<void()> on_drain = nullptr);
  // Stops.
  ~SchedulerClient();
  SchedulerClient(const SchedulerClient&) = delete;
  SchedulerClient& operator=(const SchedulerClient&) = delete;

  void Start();
  // Stops heartbeating and joins the thread (the scheduler then notices the
  // silence within its worker timeout).
  void Stop();

  // The id the scheduler gave; empty while not registered.
  std::string worker_id() const;
  bool registered() const { return !worker_id().empty(); }

 private:
  void Run();
  // Returns the time to wait before the next attempt.
  absl::Duration Step(v1::Scheduler::Stub& stub);

  SchedulerClientOptions options_;
  LoadFn load_;
  std::function<void()> on_drain_;
  bool drain_seen_ = false;
  absl::Duration interval_;
  mutable absl::Mutex mu_;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ferry
