// `ferry gateway`: the OpenAI-compatible HTTP front end of a cluster. It
// loads only the tokenizer and chat template of --model (never the weights)
// and sends generations over gRPC to the scheduler, or straight to one
// worker.
#include <cstdio>

#include "common/logging.h"
#include "server/gateway.h"
#include "server/grpc_backend.h"
#include "server/model_assets.h"
#include "tools/commands.h"
#include "tools/gateway_flags.h"
#include "tools/mtls_flags.h"
#include "tools/signals.h"

namespace ferry {
namespace {

struct GatewayMainFlags {
  GatewayFlags gateway;
  std::string listen = "127.0.0.1:8000";
  std::string scheduler;
  std::string worker;
  std::string model;
  int64_t max_model_len = 0;
  MtlsFlags mtls;
};

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

int RunGatewayMain(const GatewayMainFlags& f) {
  BlockShutdownSignals();
  if (auto s = SetupLogging(f.gateway.log_level); !s.ok()) return Fail(s);
  if (f.scheduler.empty() == f.worker.empty()) {
    return Fail(absl::InvalidArgumentError("give exactly one of --scheduler HOST:PORT or --worker HOST:PORT"));
  }
  if (f.model.empty()) {
    return Fail(absl::InvalidArgumentError("--model is required (the tokenizer and chat template come from it)"));
  }
  std::string host;
  int port = 0;
  if (auto s = SplitHostPort(f.listen, &host, &port); !s.ok()) return Fail(s);
  auto assets = ModelAssets::Load(f.model, f.gateway.chat_template);
  if (!assets.ok()) return Fail(assets.status());
  auto options = f.gateway.ToGatewayOptions(static_cast<int>(f.max_model_len));
  if (!options.ok()) return Fail(options.status());
  GrpcBackendOptions backend_options;
  backend_options.target = f.scheduler.empty() ? BackendTarget::kWorker : BackendTarget::kScheduler;
  backend_options.address = f.scheduler.empty() ? f.worker : f.scheduler;
  auto channel_credentials = f.mtls.ChannelCredentials();
  if (!channel_credentials.ok()) return Fail(channel_credentials.status());
  backend_options.channel_credentials = *channel_credentials;
  auto backend = GrpcBackend::Create(backend_options);
  if (!backend.ok()) return Fail(backend.status());
  Logger("gateway")->info("sending generations to the {} at {} ({})",
                          f.scheduler.empty() ? "worker" : "scheduler", backend_options.address,
                          f.mtls.files.enabled() ? "mutual TLS" : "plaintext gRPC");
  MetricsRegistry metrics;
  Gateway gateway(*options, assets->get(), backend->get(), &metrics);
  return ServeUntilSignal(gateway, f.gateway.ToHttpOptions(host, port), f.gateway);
}

}  // namespace

int RunGateway(int argc, char** argv) {
  GatewayMainFlags f;
  FlagParser flags("gateway",
                   "Serves the OpenAI-compatible HTTP API in front of a ferry scheduler (or one worker) "
                   "over gRPC.");
  f.gateway.Register(flags);
  flags.AddString("listen", &f.listen, "HOST:PORT to serve HTTP on (port 0: any free port)");
  flags.AddString("scheduler", &f.scheduler, "HOST:PORT of the ferry scheduler (ferry.v1.Scheduler)");
  flags.AddString("worker", &f.worker, "HOST:PORT of one ferry worker (ferry.v1.Worker), instead of a scheduler");
  flags.AddString(
      "model", &f.model,
      "GGUF file, Hugging Face directory or llama2.c checkpoint: its tokenizer and chat template");
  flags.AddInt("max-model-len", &f.max_model_len, "context length to admit requests up to (0: the model's)");
  f.mtls.Register(flags);
  return RunWithFlags(flags, argc, argv, [&] { return RunGatewayMain(f); });
}

}  // namespace ferry
