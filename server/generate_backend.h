// What the gateway sends generation requests to: the cluster scheduler over
// gRPC, a worker directly, or (in `ferry serve`) an engine in the same
// process. All speak ferry.v1.GenerateRequest -> stream of TokenEvent.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "ferry/v1/worker.pb.h"
#include "server/cluster_admin.h"

namespace ferry {

class GenerateBackend {
 public:
  virtual ~GenerateBackend() = default;

  // Called from a backend thread, in order for each request. Each of the n
  // samples ends with one event whose finish_reason is set; a stream that
  // breaks ends with events carrying FINISH_REASON_ERROR and `error`.
  using EventCallback = std::function<void(const v1::TokenEvent&)>;

  // Starts a generation. An error here means the request never started:
  // InvalidArgument (bad parameters, prompt too long), Unavailable (no
  // worker), ResourceExhausted (overloaded). `on_event` is not called then.
  virtual absl::Status Generate(const v1::GenerateRequest& request, EventCallback on_event) = 0;
  // Stops a request (its client went away); its blocks are freed. The
  // remaining events may still arrive and may be ignored.
  virtual void Abort(const std::string& request_id) = 0;
  // A worker is reachable and a model is loaded.
  virtual bool Ready() = 0;
  // The cluster's admin calls, or null when the backend is not a cluster
  // scheduler (one worker, one engine). Lives as long as the backend.
  virtual ClusterAdmin* cluster_admin() { return nullptr; }
};

}  // namespace ferry
