// FakeWorker: an in-process ferry.v1.Worker gRPC server on loopback for
// scheduler tests. It generates deterministic tokens (a function of seed,
// sample index and position, so any worker continues any stream the same
// way), supports resume, attach and MigrateOut (the sample's state goes to
// the destination in one ReceiveKv chunk, no KV), and can be told to die.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry::testing {

struct FakeWorkerOptions {
  absl::Duration step = absl::Milliseconds(5);  // one token per sample per step
  int64_t blocks_total = 1000;
  int block_size = 16;
  bool refuse_migrations = false;  // as a destination: ReceiveKv says no
  v1::WorkerRole role = v1::WORKER_ROLE_MIXED;
};

class FakeWorker {
 public:
  // Serves on 127.0.0.1 at a free port.
  static std::unique_ptr<FakeWorker> Start(const FakeWorkerOptions& options = {});
  ~FakeWorker();

  const std::string& address() const { return address_; }
  const std::string& incarnation_id() const { return incarnation_id_; }
  const FakeWorkerOptions& options() const { return options_; }

  // Stops at once, like a killed process: streams break, calls fail.
  void Die();
  void set_refuse_migrations(bool refuse);

  v1::LoadReport Load() const;
  int num_active() const;
  int64_t generate_calls() const;
  int64_t resume_calls() const;
  int64_t attach_calls() const;
  int64_t migrations_out() const;

  // The token a sample produces at `pos`.
  static int32_t TokenAt(uint64_t seed, int sample_index, int64_t pos);
  static std::string TextOf(int32_t token);

  class Service;

 private:
  FakeWorker() = default;
  FakeWorkerOptions options_;
  std::string address_;
  std::string incarnation_id_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  bool dead_ = false;
};

}  // namespace ferry::testing
