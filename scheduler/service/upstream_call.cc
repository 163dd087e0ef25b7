#include "scheduler/service/upstream_call.h"

namespace ferry {

std::shared_ptr<UpstreamCall> UpstreamCall::Start(std::shared_ptr<v1::Worker::Stub> stub,
                                                  v1::GenerateRequest request, EventFn on_event, DoneFn on_done) {
  std::shared_ptr<UpstreamCall> call(
      new UpstreamCall(std::move(stub), std::move(request), std::move(on_event), std::move(on_done)));
  call->self_ = call;
  call->stub_->async()->Generate(&call->context_, &call->request_, call.get());
  call->StartRead(&call->event_);
  call->StartCall();
  return call;
}

void UpstreamCall::OnReadDone(bool ok) {
  if (!ok) return;  // the stream ended: OnDone follows
  on_event_(std::move(event_));
  event_.Clear();
  StartRead(&event_);
}

void UpstreamCall::OnDone(const grpc::Status& status) {
  on_done_(status);
  // May delete this object: nothing may touch it afterwards.
  std::shared_ptr<UpstreamCall> keep = std::move(self_);
}

}  // namespace ferry
