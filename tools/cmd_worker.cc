// `ferry worker`: one engine behind the gRPC ferry.v1.Worker service.
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>

#include <cstdio>
#include <fstream>

#include "common/logging.h"
#include "engine/engine.h"
#include "engine/service/worker_service.h"
#include "tools/commands.h"
#include "tools/engine_flags.h"
#include "tools/flags.h"
#include "tools/signals.h"

namespace ferry {
namespace {

struct WorkerFlags {
  EngineFlags engine;
  std::string listen = "127.0.0.1:50051";
  std::string role = "mixed";
  std::string port_file;
  std::string log_level = "info";
};

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
  auto options = f.engine.ToOptions();
  if (!options.ok()) return Fail(options.status());
  auto path = ResolveModelPath(f.engine.model);
  if (!path.ok()) return Fail(path.status());
  auto model = Model::Load(*path);
  if (!model.ok()) return Fail(model.status());
  auto engine = Engine::Create(std::shared_ptr<const Model>(std::move(*model)), *options);
  if (!engine.ok()) return Fail(engine.status());

  WorkerService service(engine->get(), WorkerServiceOptions{.role = *role});
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(f.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return Fail(absl::UnavailableError("cannot listen on " + f.listen));
  }
  Logger("worker")->info("worker serving {} on port {} (role {}, incarnation {})", (*engine)->model().id(),
                         port, f.role, service.incarnation_id());
  if (!f.port_file.empty()) {
    std::ofstream(f.port_file) << port << "\n";
  }
  int sig = WaitForShutdownSignal();
  Logger("worker")->info("signal {}: shutting down", sig);
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
  return RunWithFlags(flags, argc, argv, [&] { return RunWorkerMain(f); });
}

}  // namespace ferry
