// The lender's side of DistAttention: leases of blocks reserved in this
// worker's pool for requests that run elsewhere (Worker.LendKv, ReleaseKv)
// and the Worker.AttendBorrowed stream that writes the owner's keys and
// values into them and returns partial attention results.
//
// Threading: the blocks of a lease are reserved through the step loop and
// from then on the step loop never reads or writes them; only the gRPC
// callback serving the lease's stream does, under the lease's mutex.
// Releasing takes that mutex before handing the blocks back to the step loop,
// so no read or write can follow the return. (The CPU backend's KV lives in
// host memory; a device backend does not lend.)
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry {

struct KvLenderCounters {
  std::atomic<int64_t> leases_granted{0};
  std::atomic<int64_t> leases_refused{0};
  std::atomic<int64_t> leases_released{0};
  std::atomic<int64_t> layer_calls{0};
  std::atomic<int64_t> layer_micros{0};  // spent writing K/V and attending
};

class KvLender {
 public:
  // `engine` must outlive the lender and every stream it serves.
  explicit KvLender(Engine* engine) : engine_(engine) {}
  ~KvLender();

  // Reserves the lease's blocks (blocks until the step loop did).
  // InvalidArgument for a layout other than this worker's; the engine's
  // errors otherwise (ResourceExhausted, Unimplemented on a device backend).
  absl::Status Lend(const v1::LendKvRequest& request);
  // Frees a lease's blocks; false for an unknown lease.
  bool Release(const std::string& lease_id);
  // Releases leases whose owner never opened a stream within `ttl`.
  void ExpireUnattached(absl::Duration ttl);

  grpc::ServerBidiReactor<v1::BorrowedAttentionRequest, v1::BorrowedAttentionResponse>* NewStream();

  const KvLenderCounters& counters() const { return counters_; }

 private:
  class Stream;
  struct Lease {
    std::string lease_id;
    std::string request_id;
    std::vector<int32_t> blocks;
    absl::Time created;
    absl::Mutex mu;
    bool released ABSL_GUARDED_BY(mu) = false;
    bool attached ABSL_GUARDED_BY(mu) = false;
  };
  std::shared_ptr<Lease> Find(const std::string& lease_id);
  // One layer of one step. InvalidArgument for a malformed message;
  // FailedPrecondition once released.
  absl::Status Attend(Lease& lease, const v1::BorrowedAttentionRequest& request,
                      v1::BorrowedAttentionResponse& response);

  Engine* engine_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Lease>> leases_ ABSL_GUARDED_BY(mu_);
  KvLenderCounters counters_;
};

}  // namespace ferry
