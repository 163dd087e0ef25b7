#include "engine/service/generate_stream.h"

#include "common/grpc_status.h"
#include "engine/service/worker_service.h"

namespace ferry {

// gRPC never runs a user reactor's reactions inline from StartWrite or
// Finish, so holding the handle's mutex across them cannot deadlock.

void StreamHandle::Push(v1::TokenEvent event) {
  absl::MutexLock lock(&mu);
  if (stream != nullptr) stream->PushLocked(std::move(event));
}

GenerateStream::GenerateStream(Engine* engine, std::string request_id, int num_samples, AbortFn abort)
    : engine_(engine),
      abort_(abort ? std::move(abort) : [engine](const std::string& id) { engine->Abort(id); }),
      request_id_(std::move(request_id)),
      handle_(std::make_shared<StreamHandle>()),
      unfinished_(num_samples) {
  absl::MutexLock lock(&handle_->mu);
  handle_->stream = this;
}

void GenerateStream::Start(GenerateInput input) {
  std::shared_ptr<StreamHandle> handle = handle_;
  absl::Status s = engine_->Submit(std::move(input),
                                   [handle](EngineEvent ev) { handle->Push(ToTokenEvent(ev)); });
  if (!s.ok()) Fail(ToGrpcStatus(s));
}

void GenerateStream::StartOnHandle(Engine* engine, const std::shared_ptr<StreamHandle>& handle,
                                   GenerateInput input) {
  auto open = [&handle] {
    absl::MutexLock lock(&handle->mu);
    return handle->stream != nullptr && !handle->stream->finished_;
  };
  if (!open()) return;
  const std::string id = input.request_id;
  // Not under the handle's lock: the engine takes its own lock and then the
  // handle's when it delivers events.
  absl::Status s = engine->Submit(std::move(input), [handle](EngineEvent ev) { handle->Push(ToTokenEvent(ev)); });
  if (!s.ok()) {
    absl::MutexLock lock(&handle->mu);
    if (handle->stream != nullptr) handle->stream->FinishOnceLocked(ToGrpcStatus(s));
    return;
  }
  // Cancelled between the check and the submission: its abort found nothing.
  if (!open()) engine->Abort(id);
}

void GenerateStream::FailOnHandle(const std::shared_ptr<StreamHandle>& handle, const grpc::Status& status) {
  absl::MutexLock lock(&handle->mu);
  if (handle->stream != nullptr) handle->stream->FinishOnceLocked(status);
}

void GenerateStream::Fail(const grpc::Status& status) {
  absl::MutexLock lock(&handle_->mu);
  FinishOnceLocked(status);
}

void GenerateStream::OnWriteDone(bool ok) {
  // The client is gone: stop the request and free its blocks. Not under the
  // handle's lock: aborting takes the attach registry's, which is taken
  // before the handle's elsewhere.
  if (!ok) abort_(request_id_);
  absl::MutexLock lock(&handle_->mu);
  writing_ = false;
  if (!ok) {
    FinishOnceLocked(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    return;
  }
  PumpLocked();
}

void GenerateStream::OnCancel() {
  abort_(request_id_);
  absl::MutexLock lock(&handle_->mu);
  FinishOnceLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
}

void GenerateStream::OnDone() {
  {
    absl::MutexLock lock(&handle_->mu);
    handle_->stream = nullptr;
  }
  delete this;
}

void GenerateStream::PushLocked(v1::TokenEvent event) {
  if (finished_) return;
  if (event.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) --unfinished_;
  queue_.push_back(std::move(event));
  PumpLocked();
}

void GenerateStream::PumpLocked() {
  if (writing_ || finished_) return;
  if (!queue_.empty()) {
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&current_);
    return;
  }
  if (unfinished_ <= 0) FinishOnceLocked(grpc::Status::OK);
}

void GenerateStream::FinishOnceLocked(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  Finish(status);
}

}  // namespace ferry
