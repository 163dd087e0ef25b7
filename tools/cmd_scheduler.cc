// `ferry scheduler`: the cluster scheduler behind the gRPC ferry.v1.Scheduler
// service. Workers join with `ferry worker --scheduler HOST:PORT`.
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>

#include <cstdio>
#include <fstream>

#include "absl/time/time.h"
#include "common/logging.h"
#include "common/strings.h"
#include "scheduler/service/scheduler.h"
#include "scheduler/service/scheduler_service.h"
#include "tools/commands.h"
#include "tools/flags.h"
#include "tools/metrics_http_server.h"
#include "tools/mtls_flags.h"
#include "tools/signals.h"

namespace ferry {
namespace {

struct SchedulerFlags {
  std::string listen = "127.0.0.1:50050";
  std::string worker_timeout = "1s";
  std::string policy = "least-loaded";
  std::string migration = "on";
  int64_t pd_threshold = 64;
  double migration_gap = 16;
  std::string prefix_pull = "on";
  double prefix_pull_bandwidth = 1e9;
  double prefix_pull_prefill_rate = 0;
  int64_t prefix_pull_min_blocks = 2;
  int64_t kv_max_lenders = 4;
  double kv_lender_keep = 0.1;
  std::string port_file;
  std::string log_level = "info";
  int64_t metrics_port = 0;
  bool metrics_tls = false;
  MtlsFlags mtls;
};

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

absl::StatusOr<SchedulerOptions> ToOptions(const SchedulerFlags& f) {
  SchedulerOptions o;
  if (!absl::ParseDuration(Sv(f.worker_timeout), &o.worker_timeout) || o.worker_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--worker-timeout must be a positive duration like 1s or 500ms, got '" +
                                      f.worker_timeout + "'");
  }
  o.dispatch_policy = f.policy;
  if (f.migration != "on" && f.migration != "off") {
    return absl::InvalidArgumentError("--migration must be on or off, got '" + f.migration + "'");
  }
  o.migration = f.migration == "on";
  if (f.pd_threshold < 0) return absl::InvalidArgumentError("--pd-threshold must not be negative");
  o.disaggregation.min_prompt_tokens = f.pd_threshold;
  if (f.metrics_port < 0 || f.metrics_port > 65535) {
    return absl::InvalidArgumentError("--metrics-port must be between 0 (off) and 65535");
  }
  if (f.metrics_tls && (f.metrics_port == 0 || !f.mtls.files.enabled())) {
    return absl::InvalidArgumentError("--metrics-tls needs --metrics-port and the --mtls-* files");
  }
  if (f.migration_gap <= 0) return absl::InvalidArgumentError("--migration-gap must be positive");
  o.migration_options.freeness_gap_threshold = f.migration_gap;
  if (f.prefix_pull != "on" && f.prefix_pull != "off") {
    return absl::InvalidArgumentError("--prefix-pull must be on or off, got '" + f.prefix_pull + "'");
  }
  o.prefix_pull.enabled = f.prefix_pull == "on";
  if (!(f.prefix_pull_bandwidth > 0)) return absl::InvalidArgumentError("--prefix-pull-bandwidth must be positive");
  o.prefix_pull.link_bytes_per_second = f.prefix_pull_bandwidth;
  if (!(f.prefix_pull_prefill_rate >= 0)) {
    return absl::InvalidArgumentError("--prefix-pull-prefill-rate must not be negative");
  }
  o.prefix_pull.prefill_tokens_per_second_override = f.prefix_pull_prefill_rate;
  if (f.prefix_pull_min_blocks < 1) return absl::InvalidArgumentError("--prefix-pull-min-blocks must be at least 1");
  o.prefix_pull.min_blocks = f.prefix_pull_min_blocks;
  if (f.kv_max_lenders < 1) return absl::InvalidArgumentError("--kv-max-lenders must be at least 1");
  if (!(f.kv_lender_keep >= 0 && f.kv_lender_keep < 1)) {
    return absl::InvalidArgumentError("--kv-lender-keep must be a fraction in [0, 1)");
  }
  o.kv_ledger.max_lenders_per_request = static_cast<int>(f.kv_max_lenders);
  o.kv_ledger.lender_keep_fraction = f.kv_lender_keep;
  // Heartbeats several times within the timeout, at most every 100 ms.
  o.heartbeat_interval = std::min(absl::Milliseconds(100), o.worker_timeout / 5);
  return o;
}

int RunSchedulerMain(const SchedulerFlags& f) {
  BlockShutdownSignals();
  if (auto s = SetupLogging(f.log_level); !s.ok()) return Fail(s);
  auto options = ToOptions(f);
  if (!options.ok()) return Fail(options.status());
  auto server_credentials = f.mtls.ServerCredentials();
  if (!server_credentials.ok()) return Fail(server_credentials.status());
  auto channel_credentials = f.mtls.ChannelCredentials();
  if (!channel_credentials.ok()) return Fail(channel_credentials.status());
  options->channel_credentials = *channel_credentials;
  auto scheduler = Scheduler::Create(*options);
  if (!scheduler.ok()) return Fail(scheduler.status());

  SchedulerService service(scheduler->get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // A port another process listens on is an error here, not a port whose
  // connections the two share (gRPC sets SO_REUSEPORT by default).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort(f.listen, *server_credentials, &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) return Fail(absl::UnavailableError("cannot listen on " + f.listen));
  const char* transport = f.mtls.files.enabled() ? "mutual TLS" : "plaintext gRPC";
  Logger("scheduler")->info("scheduler serving on port {} (policy {}, migration {}, worker timeout {}, {})",
                            port, f.policy, f.migration, f.worker_timeout, transport);
  // The mutual-TLS files (checked with the credentials above), for --metrics-tls.
  const absl::StatusOr<GrpcTlsFiles> metrics_tls_files = f.mtls.Files();
  if (!metrics_tls_files.ok()) return Fail(metrics_tls_files.status());
  std::unique_ptr<MetricsHttpServer> metrics_server;
  if (f.metrics_port > 0) {
    Scheduler* s = scheduler->get();
    auto started = MetricsHttpServer::Start(MetricsHttpServer::HostOf(f.listen), static_cast<int>(f.metrics_port),
                                            [s] { return s->RenderMetrics(); },
                                            f.metrics_tls ? &*metrics_tls_files : nullptr);
    if (!started.ok()) return Fail(started.status());
    metrics_server = std::move(*started);
    Logger("scheduler")->info("metrics on {} port {}/metrics", metrics_server->scheme(), metrics_server->port());
  }
  if (!f.port_file.empty()) std::ofstream(f.port_file) << port << "\n";
  int sig = WaitForShutdownSignal();
  Logger("scheduler")->info("signal {}: shutting down", sig);
  metrics_server.reset();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  scheduler->reset();
  return 0;
}

}  // namespace

int RunScheduler(int argc, char** argv) {
  SchedulerFlags f;
  FlagParser flags("scheduler", "Runs the cluster scheduler (ferry.v1.Scheduler): workers register with it.");
  flags.AddString("listen", &f.listen, "HOST:PORT to serve gRPC on (port 0: any free port)");
  flags.AddString("worker-timeout", &f.worker_timeout, "a worker silent this long is dead (e.g. 1s, 500ms)");
  flags.AddString("policy", &f.policy, "dispatch policy: round-robin, least-loaded or prefix-aware");
  flags.AddString("migration", &f.migration, "on: move requests between workers to balance load; off: only drain");
  flags.AddInt("pd-threshold", &f.pd_threshold,
               "prompts of at least this many tokens go to a prefill worker and then move to a decode worker");
  flags.AddDouble("migration-gap", &f.migration_gap, "freeness gap (blocks per request) that triggers a migration");
  flags.AddString("prefix-pull", &f.prefix_pull,
                  "on: a worker given a request pulls the cached prompt prefix from a peer holding more of it "
                  "when the copy is estimated cheaper than computing it; off: never");
  flags.AddDouble("prefix-pull-bandwidth", &f.prefix_pull_bandwidth,
                  "worker-to-worker bytes per second assumed when weighing a prefix pull");
  flags.AddDouble("prefix-pull-prefill-rate", &f.prefix_pull_prefill_rate,
                  "prompt tokens per second assumed for recomputing a prefix (0: each worker's measured rate)");
  flags.AddInt("prefix-pull-min-blocks", &f.prefix_pull_min_blocks,
               "pull only when the peer caches at least this many more KV blocks of the prompt");
  flags.AddInt("kv-max-lenders", &f.kv_max_lenders,
               "most workers one request may borrow KV blocks from (workers started with --kv-borrowing)");
  flags.AddDouble("kv-lender-keep", &f.kv_lender_keep,
                  "fraction of its KV blocks a lender keeps for its own requests");
  flags.AddString("port-file", &f.port_file, "write the port actually bound to this file");
  flags.AddString("log-level", &f.log_level, "trace, debug, info, warn, error or off");
  flags.AddInt("metrics-port", &f.metrics_port, "serve Prometheus metrics on http://HOST:PORT/metrics (0: off)");
  flags.AddBool("metrics-tls", &f.metrics_tls,
                "serve the metrics over HTTPS with the --mtls-* certificate, to scrapers holding a client "
                "certificate from the same CA");
  f.mtls.Register(flags);
  return RunWithFlags(flags, argc, argv, [&] { return RunSchedulerMain(f); });
}

}  // namespace ferry
