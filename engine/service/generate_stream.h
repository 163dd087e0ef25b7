// The server side of one Worker.Generate stream: events arrive from the
// engine thread and go out one write at a time (gRPC allows one outstanding
// write); the rest wait in a queue. A client that goes away aborts the
// request, which frees its KV blocks.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry {

class GenerateStream;

// What event producers hold: the stream, until the RPC is done (then null,
// and late events are dropped).
struct StreamHandle {
  absl::Mutex mu;
  GenerateStream* stream ABSL_GUARDED_BY(mu) = nullptr;

  // Queues `event` on the stream if it is still there.
  void Push(v1::TokenEvent event);
};

class GenerateStream final : public grpc::ServerWriteReactor<v1::TokenEvent> {
 public:
  using AbortFn = std::function<void(const std::string& request_id)>;
  // The stream ends once `num_samples` samples have sent their last event.
  // A client that goes away aborts the request through `abort` (default:
  // Engine::Abort).
  GenerateStream(Engine* engine, std::string request_id, int num_samples, AbortFn abort = nullptr);

  std::shared_ptr<StreamHandle> handle() const { return handle_; }
  // Submits `input` with this stream as its sink, or ends the stream with the
  // submission's error.
  void Start(GenerateInput input);
  // Ends the stream at once with `status`.
  void Fail(const grpc::Status& status);
  // Start() for a stream that may have ended meanwhile (its client went
  // away): then `input` is not run at all, or aborted at once.
  static void StartOnHandle(Engine* engine, const std::shared_ptr<StreamHandle>& handle, GenerateInput input);
  // Fail() for a stream that may have ended meanwhile.
  static void FailOnHandle(const std::shared_ptr<StreamHandle>& handle, const grpc::Status& status);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  friend struct StreamHandle;
  void PushLocked(v1::TokenEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(handle_->mu);
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(handle_->mu);
  void FinishOnceLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(handle_->mu);

  Engine* engine_;
  AbortFn abort_;
  std::string request_id_;
  std::shared_ptr<StreamHandle> handle_;
  std::deque<v1::TokenEvent> queue_;
  v1::TokenEvent current_;
  bool writing_ = false;
  bool finished_ = false;
  int unfinished_;
};

}  // namespace ferry
