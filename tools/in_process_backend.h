// A GenerateBackend over an engine in the same process (`ferry serve`): the
// same GenerateRequest -> TokenEvent contract the gRPC backends speak, with
// the worker service's conversions. Engine events arrive on the engine's
// thread and are handed straight to the callback.
#pragma once

#include "common/metrics.h"
#include "engine/engine.h"
#include "server/generate_backend.h"

namespace ferry {

class InProcessBackend final : public GenerateBackend {
 public:
  // `engine` must outlive the backend.
  explicit InProcessBackend(Engine* engine) : engine_(engine) {}

  // InvalidArgument for parameters the engine refuses (prompt plus
  // max_tokens beyond the context or the KV cache, ids outside the
  // vocabulary); AlreadyExists for a request id in use; Unavailable after
  // shutdown.
  absl::Status Generate(const v1::GenerateRequest& request, EventCallback on_event) override;
  void Abort(const std::string& request_id) override;
  bool Ready() override { return true; }

 private:
  Engine* engine_;
};

// Publishes the engine's statistics (KV blocks, running/waiting requests,
// preemptions, prefix cache hit rate, tokens) as ferry_engine_* metrics,
// refreshed at every scrape. `engine` must outlive `registry`'s use.
void ExportEngineMetrics(const Engine* engine, MetricsRegistry* registry);

}  // namespace ferry
