#include "engine/service/dist_attention_lender.h"

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "engine/dist_attention.h"

namespace ferry {
namespace {

std::vector<float> Floats(const std::string& bytes) {
  std::vector<float> out(bytes.size() / sizeof(float));
  // An empty field (a layer with no new tokens' keys) leaves out.data() null,
  // which memcpy must not get even for 0 bytes.
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

}  // namespace

// One AttendBorrowed stream: read a layer, answer it, read the next. The
// stream's end (the owner finished, cancelled or died) releases the lease.
class KvLender::Stream final
    : public grpc::ServerBidiReactor<v1::BorrowedAttentionRequest, v1::BorrowedAttentionResponse> {
 public:
  explicit Stream(KvLender* lender) : lender_(lender) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    if (lease_ == nullptr) {
      lease_ = lender_->Find(request_.lease_id());
      if (lease_ == nullptr) {
        Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("unknown lease '", request_.lease_id(), "'")));
        return;
      }
      absl::MutexLock lock(&lease_->mu);
      lease_->attached = true;
    } else if (request_.lease_id() != lease_->lease_id) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "one stream serves one lease"));
      return;
    }
    response_.Clear();
    absl::Status s = lender_->Attend(*lease_, request_, response_);
    if (!s.ok()) {
      response_.Clear();
      response_.set_error(std::string(s.message()));
      failed_ = true;
    }
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok || failed_) {
      Finish(grpc::Status::OK);
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override {
    if (lease_ != nullptr) lender_->Release(lease_->lease_id);
    delete this;
  }

 private:
  KvLender* lender_;
  std::shared_ptr<Lease> lease_;
  v1::BorrowedAttentionRequest request_;
  v1::BorrowedAttentionResponse response_;
  bool failed_ = false;
};

KvLender::~KvLender() {
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, lease] : leases_) ids.push_back(id);
  }
  for (const std::string& id : ids) Release(id);
}

absl::Status KvLender::Lend(const v1::LendKvRequest& r) {
  const ModelConfig& c = engine_->model().config();
  const v1::KvLayout& l = r.layout();
  if (l.num_layers() != c.num_layers || l.num_kv_heads() != c.num_kv_heads || l.head_dim() != c.head_dim ||
      l.block_size() != engine_->options().block_size || l.model_id() != engine_->model().id()) {
    ++counters_.leases_refused;
    return absl::InvalidArgumentError("the owner's KV layout does not match this worker's");
  }
  if (r.lease_id().empty()) return absl::InvalidArgumentError("a lease needs an id");
  {
    absl::MutexLock lock(&mu_);
    if (leases_.contains(r.lease_id())) return absl::AlreadyExistsError(absl::StrCat("lease ", r.lease_id(), " exists"));
  }
  auto blocks = engine_->LendBlocks(r.lease_id(), r.num_blocks()).get();
  if (!blocks.ok()) {
    ++counters_.leases_refused;
    return blocks.status();
  }
  auto lease = std::make_shared<Lease>();
  lease->lease_id = r.lease_id();
  lease->request_id = r.request_id();
  lease->blocks = std::move(*blocks);
  lease->created = absl::Now();
  absl::MutexLock lock(&mu_);
  leases_[r.lease_id()] = std::move(lease);
  ++counters_.leases_granted;
  Logger("worker")->info("req={} lease={} lent {} KV blocks to {}", r.request_id(), r.lease_id(), r.num_blocks(),
                         r.owner_address());
  return absl::OkStatus();
}

std::shared_ptr<KvLender::Lease> KvLender::Find(const std::string& lease_id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  return it == leases_.end() ? nullptr : it->second;
}

bool KvLender::Release(const std::string& lease_id) {
  std::shared_ptr<Lease> lease;
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(lease_id);
    if (it == leases_.end()) return false;
    lease = std::move(it->second);
    leases_.erase(it);
  }
  {
    // Waits for a layer in progress; none starts after this.
    absl::MutexLock lock(&lease->mu);
    lease->released = true;
  }
  engine_->ReturnLentBlocks(lease_id);
  ++counters_.leases_released;
  return true;
}

void KvLender::ExpireUnattached(absl::Duration ttl) {
  std::vector<std::string> expired;
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, lease] : leases_) {
      absl::MutexLock lease_lock(&lease->mu);
      if (!lease->attached && now - lease->created > ttl) expired.push_back(id);
    }
  }
  for (const std::string& id : expired) {
    Logger("worker")->warn("lease={} was never used: releasing its blocks", id);
    Release(id);
  }
}

absl::Status KvLender::Attend(Lease& lease, const v1::BorrowedAttentionRequest& r,
                              v1::BorrowedAttentionResponse& response) {
  const auto start = std::chrono::steady_clock::now();
  const ModelConfig& c = engine_->model().config();
  if (r.queries().size() % sizeof(float) != 0 || r.keys().size() % sizeof(float) != 0 ||
      r.values().size() % sizeof(float) != 0) {
    return absl::InvalidArgumentError("tensors must be float32");
  }
  const std::vector<float> queries = Floats(r.queries()), keys = Floats(r.keys()), values = Floats(r.values());
  LentAttentionInput in;
  in.layer = r.layer();
  in.first_position = r.first_position();
  in.positions = std::span<const int32_t>(r.positions().data(), r.positions_size());
  in.queries = queries;
  in.kv_positions = std::span<const int32_t>(r.kv_positions().data(), r.kv_positions_size());
  in.keys = keys;
  in.values = values;
  AttentionPartials partials;
  {
    absl::MutexLock lock(&lease.mu);
    if (lease.released) return absl::FailedPreconditionError("the lease was released");
    KvCache* kv = engine_->lending_kv();
    if (kv == nullptr) return absl::UnimplementedError("this backend does not lend KV blocks");
    absl::Status s = AttendLentBlocks(*kv, lease.blocks, c, in, partials);
    if (!s.ok()) return s;
  }
  response.mutable_max()->assign(reinterpret_cast<const char*>(partials.max.data()),
                                 partials.max.size() * sizeof(float));
  response.mutable_sum()->assign(reinterpret_cast<const char*>(partials.sum.data()),
                                 partials.sum.size() * sizeof(float));
  response.mutable_values()->assign(reinterpret_cast<const char*>(partials.values.data()),
                                    partials.values.size() * sizeof(float));
  ++counters_.layer_calls;
  counters_.layer_micros +=
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
  return absl::OkStatus();
}

grpc::ServerBidiReactor<v1::BorrowedAttentionRequest, v1::BorrowedAttentionResponse>* KvLender::NewStream() {
  return new Stream(this);
}

}  // namespace ferry
