// `ferry serve`: the OpenAI-compatible gateway and an engine in one
// process, the gateway talking to the engine through the same backend
// interface the cluster scheduler's client implements.
#include <cstdio>

#include "common/logging.h"
#include "engine/engine.h"
#include "absl/strings/numbers.h"
#include "server/gateway.h"
#include "server/grpc_backend.h"
#include "server/model_assets.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"
#include "tools/gateway_flags.h"
#include "tools/in_process_backend.h"
#include "tools/local_cluster.h"
#include "tools/signals.h"

namespace ferry {
namespace {

struct ServeFlags {
  EngineFlags engine;
  GatewayFlags gateway;
  std::string host = "127.0.0.1";
  int64_t port = 8000;
  int64_t workers = 1;
  std::string pd;  // "P:D"
  std::string policy = "least-loaded";
  int64_t pd_threshold = 64;
};

absl::Status ParsePd(const std::string& pd, LocalClusterOptions* o) {
  if (pd.empty()) return absl::OkStatus();
  size_t colon = pd.find(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(pd.substr(0, colon), &o->num_prefill) ||
      !absl::SimpleAtoi(pd.substr(colon + 1), &o->num_decode)) {
    return absl::InvalidArgumentError("--pd must be P:D (prefill and decode workers), got '" + pd + "'");
  }
  return absl::OkStatus();
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

int RunServeMain(const ServeFlags& f) {
  BlockShutdownSignals();
  if (auto s = SetupLogging(f.gateway.log_level); !s.ok()) return Fail(s);
  if (f.port < 0 || f.port > 65535) return Fail(absl::InvalidArgumentError("--port must be in [0, 65535]"));
  auto options = f.gateway.ToGatewayOptions(0);
  if (!options.ok()) return Fail(options.status());
  auto engine_options = f.engine.ToOptions();
  if (!engine_options.ok()) return Fail(engine_options.status());
  auto path = ResolveModelPath(f.engine.model);
  if (!path.ok()) return Fail(path.status());
  auto assets = ModelAssets::Load(*path, f.gateway.chat_template);
  if (!assets.ok()) return Fail(assets.status());
  auto model = Model::Load(*path, f.engine.ToLoadOptions());
  if (!model.ok()) return Fail(model.status());
  if (f.workers > 1 || !f.pd.empty()) {
    // The whole cluster in this process: scheduler + workers on loopback.
    LocalClusterOptions co;
    co.num_workers = static_cast<int>(f.workers);
    co.engine = *engine_options;
    co.dispatch_policy = f.policy;
    co.pd_threshold = static_cast<int>(f.pd_threshold);
    if (auto s = ParsePd(f.pd, &co); !s.ok()) return Fail(s);
    if (!f.pd.empty() && f.workers == 1) co.num_workers = co.num_prefill + co.num_decode;
    auto cluster = LocalCluster::Start(std::shared_ptr<const Model>(std::move(*model)), co);
    if (!cluster.ok()) return Fail(cluster.status());
    options->max_model_len = (*cluster)->max_model_len();
    GrpcBackendOptions bo;
    bo.target = BackendTarget::kScheduler;
    bo.address = (*cluster)->scheduler_address();
    auto backend = GrpcBackend::Create(bo);
    if (!backend.ok()) return Fail(backend.status());
    MetricsRegistry metrics;
    int code = 0;
    {
      Gateway gateway(*options, assets->get(), backend->get(), &metrics);
      code = ServeUntilSignal(gateway, f.gateway.ToHttpOptions(f.host, static_cast<int>(f.port)), f.gateway);
    }
    backend->reset();
    cluster->reset();
    return code;
  }
  auto engine = Engine::Create(std::shared_ptr<const Model>(std::move(*model)), *engine_options);
  if (!engine.ok()) return Fail(engine.status());
  options->max_model_len = (*engine)->max_model_len();

  MetricsRegistry metrics;
  ExportEngineMetrics(engine->get(), &metrics);
  InProcessBackend backend(engine->get());
  int code = 0;
  {
    Gateway gateway(*options, assets->get(), &backend, &metrics);
    code = ServeUntilSignal(gateway, f.gateway.ToHttpOptions(f.host, static_cast<int>(f.port)), f.gateway);
  }
  engine->reset();
  return code;
}

}  // namespace

int RunServe(int argc, char** argv) {
  ServeFlags f;
  FlagParser flags("serve",
                   "Serves the OpenAI-compatible HTTP API with an engine in the same process "
                   "(the built-in model when no --model is given).");
  f.engine.Register(flags);
  f.gateway.Register(flags);
  flags.AddString("host", &f.host, "address to listen on");
  flags.AddInt("port", &f.port, "HTTP port (0: any free port)");
  flags.AddInt("workers", &f.workers,
               "engines; above 1 runs the whole cluster here: a scheduler and N workers on loopback gRPC");
  flags.AddString("pd", &f.pd, "P:D prefill and decode workers (disaggregated serving), e.g. 1:1");
  flags.AddInt("pd-threshold", &f.pd_threshold, "with --pd: prompts of at least this many tokens are disaggregated");
  flags.AddString("policy", &f.policy, "with --workers: round-robin, least-loaded or prefix-aware");
  return RunWithFlags(flags, argc, argv, [&] { return RunServeMain(f); });
}

}  // namespace ferry
