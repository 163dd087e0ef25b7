#include "benchmarks/process_cluster.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "httplib.h"

namespace ferry::bench {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return std::chrono::system_clock::now() + absl::ToChronoMicroseconds(timeout);
}

template <typename Stub>
GenerateResult RunGenerate(Stub& stub, const v1::GenerateRequest& request, absl::Duration timeout,
                           const TokensCallback& on_tokens) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(timeout));
  GenerateResult out;
  const Clock::time_point start = Clock::now();
  auto reader = stub.Generate(&ctx, request);
  v1::TokenEvent ev;
  while (reader->Read(&ev)) {
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    for (int32_t t : ev.token_ids()) {
      out.tokens.push_back(t);
      out.token_ms.push_back(ms);
    }
    if (!ev.error().empty()) out.error = ev.error();
    if (on_tokens && ev.token_ids_size() > 0) on_tokens(static_cast<int>(out.tokens.size()));
  }
  out.status = reader->Finish();
  return out;
}

std::string HttpGet(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  auto res = client.Get(path);
  return res && res->status == 200 ? res->body : "";
}

}  // namespace

std::string GenerateResult::Why() const {
  if (!status.ok()) return status.error_message().empty() ? "gRPC error" : status.error_message();
  return error;
}

double PrometheusValue(const std::string& text, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, name) || line.size() <= name.size() || line[name.size()] != ' ') continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(name.size() + 1), &v)) return v;
  }
  return -1;
}

absl::StatusOr<std::unique_ptr<ProcessCluster>> ProcessCluster::Start(const ProcessClusterOptions& options) {
  if (options.num_workers < 1 || (!options.with_scheduler && options.num_workers != 1)) {
    return absl::InvalidArgumentError("a cluster needs a scheduler for more than one worker");
  }
  std::unique_ptr<ProcessCluster> cluster(new ProcessCluster());
  if (options.with_scheduler) {
    if (absl::Status s = cluster->StartScheduler(options); !s.ok()) return s;
  }
  if (absl::Status s = cluster->StartWorkers(options); !s.ok()) return s;
  if (!options.with_scheduler) return cluster;
  // Registered, and each has reported its blocks at least once.
  const absl::Time end = absl::Now() + options.start_timeout;
  while (absl::Now() < end && cluster->ReadyWorkers() < options.num_workers) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (cluster->ReadyWorkers() < options.num_workers) {
    return absl::UnavailableError("the workers did not register with the scheduler in time");
  }
  return cluster;
}

absl::Status ProcessCluster::StartScheduler(const ProcessClusterOptions& options) {
  const std::string port_file = absl::StrCat(options.temp_dir, "/scheduler.port");
  std::remove(port_file.c_str());
  scheduler_metrics_port_ = FreeLoopbackPort();
  // Heartbeats every 100 ms (a fifth of the timeout, at most 100 ms); a
  // long timeout so that a busy 2-core machine does not lose workers.
  scheduler_ = std::make_unique<ChildProcess>(std::vector<std::string>{
      options.ferry, "scheduler", "--listen", "127.0.0.1:0", "--port-file", port_file, "--worker-timeout", "3s",
      "--migration", "off", "--metrics-port", std::to_string(scheduler_metrics_port_), "--log-level", "error",
      "--kv-max-lenders", std::to_string(options.max_lenders)});
  const int port = WaitForPortFile(port_file, *scheduler_, options.start_timeout);
  if (port == 0) return absl::UnavailableError(absl::StrCat(options.ferry, " scheduler did not start"));
  scheduler_address_ = absl::StrCat("127.0.0.1:", port);
  scheduler_stub_ =
      v1::Scheduler::NewStub(grpc::CreateChannel(scheduler_address_, grpc::InsecureChannelCredentials()));
  return absl::OkStatus();
}

absl::Status ProcessCluster::StartWorkers(const ProcessClusterOptions& options) {
  std::vector<std::string> port_files;
  for (int i = 0; i < options.num_workers; ++i) {
    Worker w;
    const std::string port_file = absl::StrCat(options.temp_dir, "/worker", i, ".port");
    std::remove(port_file.c_str());
    port_files.push_back(port_file);
    w.metrics_port = FreeLoopbackPort();
    std::vector<std::string> args = {options.ferry, "worker", "--listen", "127.0.0.1:0", "--port-file", port_file,
                                     "--metrics-port", std::to_string(w.metrics_port), "--block-size",
                                     std::to_string(options.block_size), "--threads", std::to_string(options.threads),
                                     "--no-prefix-caching", "--log-level", "error"};
    if (!options.model.empty()) args.insert(args.end(), {"--model", options.model});
    if (options.max_num_batched_tokens > 0) {
      args.insert(args.end(), {"--max-num-batched-tokens", std::to_string(options.max_num_batched_tokens)});
    }
    if (options.kv_cache_bytes > 0) {
      args.insert(args.end(), {"--kv-cache-memory", std::to_string(options.kv_cache_bytes)});
    }
    if (scheduler_ != nullptr) args.insert(args.end(), {"--scheduler", scheduler_address_});
    if (scheduler_ != nullptr && options.kv_borrowing) args.push_back("--kv-borrowing");
    w.process = std::make_unique<ChildProcess>(std::move(args));
    workers_.push_back(std::move(w));
  }
  for (int i = 0; i < options.num_workers; ++i) {
    Worker& w = workers_[static_cast<size_t>(i)];
    const int port = WaitForPortFile(port_files[static_cast<size_t>(i)], *w.process, options.start_timeout);
    if (port == 0) return absl::UnavailableError(absl::StrCat(options.ferry, " worker ", i, " did not start"));
    w.address = absl::StrCat("127.0.0.1:", port);
    w.stub = v1::Worker::NewStub(grpc::CreateChannel(w.address, grpc::InsecureChannelCredentials()));
  }
  return absl::OkStatus();
}

int ProcessCluster::ReadyWorkers() {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(absl::Seconds(5)));
  v1::ListWorkersResponse list;
  if (!scheduler_stub_->ListWorkers(&ctx, {}, &list).ok()) return 0;
  int n = 0;
  for (const auto& w : list.workers()) n += w.alive() && w.load().blocks_total() > 0 ? 1 : 0;
  return n;
}

GenerateResult ProcessCluster::Generate(const v1::GenerateRequest& request, absl::Duration timeout,
                                        const TokensCallback& on_tokens) {
  if (scheduler_stub_ == nullptr) return GenerateOn(0, request, timeout, on_tokens);
  return RunGenerate(*scheduler_stub_, request, timeout, on_tokens);
}

GenerateResult ProcessCluster::GenerateOn(int i, const v1::GenerateRequest& request, absl::Duration timeout,
                                          const TokensCallback& on_tokens) {
  return RunGenerate(*workers_.at(static_cast<size_t>(i)).stub, request, timeout, on_tokens);
}

absl::Status ProcessCluster::WaitIdle(absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    bool idle = true;
    if (scheduler_stub_ != nullptr) {
      idle = PrometheusValue(SchedulerMetrics(), "ferry_scheduler_kv_leases_active") == 0;
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(absl::Seconds(5)));
      v1::ListWorkersResponse list;
      idle = idle && scheduler_stub_->ListWorkers(&ctx, {}, &list).ok() && list.workers_size() == num_workers();
      for (const auto& w : list.workers()) {
        idle = idle && w.alive() && w.num_requests() == 0 && w.load().blocks_free() == w.load().blocks_total();
      }
    }
    for (int i = 0; i < num_workers() && idle; ++i) {
      auto stats = Stats(i);
      idle = stats.ok() && stats->blocks_used() == 0;
    }
    if (idle) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError("the cluster did not become idle (blocks still used or lent)");
}

absl::StatusOr<v1::StatsResponse> ProcessCluster::Stats(int i) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(absl::Seconds(5)));
  v1::StatsResponse stats;
  grpc::Status s = workers_.at(static_cast<size_t>(i)).stub->Stats(&ctx, {}, &stats);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return stats;
}

std::string ProcessCluster::WorkerMetrics(int i) {
  return HttpGet(workers_.at(static_cast<size_t>(i)).metrics_port, "/metrics");
}

std::string ProcessCluster::SchedulerMetrics() {
  return scheduler_ == nullptr ? "" : HttpGet(scheduler_metrics_port_, "/metrics");
}

double ProcessCluster::HealthPingMs(int i, int count) {
  v1::Worker::Stub& stub = *workers_.at(static_cast<size_t>(i)).stub;
  std::vector<double> ms;
  for (int k = 0; k < count; ++k) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(absl::Seconds(5)));
    v1::HealthResponse response;
    const Clock::time_point t0 = Clock::now();
    if (!stub.Health(&ctx, {}, &response).ok()) continue;
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  if (ms.empty()) return -1;
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace ferry::bench
