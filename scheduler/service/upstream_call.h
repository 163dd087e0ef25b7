// One Worker.Generate stream the scheduler reads from. Events and the final
// status go to callbacks (which post them to the event loop). Shared
// ownership: the call keeps itself alive until gRPC is done with it, and the
// scheduler may hold it to cancel it.
#pragma once

#include <functional>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "ferry/v1/worker.grpc.pb.h"

namespace ferry {

class UpstreamCall final : public grpc::ClientReadReactor<v1::TokenEvent> {
 public:
  using EventFn = std::function<void(v1::TokenEvent)>;
  using DoneFn = std::function<void(grpc::Status)>;

  // Starts the stream at once. `stub` is kept alive by the call.
  static std::shared_ptr<UpstreamCall> Start(std::shared_ptr<v1::Worker::Stub> stub, v1::GenerateRequest request,
                                             EventFn on_event, DoneFn on_done);
  // Ends the stream (the worker then aborts the request); `on_done` still
  // runs. Safe to call at any time, also after the stream ended.
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  UpstreamCall(std::shared_ptr<v1::Worker::Stub> stub, v1::GenerateRequest request, EventFn on_event,
               DoneFn on_done)
      : stub_(std::move(stub)), request_(std::move(request)), on_event_(std::move(on_event)),
        on_done_(std::move(on_done)) {}

  std::shared_ptr<v1::Worker::Stub> stub_;
  grpc::ClientContext context_;
  v1::GenerateRequest request_;
  v1::TokenEvent event_;
  EventFn on_event_;
  DoneFn on_done_;
  std::shared_ptr<UpstreamCall> self_;
};

}  // namespace ferry
