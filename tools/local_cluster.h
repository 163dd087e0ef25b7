// A whole Ferry cluster inside one process, for `ferry serve --workers N`:
// a scheduler and N worker engines, each behind its own gRPC server on a
// loopback port, talking to each other exactly as separate processes do
// (registration, heartbeats, KV transfers between workers). The model's
// weights are loaded once and shared by every engine.
#pragma once

#include <grpcpp/server.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/service/scheduler_client.h"
#include "engine/service/worker_service.h"
#include "scheduler/service/scheduler.h"
#include "scheduler/service/scheduler_service.h"

namespace ferry {

struct LocalClusterOptions {
  int num_workers = 2;
  // With both set (and prefill + decode == num_workers), workers get these
  // roles and prompts of at least `pd_threshold` tokens are disaggregated.
  int num_prefill = 0;
  int num_decode = 0;
  int pd_threshold = 64;
  EngineOptions engine;  // per worker; threads 0 = cores / workers
  std::string dispatch_policy = "least-loaded";
};

class LocalCluster {
 public:
  // Starts the scheduler, then the workers, and waits (up to 10 s) until
  // every worker has registered. InvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(std::shared_ptr<const Model> model,
                                                             const LocalClusterOptions& options);
  // Stops workers first, then the scheduler.
  ~LocalCluster();

  const std::string& scheduler_address() const { return scheduler_address_; }
  std::vector<Engine*> engines() const;
  int max_model_len() const;

 private:
  struct Worker {
    std::unique_ptr<Engine> engine;
    std::unique_ptr<WorkerService> service;
    std::unique_ptr<grpc::Server> server;
    std::unique_ptr<SchedulerClient> client;
  };
  LocalCluster() = default;

  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<SchedulerService> scheduler_service_;
  std::unique_ptr<grpc::Server> scheduler_server_;
  std::string scheduler_address_;
  std::vector<Worker> workers_;
};

}  // namespace ferry
