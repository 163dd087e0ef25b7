// `ferry drain`: asks the scheduler to drain one worker (no new requests;
// its running requests migrate to other workers) and waits until nothing
// runs there any more. A worker pod's preStop hook runs it, so a rolling
// upgrade moves requests off a worker before the worker gets SIGTERM.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <optional>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/strings.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "tools/commands.h"
#include "tools/flags.h"
#include "tools/mtls_flags.h"

namespace ferry {
namespace {

struct DrainFlags {
  std::string scheduler = "127.0.0.1:50050";
  std::string worker;
  std::string timeout = "60s";
  bool quiet = false;
  MtlsFlags mtls;
};

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return code;
}

// The scheduler's record of the live worker registered as `worker` (its
// address or its id).
std::optional<v1::WorkerInfo> FindWorker(v1::Scheduler::Stub& stub, const std::string& worker, grpc::Status* status) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListWorkersResponse list;
  *status = stub.ListWorkers(&ctx, {}, &list);
  if (!status->ok()) return std::nullopt;
  for (const v1::WorkerInfo& w : list.workers()) {
    if (w.alive() && (w.address() == worker || w.worker_id() == worker)) return w;
  }
  return std::nullopt;
}

int RunDrainMain(const DrainFlags& f) {
  if (f.worker.empty()) return Fail("--worker ADDRESS is required (the address the worker advertises)", 2);
  absl::Duration timeout;
  if (!absl::ParseDuration(Sv(f.timeout), &timeout) || timeout < absl::ZeroDuration()) {
    return Fail("--timeout must be a duration like 60s or 500ms, got '" + f.timeout + "'", 2);
  }
  auto credentials = f.mtls.ChannelCredentials();
  if (!credentials.ok()) return Fail(std::string(credentials.status().message()), 2);
  auto stub = v1::Scheduler::NewStub(grpc::CreateChannel(f.scheduler, *credentials));
  grpc::Status status;
  std::optional<v1::WorkerInfo> info = FindWorker(*stub, f.worker, &status);
  if (!status.ok()) return Fail("scheduler " + f.scheduler + ": " + status.error_message());
  if (!info) {
    // Nothing is placed on a worker the scheduler does not know: done.
    if (!f.quiet) std::printf("worker %s is not registered with %s: nothing to drain\n", f.worker.c_str(),
                              f.scheduler.c_str());
    return 0;
  }
  const std::string id = info->worker_id();
  int placed = 0;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::DrainWorkerRequest request;
    request.set_worker_id(id);
    v1::DrainWorkerResponse response;
    status = stub->DrainWorker(&ctx, request, &response);
    if (!status.ok()) return Fail("DrainWorker " + id + ": " + status.error_message());
    placed = response.num_requests();
  }
  if (!f.quiet) {
    std::printf("draining worker %s (%s): %d requests running\n", id.c_str(), info->address().c_str(), placed);
    std::fflush(stdout);
  }
  if (timeout == absl::ZeroDuration()) return 0;
  const absl::Time start = absl::Now();
  const absl::Time end = start + timeout;
  int last_reported = placed;
  while (true) {
    info = FindWorker(*stub, id, &status);
    if (status.ok() && (!info || info->num_requests() == 0)) break;
    if (absl::Now() >= end) {
      return Fail(status.ok() ? "worker " + id + " still runs " + std::to_string(info->num_requests()) +
                                    " requests after " + f.timeout
                              : "scheduler " + f.scheduler + ": " + status.error_message());
    }
    if (status.ok() && info->num_requests() != last_reported && !f.quiet) {
      last_reported = info->num_requests();
      std::printf("worker %s: %d requests left\n", id.c_str(), last_reported);
      std::fflush(stdout);
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (!f.quiet) {
    std::printf("worker %s drained in %s\n", id.c_str(), absl::FormatDuration(absl::Now() - start).c_str());
  }
  return 0;
}

}  // namespace

int RunDrain(int argc, char** argv) {
  DrainFlags f;
  FlagParser flags("drain",
                   "Drains one worker: the scheduler sends it no new requests and migrates its running ones to "
                   "other workers; waits until none is left (a worker pod's preStop hook).");
  flags.AddString("scheduler", &f.scheduler, "HOST:PORT of the ferry scheduler");
  flags.AddString("worker", &f.worker, "the worker's advertised HOST:PORT (or its scheduler id)");
  flags.AddString("timeout", &f.timeout, "how long to wait for its requests to move (0s: do not wait)");
  flags.AddBool("quiet", &f.quiet, "print only errors");
  f.mtls.Register(flags);
  return RunWithFlags(flags, argc, argv, [&] { return RunDrainMain(f); });
}

}  // namespace ferry
