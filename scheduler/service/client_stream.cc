#include "scheduler/service/client_stream.h"

namespace ferry {

std::pair<std::shared_ptr<ClientStream>, grpc::ServerWriteReactor<v1::TokenEvent>*> ClientStream::Create(
    std::function<void()> on_cancel) {
  auto stream = std::make_shared<ClientStream>();
  stream->on_cancel_ = std::move(on_cancel);
  auto* reactor = new ClientStreamReactor(stream);
  absl::MutexLock lock(&stream->mu_);
  stream->reactor_ = reactor;
  return {stream, reactor};
}

void ClientStream::Send(v1::TokenEvent event) {
  absl::MutexLock lock(&mu_);
  if (finish_requested_ || reactor_ == nullptr) return;
  queue_.push_back(std::move(event));
  PumpLocked();
}

void ClientStream::Finish(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  if (finish_requested_) return;
  finish_requested_ = true;
  final_status_ = status;
  PumpLocked();
}

// gRPC never runs reactions inline from StartWrite or Finish, so calling them
// under `mu_` cannot deadlock.
void ClientStream::PumpLocked() {
  if (reactor_ == nullptr || writing_ || finished_) return;
  if (!queue_.empty()) {
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    reactor_->StartWrite(&current_);
    return;
  }
  if (finish_requested_) {
    finished_ = true;
    reactor_->Finish(final_status_);
  }
}

void ClientStreamReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&stream_->mu_);
  stream_->writing_ = false;
  if (!ok) {
    // The client is gone; OnCancel tells the scheduler.
    stream_->queue_.clear();
    if (!stream_->finished_) {
      stream_->finished_ = true;
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    }
    return;
  }
  stream_->PumpLocked();
}

void ClientStreamReactor::OnCancel() {
  if (stream_->on_cancel_) stream_->on_cancel_();
  absl::MutexLock lock(&stream_->mu_);
  stream_->queue_.clear();
  stream_->finish_requested_ = true;
  if (!stream_->finished_ && !stream_->writing_) {
    stream_->finished_ = true;
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
}

void ClientStreamReactor::OnDone() {
  {
    absl::MutexLock lock(&stream_->mu_);
    stream_->reactor_ = nullptr;
  }
  delete this;
}

}  // namespace ferry
