#include "engine/service/dist_attention_client.h"

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/grpc_credentials.h"
#include "common/logging.h"

namespace ferry {
namespace {

void AppendFloats(std::string* out, const float* data, size_t count) {
  out->append(reinterpret_cast<const char*>(data), count * sizeof(float));
}

bool ReadFloats(const std::string& bytes, size_t count, std::vector<float>& out) {
  if (bytes.size() != count * sizeof(float)) return false;
  out.resize(count);
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BorrowedKv>> BorrowedKv::Connect(
    const ModelConfig& config, int block_size, int32_t local_tokens, std::vector<KvLoanTarget> loans,
    std::shared_ptr<grpc::ChannelCredentials> credentials, std::shared_ptr<DistAttentionCounters> counters,
    std::function<void()> on_close) {
  std::unique_ptr<BorrowedKv> kv(new BorrowedKv(config, local_tokens));
  kv->counters_ = std::move(counters);
  kv->on_close_ = std::move(on_close);
  int32_t next = local_tokens;
  for (KvLoanTarget& loan : loans) {
    Link link;
    link.first_position = next;
    next += static_cast<int32_t>(loan.num_blocks * block_size);
    link.end_position = next;
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    // A lender that stops answering (hung, stopped, or cut off) must not hold
    // the owner's step loop: an HTTP/2 ping unanswered for 2 s breaks the
    // stream, and the request fails with the lender's name. Workers accept
    // these pings (AllowMigrationKeepalive).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    link.stub = v1::Worker::NewStub(
        grpc::CreateCustomChannel(loan.address, ChannelCredentialsOrInsecure(credentials), args));
    link.context = std::make_unique<grpc::ClientContext>();
    link.context->set_wait_for_ready(false);
    link.stream = link.stub->AttendBorrowed(link.context.get());
    if (link.stream == nullptr) {
      return absl::UnavailableError(absl::StrCat("cannot reach KV lender ", loan.address));
    }
    link.loan = std::move(loan);
    kv->links_.push_back(std::move(link));
  }
  kv->capacity_tokens_ = next;
  return kv;
}

BorrowedKv::~BorrowedKv() {
  // Cancelling ends each stream at once; the lender frees its blocks when
  // its side of the stream is done.
  for (Link& link : links_) {
    link.context->TryCancel();
    if (!link.finished) link.stream->Finish();
  }
  if (counters_) {
    int64_t blocks = 0;
    for (const Link& link : links_) blocks += link.loan.num_blocks;
    counters_->blocks_borrowed -= blocks;
  }
  if (on_close_) on_close_();
}

void BorrowedKv::Break(Link& link, const std::string& what) {
  link.pending = false;
  if (!status_.ok()) return;
  status_ = absl::UnavailableError(
      absl::StrCat("KV lender ", link.loan.address, " (lease ", link.loan.lease_id, "): ", what));
}

void BorrowedKv::Send(int layer, std::span<const int32_t> positions, const float* queries, const float* keys,
                      const float* values) {
  num_tokens_ = static_cast<int64_t>(positions.size());
  if (!status_.ok()) return;
  const int nh = config_.num_heads, hd = config_.head_dim, kv_dim = config_.kv_dim();
  for (Link& link : links_) {
    // A lender whose first position is after every query has nothing to
    // add yet (early prefill chunks).
    if (positions.empty() || positions.back() < link.first_position) continue;
    v1::BorrowedAttentionRequest req;
    req.set_lease_id(link.loan.lease_id);
    req.set_layer(layer);
    req.set_first_position(link.first_position);
    for (int32_t p : positions) req.add_positions(p);
    AppendFloats(req.mutable_queries(), queries, positions.size() * nh * hd);
    for (size_t t = 0; t < positions.size(); ++t) {
      if (positions[t] < link.first_position || positions[t] >= link.end_position) continue;
      req.add_kv_positions(positions[t]);
      AppendFloats(req.mutable_keys(), keys + t * kv_dim, kv_dim);
      AppendFloats(req.mutable_values(), values + t * kv_dim, kv_dim);
    }
    counters_->bytes_sent += static_cast<int64_t>(req.ByteSizeLong());
    if (!link.stream->Write(req)) {
      Break(link, "the stream broke");
      return;
    }
    link.pending = true;
  }
}

void BorrowedKv::Receive(AttentionPartials& out) {
  const int nh = config_.num_heads, hd = config_.head_dim;
  const int64_t entries = num_tokens_ * nh;
  out.Reset(entries, hd);
  const auto start = std::chrono::steady_clock::now();
  for (Link& link : links_) {
    if (!link.pending) continue;
    link.pending = false;
    if (!status_.ok()) continue;
    if (!link.stream->Read(&response_)) {
      grpc::Status s = link.stream->Finish();
      link.finished = true;
      Break(link, absl::StrCat("the stream ended: ", s.error_message().empty() ? "connection lost" : s.error_message()));
      continue;
    }
    counters_->bytes_received += static_cast<int64_t>(response_.ByteSizeLong());
    ++counters_->layer_calls;
    if (!response_.error().empty()) {
      Break(link, response_.error());
      continue;
    }
    if (!ReadFloats(response_.max(), entries, scratch_.max) || !ReadFloats(response_.sum(), entries, scratch_.sum) ||
        !ReadFloats(response_.values(), entries * hd, scratch_.values)) {
      Break(link, "malformed partial result");
      continue;
    }
    scratch_.head_dim = hd;
    MergePartials(out, scratch_);
  }
  counters_->layer_wait_micros +=
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
  if (!status_.ok()) out.Reset(entries, hd);
}

KvBorrower::KvBorrower(const std::string& scheduler_address, std::function<std::string()> worker_id,
                       std::shared_ptr<grpc::ChannelCredentials> credentials)
    : stub_(v1::Scheduler::NewStub(
          grpc::CreateChannel(scheduler_address, ChannelCredentialsOrInsecure(credentials)))),
      worker_id_(std::move(worker_id)),
      credentials_(std::move(credentials)) {}

absl::StatusOr<std::shared_ptr<RemoteKv>> KvBorrower::Borrow(const Engine& engine, const std::string& request_id,
                                                             int64_t local_blocks, int64_t remote_blocks) {
  const std::string worker_id = worker_id_();
  if (worker_id.empty()) {
    ++counters_->borrow_failures;
    return absl::UnavailableError("cannot borrow KV blocks: not registered with the scheduler");
  }
  v1::BorrowKvRequest req;
  req.set_worker_id(worker_id);
  req.set_request_id(request_id);
  req.set_num_blocks(remote_blocks);
  const ModelConfig& c = engine.model().config();
  v1::KvLayout* layout = req.mutable_layout();
  layout->set_model_id(engine.model().id());
  layout->set_num_layers(c.num_layers);
  layout->set_num_kv_heads(c.num_kv_heads);
  layout->set_head_dim(c.head_dim);
  layout->set_block_size(engine.options().block_size);
  layout->set_dtype("f32");
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::BorrowKvResponse resp;
  grpc::Status s = stub_->BorrowKv(&ctx, req, &resp);
  if (!s.ok()) {
    ++counters_->borrow_failures;
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("cannot borrow ", remote_blocks, " KV blocks: ", s.error_message()));
  }
  std::vector<KvLoanTarget> loans;
  int64_t total = 0;
  for (const v1::KvLoan& l : resp.loans()) {
    loans.push_back({l.lease_id(), l.lender_address(), l.num_blocks()});
    total += l.num_blocks();
  }
  auto kv = BorrowedKv::Connect(c, engine.options().block_size,
                                static_cast<int32_t>(local_blocks * engine.options().block_size), std::move(loans),
                                credentials_, counters_, [this, request_id] { Return(request_id); });
  if (!kv.ok()) {
    ++counters_->borrow_failures;
    Return(request_id);
    return kv.status();
  }
  ++counters_->borrows;
  counters_->blocks_borrowed += total;
  Logger("worker")->info("req={} borrowed {} KV blocks from {} lender(s); {} blocks stay local", request_id, total,
                         resp.loans_size(), local_blocks);
  return std::shared_ptr<RemoteKv>(std::move(*kv));
}

void KvBorrower::Return(const std::string& request_id) {
  struct Pending {
    grpc::ClientContext context;
    v1::ReturnKvRequest request;
    v1::ReturnKvResponse response;
    std::shared_ptr<v1::Scheduler::Stub> stub;
  };
  auto* p = new Pending;
  p->stub = stub_;
  p->request.set_request_id(request_id);
  p->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  p->stub->async()->ReturnKv(&p->context, &p->request, &p->response, [p](grpc::Status) { delete p; });
}

}  // namespace ferry
