// An engine and its WorkerService behind real gRPC on loopback, in this
// process: for tests that drive the worker's RPCs between several workers
// without starting processes.
#pragma once

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "engine/service/worker_service.h"
#include "gtest/gtest.h"

namespace ferry::testing {

struct InProcessWorker {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<WorkerService> service;
  std::unique_ptr<grpc::Server> server;
  std::string address;

  std::unique_ptr<v1::Worker::Stub> Stub() const {
    return v1::Worker::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  }
  v1::StatsResponse Stats() const {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::StatsResponse stats;
    EXPECT_TRUE(Stub()->Stats(&ctx, {}, &stats).ok());
    return stats;
  }
  ~InProcessWorker() {
    if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    service.reset();
    engine.reset();
  }
};

// A worker on `model` (one engine thread unless `engine_options` say
// otherwise) whose engine runs the backend `make` makes (null: the one
// engine_options.device names); null after a failed test expectation.
inline std::unique_ptr<InProcessWorker> StartInProcessWorker(std::shared_ptr<const Model> model,
                                                             WorkerServiceOptions options,
                                                             EngineOptions engine_options = {.threads = 1},
                                                             const Engine::BackendFactory& make = nullptr) {
  auto w = std::make_unique<InProcessWorker>();
  auto engine = Engine::Create(std::move(model), engine_options, make);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return nullptr;
  w->engine = std::move(*engine);
  w->service = std::make_unique<WorkerService>(w->engine.get(), options);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(w->service.get());
  builder.SetMaxReceiveMessageSize(64 << 20);
  w->server = builder.BuildAndStart();
  EXPECT_NE(port, 0) << "no loopback port";
  if (port == 0) return nullptr;
  w->address = absl::StrCat("127.0.0.1:", port);
  return w;
}

}  // namespace ferry::testing
