#include "server/grpc_backend.h"

#include <grpcpp/create_channel.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_credentials.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/request_stream.h"

namespace ferry {

// One Generate stream. gRPC calls the reactions on its own threads, one at
// a time per call; the call deletes itself in OnDone.
class GrpcBackend::Call final : public grpc::ClientReadReactor<v1::TokenEvent> {
 public:
  Call(GrpcBackend* owner, const v1::GenerateRequest& request, EventCallback on_event)
      : owner_(owner),
        request_(request),
        on_event_(std::move(on_event)),
        finished_(request.params().n() > 0 ? request.params().n() : 1, false) {}

  void Start() {
    if (owner_->options_.target == BackendTarget::kScheduler) {
      owner_->scheduler_->async()->Generate(&context_, &request_, this);
    } else {
      owner_->worker_->async()->Generate(&context_, &request_, this);
    }
    StartRead(&event_);
    StartCall();
  }

  void Cancel() {
    cancelled_.store(true);
    context_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    got_events_ = true;
    int sample = event_.sample_index();
    if (IsFinal(event_.finish_reason()) && sample >= 0 && sample < static_cast<int>(finished_.size())) {
      finished_[sample] = true;
    }
    on_event_(event_);
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    for (size_t i = 0; i < finished_.size(); ++i) {
      if (finished_[i]) continue;
      v1::TokenEvent ev;
      ev.set_request_id(request_.request_id());
      ev.set_sample_index(static_cast<int>(i));
      if (cancelled_.load()) {
        ev.set_finish_reason(v1::FINISH_REASON_ABORT);
      } else {
        ev.set_finish_reason(v1::FINISH_REASON_ERROR);
        if (status.ok()) {
          ev.set_error("the generation stream ended before the sample finished");
          ev.set_error_code(static_cast<int>(absl::StatusCode::kInternal));
        } else {
          ev.set_error(Describe(status));
          ev.set_error_code(static_cast<int>(status.error_code()));
        }
      }
      on_event_(ev);
    }
    // Out of the map first (no Abort may reach it any more), then gone,
    // then counted out: the backend's destructor waits for that, so the
    // call (its context holds the channel) ends before the backend does.
    GrpcBackend* owner = owner_;
    owner->Remove(request_.request_id(), this);
    delete this;
    owner->Ended();
  }

 private:
  // The error for a client: an unavailable server named, and a stream that
  // broke after it started told apart from one that never started.
  std::string Describe(const grpc::Status& status) const {
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return status.error_message();
    const char* target = owner_->options_.target == BackendTarget::kScheduler ? "scheduler" : "worker";
    if (got_events_) {
      return absl::StrCat("lost the ", target, " at ", owner_->options_.address,
                          " mid-generation (it stopped or restarted); the output is incomplete: ",
                          status.error_message());
    }
    return absl::StrCat("the ", target, " at ", owner_->options_.address, " is unavailable: ",
                        status.error_message());
  }

  GrpcBackend* owner_;
  v1::GenerateRequest request_;
  EventCallback on_event_;
  grpc::ClientContext context_;
  v1::TokenEvent event_;
  std::vector<bool> finished_;
  std::atomic<bool> cancelled_{false};
  bool got_events_ = false;  // reactions run one at a time per call
};

GrpcBackend::GrpcBackend(const GrpcBackendOptions& options) : options_(options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  const int max_backoff_ms = static_cast<int>(absl::ToInt64Milliseconds(options.max_reconnect_backoff));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(max_backoff_ms, 100));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::min(max_backoff_ms, 100));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_backoff_ms);
  channel_ = grpc::CreateCustomChannel(
      options.address, ChannelCredentialsOrInsecure(options.channel_credentials), args);
  if (options.target == BackendTarget::kScheduler) {
    scheduler_ = v1::Scheduler::NewStub(channel_);
  } else {
    worker_ = v1::Worker::NewStub(channel_);
  }
}

absl::StatusOr<std::unique_ptr<GrpcBackend>> GrpcBackend::Create(const GrpcBackendOptions& options) {
  if (options.address.empty()) return absl::InvalidArgumentError("the backend address is empty");
  return std::unique_ptr<GrpcBackend>(new GrpcBackend(options));
}

GrpcBackend::~GrpcBackend() {
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, call] : calls_) call->Cancel();
  }
  absl::MutexLock lock(&mu_);
  auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_calls_ == 0; };
  mu_.Await(absl::Condition(&ended));
}

absl::Status GrpcBackend::Generate(const v1::GenerateRequest& request, EventCallback on_event) {
  auto* call = new Call(this, request, std::move(on_event));
  {
    absl::MutexLock lock(&mu_);
    calls_.emplace(request.request_id(), call);
    ++live_calls_;
  }
  call->Start();
  return absl::OkStatus();
}

void GrpcBackend::Abort(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  auto range = calls_.equal_range(request_id);
  for (auto it = range.first; it != range.second; ++it) it->second->Cancel();
}

void GrpcBackend::Remove(const std::string& request_id, Call* call) {
  absl::MutexLock lock(&mu_);
  auto range = calls_.equal_range(request_id);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second == call) {
      calls_.erase(it);
      return;
    }
  }
}

void GrpcBackend::Ended() {
  absl::MutexLock lock(&mu_);
  --live_calls_;
}

bool GrpcBackend::Ready() {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.health_timeout));
  if (options_.target == BackendTarget::kScheduler) {
    v1::ListWorkersResponse response;
    grpc::Status s = scheduler_->ListWorkers(&context, v1::ListWorkersRequest(), &response);
    if (!s.ok()) return false;
    for (const auto& w : response.workers()) {
      if (w.alive() && !w.draining()) return true;
    }
    return false;
  }
  v1::HealthResponse response;
  grpc::Status s = worker_->Health(&context, v1::HealthRequest(), &response);
  return s.ok() && response.ready();
}

ClusterAdmin* GrpcBackend::cluster_admin() {
  return options_.target == BackendTarget::kScheduler ? this : nullptr;
}

absl::StatusOr<v1::ListWorkersResponse> GrpcBackend::ListWorkers() {
  if (scheduler_ == nullptr) return absl::FailedPreconditionError("the backend is a worker, not a scheduler");
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.admin_timeout));
  v1::ListWorkersResponse response;
  FERRY_RETURN_IF_ERROR(FromGrpcStatus(scheduler_->ListWorkers(&context, v1::ListWorkersRequest(), &response)));
  return response;
}

absl::StatusOr<v1::MigrateResponse> GrpcBackend::Migrate(const std::string& request_id, const std::string& to) {
  if (scheduler_ == nullptr) return absl::FailedPreconditionError("the backend is a worker, not a scheduler");
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.migrate_timeout));
  v1::MigrateRequest request;
  request.set_request_id(request_id);
  request.set_destination_worker_id(to);
  v1::MigrateResponse response;
  FERRY_RETURN_IF_ERROR(FromGrpcStatus(scheduler_->Migrate(&context, request, &response)));
  if (!response.ok()) {
    const int code = response.error_code();
    return absl::Status(code > 0 && code <= 16 ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kAborted,
                        response.error().empty() ? "the request was not migrated" : response.error());
  }
  return response;
}

absl::Status GrpcBackend::Drain(const std::string& worker) {
  if (scheduler_ == nullptr) return absl::FailedPreconditionError("the backend is a worker, not a scheduler");
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.admin_timeout));
  v1::DrainWorkerRequest request;
  request.set_worker_id(worker);
  v1::DrainWorkerResponse response;
  return FromGrpcStatus(scheduler_->DrainWorker(&context, request, &response));
}

absl::StatusOr<v1::KillWorkerResponse> GrpcBackend::KillWorker(const std::string& worker) {
  if (scheduler_ == nullptr) {
    return absl::FailedPreconditionError("the backend is a worker, not a scheduler");
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.admin_timeout));
  v1::KillWorkerRequest request;
  request.set_worker_id(worker);
  v1::KillWorkerResponse response;
  FERRY_RETURN_IF_ERROR(FromGrpcStatus(scheduler_->KillWorker(&context, request, &response)));
  return response;
}

}  // namespace ferry
