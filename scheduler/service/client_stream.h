// The client's side of Scheduler.Generate: events are queued from the event
// loop and written one at a time. The scheduler holds a ClientStream handle;
// the gRPC reactor behind it may end first (client gone), after which Send
// and Finish do nothing.
#pragma once

#include <deque>
#include <functional>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "ferry/v1/common.pb.h"

namespace ferry {

class ClientStreamReactor;

class ClientStream {
 public:
  // Creates the reactor to return from the gRPC handler. `on_cancel` runs
  // (on a gRPC thread) when the client cancels or goes away.
  static std::pair<std::shared_ptr<ClientStream>, grpc::ServerWriteReactor<v1::TokenEvent>*> Create(
      std::function<void()> on_cancel);

  void Send(v1::TokenEvent event);
  // Ends the stream with `status` once the queued events are written.
  void Finish(const grpc::Status& status);

 private:
  friend class ClientStreamReactor;
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  ClientStreamReactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<v1::TokenEvent> queue_ ABSL_GUARDED_BY(mu_);
  v1::TokenEvent current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_cancel_;
};

class ClientStreamReactor final : public grpc::ServerWriteReactor<v1::TokenEvent> {
 public:
  explicit ClientStreamReactor(std::shared_ptr<ClientStream> stream) : stream_(std::move(stream)) {}
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  std::shared_ptr<ClientStream> stream_;
};

}  // namespace ferry
