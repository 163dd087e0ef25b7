// The owner's side of DistAttention: borrowing blocks through the scheduler
// (Scheduler.BorrowKv) and one Worker.AttendBorrowed stream per lease, used
// synchronously by the step loop (write one message per lender per layer,
// then read the answers; the lenders work in parallel with the local part).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/dist_attention.h"
#include "engine/engine.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry {

// Counters for the worker's metrics; shared by every borrowed request.
struct DistAttentionCounters {
  std::atomic<int64_t> borrows{0};            // requests that borrowed
  std::atomic<int64_t> borrow_failures{0};    // BorrowKv or connecting failed
  std::atomic<int64_t> blocks_borrowed{0};    // held now
  std::atomic<int64_t> layer_calls{0};        // lender round trips
  std::atomic<int64_t> layer_wait_micros{0};  // waiting for lenders after the local part
  std::atomic<int64_t> bytes_sent{0};
  std::atomic<int64_t> bytes_received{0};
};

struct KvLoanTarget {
  std::string lease_id;
  std::string address;  // the lender
  int64_t num_blocks = 0;
};

// A request's borrowed positions: [local_tokens, capacity) split over the
// loans in order.
class BorrowedKv final : public RemoteKv {
 public:
  // Opens the streams. Unavailable when a lender cannot be reached.
  static absl::StatusOr<std::unique_ptr<BorrowedKv>> Connect(
      const ModelConfig& config, int block_size, int32_t local_tokens, std::vector<KvLoanTarget> loans,
      std::shared_ptr<grpc::ChannelCredentials> credentials, std::shared_ptr<DistAttentionCounters> counters,
      std::function<void()> on_close);
  // Cancels the streams (each lender then frees its blocks) and runs
  // on_close. Does not block on the network.
  ~BorrowedKv() override;

  int32_t local_tokens() const override { return local_tokens_; }
  int32_t capacity_tokens() const override { return capacity_tokens_; }
  void Send(int layer, std::span<const int32_t> positions, const float* queries, const float* keys,
            const float* values) override;
  void Receive(AttentionPartials& out) override;
  absl::Status status() const override { return status_; }

 private:
  struct Link {
    KvLoanTarget loan;
    int32_t first_position = 0;
    int32_t end_position = 0;
    std::unique_ptr<v1::Worker::Stub> stub;
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReaderWriter<v1::BorrowedAttentionRequest, v1::BorrowedAttentionResponse>> stream;
    bool pending = false;   // a message was sent and awaits its answer
    bool finished = false;  // Finish() was called
  };
  BorrowedKv(const ModelConfig& config, int32_t local_tokens) : config_(config), local_tokens_(local_tokens) {}
  void Break(Link& link, const std::string& what);

  const ModelConfig& config_;
  int32_t local_tokens_;
  int32_t capacity_tokens_ = 0;
  std::vector<Link> links_;
  int64_t num_tokens_ = 0;  // of the last Send
  absl::Status status_;
  std::shared_ptr<DistAttentionCounters> counters_;
  std::function<void()> on_close_;
  v1::BorrowedAttentionResponse response_;
  AttentionPartials scratch_;
};

// Borrows KV blocks for this worker's requests through the scheduler.
class KvBorrower {
 public:
  // `worker_id` gives the id the scheduler knows this worker by (empty while
  // not registered).
  KvBorrower(const std::string& scheduler_address, std::function<std::string()> worker_id,
             std::shared_ptr<grpc::ChannelCredentials> credentials);

  // Borrows `remote_blocks` blocks for `request_id` and connects to the
  // lenders: the request keeps `local_blocks` blocks here. Unavailable while
  // not registered or when a lender cannot be reached; the scheduler's
  // error otherwise (ResourceExhausted: the cluster has too few blocks).
  absl::StatusOr<std::shared_ptr<RemoteKv>> Borrow(const Engine& engine, const std::string& request_id,
                                                   int64_t local_blocks, int64_t remote_blocks);
  // Tells the scheduler the request's leases are done (fire and forget).
  void Return(const std::string& request_id);

  const std::shared_ptr<DistAttentionCounters>& counters() const { return counters_; }

 private:
  std::shared_ptr<v1::Scheduler::Stub> stub_;
  std::function<std::string()> worker_id_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::shared_ptr<DistAttentionCounters> counters_ = std::make_shared<DistAttentionCounters>();
};

}  // namespace ferry
