#include "tools/local_cluster.h"

#include <grpcpp/server_builder.h>

#include <algorithm>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/service/migration.h"
#include "tools/worker_join.h"

namespace ferry {
namespace {

// A gRPC server on 127.0.0.1 with any free port.
absl::StatusOr<std::unique_ptr<grpc::Server>> Listen(grpc::Service* service, int* port) {
  grpc::ServerBuilder builder;
  // A port another process listens on is an error here, not a port whose
  // connections the two share (gRPC sets SO_REUSEPORT by default).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  AllowMigrationKeepalive(builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) return absl::UnavailableError("cannot listen on 127.0.0.1");
  return server;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(std::shared_ptr<const Model> model,
                                                                  const LocalClusterOptions& options) {
  const bool pd = options.num_prefill > 0 || options.num_decode > 0;
  if (options.num_workers < 1 || options.num_workers > 64) {
    return absl::InvalidArgumentError("--workers must be between 1 and 64");
  }
  if (pd && (options.num_prefill < 1 || options.num_decode < 1 ||
             options.num_prefill + options.num_decode != options.num_workers)) {
    return absl::InvalidArgumentError("--pd P:D needs P >= 1, D >= 1 and P + D equal to --workers");
  }
  std::unique_ptr<LocalCluster> c(new LocalCluster());
  SchedulerOptions so;
  so.dispatch_policy = options.dispatch_policy;
  so.heartbeat_interval = absl::Milliseconds(100);
  so.disaggregation.min_prompt_tokens = options.pd_threshold;
  FERRY_ASSIGN_OR_RETURN(c->scheduler_, Scheduler::Create(so));
  c->scheduler_service_ = std::make_unique<SchedulerService>(c->scheduler_.get());
  int port = 0;
  FERRY_ASSIGN_OR_RETURN(c->scheduler_server_, Listen(c->scheduler_service_.get(), &port));
  c->scheduler_address_ = absl::StrCat("127.0.0.1:", port);

  EngineOptions eo = options.engine;
  if (eo.threads == 0) {
    eo.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / options.num_workers);
  }
  for (int i = 0; i < options.num_workers; ++i) {
    v1::WorkerRole role = !pd                       ? v1::WORKER_ROLE_MIXED
                          : i < options.num_prefill ? v1::WORKER_ROLE_PREFILL
                                                    : v1::WORKER_ROLE_DECODE;
    Worker w;
    FERRY_ASSIGN_OR_RETURN(w.engine, Engine::Create(model, eo));
    w.service = std::make_unique<WorkerService>(w.engine.get(), WorkerServiceOptions{.role = role});
    int wport = 0;
    FERRY_ASSIGN_OR_RETURN(w.server, Listen(w.service.get(), &wport));
    w.client = JoinScheduler(c->scheduler_address_, absl::StrCat("127.0.0.1:", wport), w.engine.get(),
                             *w.service, role);
    Logger("serve")->info("worker {} ({}) on 127.0.0.1:{}", i, v1::WorkerRole_Name(role), wport);
    c->workers_.push_back(std::move(w));
  }
  // Ready once every worker has registered.
  for (int i = 0; i < 200; ++i) {
    std::promise<int> alive;
    c->scheduler_->ListWorkers([&alive](absl::StatusOr<v1::ListWorkersResponse> r) {
      int n = 0;
      if (r.ok()) {
        for (const auto& w : r->workers()) n += w.alive() ? 1 : 0;
      }
      alive.set_value(n);
    });
    if (alive.get_future().get() >= options.num_workers) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  Logger("serve")->info("cluster: scheduler on {}, {} workers", c->scheduler_address_, options.num_workers);
  return c;
}

LocalCluster::~LocalCluster() {
  for (Worker& w : workers_) w.client.reset();
  for (Worker& w : workers_) w.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  for (Worker& w : workers_) {
    w.server.reset();
    w.service.reset();
    w.engine.reset();
  }
  if (scheduler_server_) scheduler_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  scheduler_server_.reset();
  scheduler_service_.reset();
  scheduler_.reset();
}

std::vector<Engine*> LocalCluster::engines() const {
  std::vector<Engine*> out;
  for (const Worker& w : workers_) out.push_back(w.engine.get());
  return out;
}

int LocalCluster::max_model_len() const { return workers_.front().engine->max_model_len(); }

}  // namespace ferry
