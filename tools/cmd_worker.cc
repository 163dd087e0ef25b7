// `ferry worker`: one engine behind the gRPC ferry.v1.Worker service.
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>

#include <atomic>
#include <cstdio>
#include <fstream>

#include "common/logging.h"
#include "engine/engine.h"
#include "engine/service/scheduler_client.h"
#include "engine/service/worker_metrics.h"
#include "engine/service/worker_service.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"
#include "tools/flags.h"
#include "tools/metrics_http_server.h"
#include "tools/mtls_flags.h"
#include "tools/signals.h"
#include "tools/worker_join.h"

namespace ferry {
namespace {

struct WorkerFlags {
  EngineFlags engine;
  std::string listen = "127.0.0.1:50051";
  std::string role = "mixed";
  std::string port_file;
  std::string log_level = "info";
  std::string scheduler;
  std::string advertise;
  int64_t metrics_port = 0;
  bool metrics_tls = false;
  bool kv_borrowing = false;
  bool enable_fault_injection = false;
  double attach_timeout_s = 30;
  MtlsFlags mtls;
};

// The address other processes reach this worker at: --advertise, or the
// listen host (loopback for a wildcard) with the bound port.
std::string AdvertiseAddress(const WorkerFlags& f, int port) {
  if (!f.advertise.empty()) return f.advertise;
  std::string host = f.listen.substr(0, f.listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") host = "127.0.0.1";
  return host + ":" + std::to_string(port);
}

absl::StatusOr<v1::WorkerRole> ParseRole(const std::string& role) {
  if (role == "mixed") return v1::WORKER_ROLE_MIXED;
  if (role == "prefill") return v1::WORKER_ROLE_PREFILL;
  if (role == "decode") return v1::WORKER_ROLE_DECODE;
  return absl::InvalidArgumentError("--role must be mixed, prefill or decode, got '" + role + "'");
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

int RunWorkerMain(const WorkerFlags& f) {
  BlockShutdownSignals();
  if (auto s = SetupLogging(f.log_level); !s.ok()) return Fail(s);
  auto role = ParseRole(f.role);
  if (!role.ok()) return Fail(role.status());
  if (f.metrics_port < 0 || f.metrics_port > 65535) {
    return Fail(absl::InvalidArgumentError("--metrics-port must be between 0 (off) and 65535"));
  }
  if (!(f.attach_timeout_s >= 1 && f.attach_timeout_s <= 3600)) {
    return Fail(absl::InvalidArgumentError("--attach-timeout must be between 1 and 3600 seconds"));
  }
  if (f.metrics_tls && (f.metrics_port == 0 || !f.mtls.files.enabled())) {
    return Fail(absl::InvalidArgumentError("--metrics-tls needs --metrics-port and the --mtls-* files"));
  }
  auto server_credentials = f.mtls.ServerCredentials();
  if (!server_credentials.ok()) return Fail(server_credentials.status());
  auto channel_credentials = f.mtls.ChannelCredentials();
  if (!channel_credentials.ok()) return Fail(channel_credentials.status());
  auto options = f.engine.ToOptions();
  if (!options.ok()) return Fail(options.status());
  auto path = ResolveModelPath(f.engine.model);
  if (!path.ok()) return Fail(path.status());
  auto model = Model::Load(*path, f.engine.ToLoadOptions());
  if (!model.ok()) return Fail(model.status());
  auto engine = Engine::Create(std::shared_ptr<const Model>(std::move(*model)), *options);
  if (!engine.ok()) return Fail(engine.status());

  WorkerServiceOptions service_options{.role = *role};
  service_options.migration.channel_credentials = *channel_credentials;
  service_options.enable_fault_injection = f.enable_fault_injection;
  service_options.attach_timeout = absl::Seconds(f.attach_timeout_s);
  if (f.enable_fault_injection) {
    Logger("worker")->warn(
        "fault injection is on: a Kill call (ferry bench --kill-worker-at, POST /admin/kill) "
        "ends this process with SIGKILL; do not use this flag in production");
  }
  WorkerService service(engine->get(), service_options);
  std::atomic<const SchedulerClient*> joined{nullptr};
  if (f.kv_borrowing) {
    if (f.scheduler.empty()) return Fail(absl::InvalidArgumentError("--kv-borrowing needs --scheduler"));
    service.EnableKvBorrowing(f.scheduler, [&joined] {
      const SchedulerClient* c = joined.load();
      return c != nullptr ? c->worker_id() : std::string();
    });
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // A port another process listens on is an error here, not a port whose
  // connections the two share (gRPC sets SO_REUSEPORT by default).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort(f.listen, *server_credentials, &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  AllowMigrationKeepalive(builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return Fail(absl::UnavailableError("cannot listen on " + f.listen));
  }
  Logger("worker")->info("worker serving {} on port {} (role {}, incarnation {}, {})",
                         (*engine)->model().id(), port, f.role, service.incarnation_id(),
                         f.mtls.files.enabled() ? "mutual TLS" : "plaintext gRPC");
  WorkerMetrics metrics(engine->get(), &service.prefix_pull_stats());
  // The mutual-TLS files (checked with the credentials above), for --metrics-tls.
  const absl::StatusOr<GrpcTlsFiles> metrics_tls_files = f.mtls.Files();
  if (!metrics_tls_files.ok()) return Fail(metrics_tls_files.status());
  std::unique_ptr<MetricsHttpServer> metrics_server;
  if (f.metrics_port > 0) {
    auto started = MetricsHttpServer::Start(MetricsHttpServer::HostOf(f.listen), static_cast<int>(f.metrics_port),
                                            [&metrics, &service] { return metrics.Render() + service.RenderDistAttentionMetrics(); },
                                            f.metrics_tls ? &*metrics_tls_files : nullptr);
    if (!started.ok()) return Fail(started.status());
    metrics_server = std::move(*started);
    Logger("worker")->info("metrics on {} port {}/metrics", metrics_server->scheme(), metrics_server->port());
  }
  if (!f.port_file.empty()) {
    std::ofstream(f.port_file) << port << "\n";
  }
  std::unique_ptr<SchedulerClient> scheduler_client;
  if (!f.scheduler.empty())
    scheduler_client = JoinScheduler(f.scheduler, AdvertiseAddress(f, port), engine->get(), service,
                                     *role, *channel_credentials);
  joined = scheduler_client.get();
  int sig = WaitForShutdownSignal();
  Logger("worker")->info("signal {}: shutting down", sig);
  joined = nullptr;
  scheduler_client.reset();
  metrics_server.reset();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  engine->reset();
  return 0;
}

}  // namespace

int RunWorker(int argc, char** argv) {
  WorkerFlags f;
  FlagParser flags("worker", "Runs one engine behind the gRPC ferry.v1.Worker service.");
  f.engine.Register(flags);
  flags.AddString("listen", &f.listen, "HOST:PORT to serve gRPC on (port 0: any free port)");
  flags.AddString("role", &f.role, "mixed, prefill or decode");
  flags.AddString("port-file", &f.port_file, "write the port actually bound to this file");
  flags.AddString("log-level", &f.log_level, "trace, debug, info, warn, error or off");
  flags.AddString("scheduler", &f.scheduler, "HOST:PORT of `ferry scheduler` to register with (empty: none)");
  flags.AddString("advertise", &f.advertise,
                  "HOST:PORT the scheduler and other workers reach this worker at (default: listen host, bound port)");
  flags.AddInt("metrics-port", &f.metrics_port, "serve Prometheus metrics on http://HOST:PORT/metrics (0: off)");
  flags.AddBool("metrics-tls", &f.metrics_tls,
                "serve the metrics over HTTPS with the --mtls-* certificate, to scrapers holding a client "
                "certificate from the same CA");
  flags.AddBool("kv-borrowing", &f.kv_borrowing,
                "serve a request whose context does not fit this worker's KV cache by borrowing blocks on other "
                "workers through --scheduler (DistAttention, cpu backend; otherwise such a request is refused)");
  flags.AddBool("enable-fault-injection", &f.enable_fault_injection,
                "accept Worker.Kill (POST /admin/kill through a gateway, ferry bench "
                "--kill-worker-at), which ends this process abruptly to test the cluster's "
                "recovery; for testing only");
  flags.AddDouble("attach-timeout", &f.attach_timeout_s,
                  "seconds a request migrated to this worker waits for its stream to attach before "
                  "it is aborted and its KV blocks freed (a transfer cut off in its last stage)");
  f.mtls.Register(flags);
  return RunWithFlags(flags, argc, argv, [&] { return RunWorkerMain(f); });
}

}  // namespace ferry
