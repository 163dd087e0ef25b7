#include "engine/service/scheduler_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "common/grpc_credentials.h"
#include "common/logging.h"

namespace ferry {

SchedulerClient::SchedulerClient(SchedulerClientOptions options, LoadFn load, std::function<void()> on_drain)
    : options_(std::move(options)), load_(std::move(load)), on_drain_(std::move(on_drain)),
      interval_(options_.heartbeat_interval) {
  // Creates the logger here, not first from the client's thread: creating
  // one logger from two threads at once is not safe.
  Logger("worker");
}

SchedulerClient::~SchedulerClient() { Stop(); }

void SchedulerClient::Start() { thread_ = std::thread([this] { Run(); }); }

void SchedulerClient::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::string SchedulerClient::worker_id() const {
  absl::MutexLock lock(&mu_);
  return worker_id_;
}

void SchedulerClient::Run() {
  // Reconnect quickly to a scheduler that went away: gRPC's default backoff
  // grows to two minutes, and a restarted scheduler should see its workers
  // again within about a second.
  grpc::ChannelArguments args;
  const int max_backoff_ms = static_cast<int>(absl::ToInt64Milliseconds(options_.max_reconnect_backoff));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(max_backoff_ms, 100));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::min(max_backoff_ms, 100));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_backoff_ms);
  auto channel = grpc::CreateCustomChannel(
      options_.scheduler_address, ChannelCredentialsOrInsecure(options_.channel_credentials), args);
  auto stub = v1::Scheduler::NewStub(channel);
  while (true) {
    const absl::Duration wait = Step(*stub);
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), wait)) return;
  }
}

absl::Duration SchedulerClient::Step(v1::Scheduler::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  const std::string id = worker_id();
  if (id.empty()) {
    v1::RegisterWorkerResponse response;
    grpc::Status s = stub.RegisterWorker(&context, options_.registration, &response);
    if (!s.ok()) {
      Logger("worker")->debug("cannot register with scheduler {}: {}", options_.scheduler_address,
                              s.error_message());
      return options_.retry_delay;
    }
    if (response.heartbeat_interval_micros() > 0) {
      interval_ = absl::Microseconds(response.heartbeat_interval_micros());
    }
    Logger("worker")->info("registered with scheduler {} as worker={}", options_.scheduler_address,
                           response.worker_id());
    absl::MutexLock lock(&mu_);
    worker_id_ = response.worker_id();
    return absl::ZeroDuration();  // first heartbeat (with the load) right away
  }
  v1::HeartbeatRequest request;
  request.set_worker_id(id);
  request.set_incarnation_id(options_.registration.incarnation_id());
  if (load_) *request.mutable_load() = load_();
  v1::HeartbeatResponse response;
  grpc::Status s = stub.Heartbeat(&context, request, &response);
  if (!s.ok()) return interval_;  // the timeout on the scheduler's side decides
  if (!response.known()) {
    Logger("worker")->warn("scheduler {} no longer knows worker={}: registering again",
                           options_.scheduler_address, id);
    absl::MutexLock lock(&mu_);
    worker_id_.clear();
    return absl::ZeroDuration();
  }
  if (response.drain() && !drain_seen_) {
    drain_seen_ = true;
    if (on_drain_) on_drain_();
  }
  return interval_;
}

}  // namespace ferry
