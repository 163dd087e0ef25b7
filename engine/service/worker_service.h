// The gRPC face of one worker engine: ferry.v1.Worker (Generate as a server
// stream of token events, Abort, Stats, Health). RPC threads only convert
// messages and post to the engine; a client that goes away aborts its
// request, which frees its KV blocks.
#pragma once

#include <memory>
#include <string>

#include "engine/engine.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry {

struct WorkerServiceOptions {
  v1::WorkerRole role = v1::WORKER_ROLE_MIXED;
};

// Converts a request's proto parameters to the engine's, applying the
// proto's "zero means default" rules. Tokenizes `prompt` when there are no
// ids. InvalidArgument for what cannot be converted.
absl::StatusOr<GenerateInput> ToGenerateInput(const v1::GenerateRequest& request, const Model& model);
v1::TokenEvent ToTokenEvent(const EngineEvent& event);

class WorkerService final : public v1::Worker::CallbackService {
 public:
  // `engine` must outlive the service.
  WorkerService(Engine* engine, const WorkerServiceOptions& options);

  grpc::ServerWriteReactor<v1::TokenEvent>* Generate(grpc::CallbackServerContext* context,
                                                     const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context,
                                  const v1::StatsRequest* request,
                                  v1::StatsResponse* response) override;
  grpc::ServerUnaryReactor* Health(grpc::CallbackServerContext* context,
                                   const v1::HealthRequest* request,
                                   v1::HealthResponse* response) override;

  const std::string& incarnation_id() const { return incarnation_id_; }

 private:
  Engine* engine_;
  WorkerServiceOptions options_;
  std::string incarnation_id_;
};

}  // namespace ferry
