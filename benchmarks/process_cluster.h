// A Ferry cluster of separate programs on loopback for the benchmarks:
// `ferry scheduler` and N `ferry worker`s (or one worker on its own), each on
// an ephemeral port with a metrics port, killed when the cluster is
// destroyed. Requests go through the scheduler or straight to one worker;
// each token's arrival time is kept.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmarks/bench_process.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry::bench {

struct ProcessClusterOptions {
  std::string ferry;     // path of the `ferry` program
  std::string model;     // --model (empty: the built-in model)
  std::string temp_dir;  // for the port files
  int num_workers = 1;
  // Without a scheduler the cluster is one worker on its own.
  bool with_scheduler = true;
  // Bytes of each worker's KV cache (0: the worker's default).
  int64_t kv_cache_bytes = 0;
  bool kv_borrowing = true;
  int block_size = 16;
  int max_num_batched_tokens = 0;  // 0: the worker's default
  int threads = 1;                 // per worker
  int max_lenders = 4;             // the scheduler's --kv-max-lenders
  absl::Duration start_timeout = absl::Seconds(60);
};

struct GenerateResult {
  grpc::Status status;
  std::string error;  // from an error event
  std::vector<int32_t> tokens;
  std::vector<double> token_ms;  // arrival of each token, from the call's start

  bool ok() const { return status.ok() && error.empty(); }
  // The status or error text ("" when ok).
  std::string Why() const;
};

// Called with the number of tokens received so far, on the reading thread.
using TokensCallback = std::function<void(int)>;

class ProcessCluster {
 public:
  // Starts the processes and waits until every worker is registered with
  // the scheduler and has reported its KV cache. Unavailable when a process
  // does not start in time (the others are killed).
  static absl::StatusOr<std::unique_ptr<ProcessCluster>> Start(const ProcessClusterOptions& options);
  ~ProcessCluster() = default;

  // Through the scheduler (the only worker when there is none).
  GenerateResult Generate(const v1::GenerateRequest& request, absl::Duration timeout,
                          const TokensCallback& on_tokens = nullptr);
  // Straight to worker `i` (it still borrows through the scheduler).
  GenerateResult GenerateOn(int i, const v1::GenerateRequest& request, absl::Duration timeout,
                            const TokensCallback& on_tokens = nullptr);

  // Waits until nothing is lent or borrowed and every worker has reported
  // all of its blocks free (so the next request sees the whole cluster).
  // DeadlineExceeded otherwise.
  absl::Status WaitIdle(absl::Duration timeout);

  absl::StatusOr<v1::StatsResponse> Stats(int i);
  // The Prometheus text of worker `i` / the scheduler ("" when unreachable).
  std::string WorkerMetrics(int i);
  std::string SchedulerMetrics();
  // Median round trip of `count` Worker.Health calls to worker `i`, in ms.
  double HealthPingMs(int i, int count);

  int num_workers() const { return static_cast<int>(workers_.size()); }

 private:
  struct Worker {
    std::unique_ptr<ChildProcess> process;
    std::string address;
    int metrics_port = 0;
    std::unique_ptr<v1::Worker::Stub> stub;
  };
  ProcessCluster() = default;
  absl::Status StartScheduler(const ProcessClusterOptions& options);
  absl::Status StartWorkers(const ProcessClusterOptions& options);
  int ReadyWorkers();

  std::unique_ptr<ChildProcess> scheduler_;
  int scheduler_metrics_port_ = 0;
  std::string scheduler_address_;
  std::unique_ptr<v1::Scheduler::Stub> scheduler_stub_;
  std::vector<Worker> workers_;
};

// The value of an unlabelled sample in Prometheus text, or -1 when absent.
double PrometheusValue(const std::string& text, const std::string& name);

}  // namespace ferry::bench
