// `ferry serve`: the OpenAI-compatible gateway and an engine in one
// process, the gateway talking to the engine through the same backend
// interface the cluster scheduler's client implements.
#include <cstdio>

#include "common/logging.h"
#include "engine/engine.h"
#include "server/gateway.h"
#include "server/model_assets.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"
#include "tools/gateway_flags.h"
#include "tools/in_process_backend.h"
#include "tools/signals.h"

namespace ferry {
namespace {

struct ServeFlags {
  EngineFlags engine;
  GatewayFlags gateway;
  std::string host = "127.0.0.1";
  int64_t port = 8000;
};

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
  auto model = Model::Load(*path);
  if (!model.ok()) return Fail(model.status());
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
  return RunWithFlags(flags, argc, argv, [&] { return RunServeMain(f); });
}

}  // namespace ferry
