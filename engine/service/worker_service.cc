#include "engine/service/worker_service.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/status.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/grpc_credentials.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/random_hex.h"
#include "engine/service/generate_stream.h"

namespace ferry {
namespace {

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return v1::FINISH_REASON_UNSPECIFIED;
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kAbort: return v1::FINISH_REASON_ABORT;
    case FinishReason::kError: return v1::FINISH_REASON_ERROR;
    case FinishReason::kMigrated: return v1::FINISH_REASON_MIGRATED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

// Answers Kill, then ends the process once gRPC is done with the answer, so
// the caller hears OK before the process goes: like `kill -9` from outside
// (no destructor, no drain, no final heartbeat). The short wait lets the
// answer leave the socket before it closes.
class KillReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnDone() override {
    delete this;
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ::kill(::getpid(), SIGKILL);
    }).detach();
  }
};

}  // namespace

v1::TokenEvent ToTokenEvent(const EngineEvent& ev) {
  v1::TokenEvent out;
  out.set_request_id(ev.request_id);
  out.set_sample_index(ev.sample_index);
  for (int32_t id : ev.token_ids) out.add_token_ids(id);
  out.set_text(ev.text);
  auto add = [](const SampledToken& t, v1::TokenLogprob* lp) {
    lp->set_token_id(t.id);
    lp->set_logprob(t.logprob);
    if (t.rank > 0) lp->set_rank(t.rank);
    for (const auto& [id, logprob] : t.top) {
      lp->add_top_ids(id);
      lp->add_top_logprobs(logprob);
    }
  };
  for (const SampledToken& t : ev.logprobs) add(t, out.add_logprobs());
  for (const SampledToken& t : ev.prompt_logprobs) add(t, out.add_prompt_logprobs());
  out.set_finish_reason(ToProto(ev.finish));
  if (ev.finish == FinishReason::kMigrated) out.set_migrated_to(ev.migrated_to);
  if (ev.finish != FinishReason::kNone) {
    out.mutable_usage()->set_prompt_tokens(ev.prompt_tokens);
    out.mutable_usage()->set_completion_tokens(ev.completion_tokens);
    out.mutable_usage()->set_cached_prompt_tokens(ev.cached_prompt_tokens);
    out.set_stop_reason(ev.stop_reason);
    out.set_stop_token(ev.stop_token);
  }
  out.set_error(ev.error);
  return out;
}

WorkerService::WorkerService(Engine* engine, const WorkerServiceOptions& options)
    : engine_(engine),
      options_(options),
      incarnation_id_(RandomHex(8)),
      lender_(engine),
      held_exports_(options.prefix_export_hold) {
  janitor_ = std::thread([this] { Janitor(); });
}

WorkerService::~WorkerService() {
  stop_.Notify();
  janitor_.join();
  held_exports_.Clear();
  // Migrations run on their own threads and use the engine: wait for them.
  while (migrations_in_flight_.load() > 0) absl::SleepFor(absl::Milliseconds(5));
}

void WorkerService::Janitor() {
  while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(500))) {
    for (const std::string& id : attach_.Expire(options_.attach_timeout)) {
      Logger("worker")->warn("req={} migrated here but nobody attached: aborting", id);
      engine_->Abort(id);
    }
    outbound_.Expire(options_.attach_timeout);
    lender_.ExpireUnattached(options_.attach_timeout);
    // A peer's pool stays mapped (and its memory alive) only while the peer
    // lives and transfers use it.
    peer_pools_.DropStale(absl::Minutes(1));
    if (int n = held_exports_.Expire(); n > 0) {
      Logger("worker")->warn("{} exported prefixes were never released by their pullers; letting them go", n);
    }
  }
}

void WorkerService::AbortRequest(const std::string& request_id) {
  engine_->Abort(request_id);
  attach_.DropUnattached(request_id);
  if (std::optional<std::string> destination = outbound_.Cancel(request_id)) {
    Logger("worker")->info("req={} aborted after its hand-over: aborting it on {}", request_id, *destination);
    SendAbort(*destination, request_id, options_.migration.channel_credentials);
  }
}

void WorkerService::SendAbort(const std::string& address, const std::string& request_id,
                              const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  struct Pending {
    grpc::ClientContext context;
    v1::AbortRequest request;
    v1::AbortResponse response;
    std::unique_ptr<v1::Worker::Stub> stub;
  };
  auto* p = new Pending;
  p->stub =
      v1::Worker::NewStub(grpc::CreateChannel(address, ChannelCredentialsOrInsecure(credentials)));
  p->request.set_request_id(request_id);
  p->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  p->stub->async()->Abort(&p->context, &p->request, &p->response, [p](grpc::Status) { delete p; });
}

grpc::ServerWriteReactor<v1::TokenEvent>* WorkerService::Generate(grpc::CallbackServerContext* context,
                                                                  const v1::GenerateRequest* request) {
  if (request->attach()) {
    auto* stream = new GenerateStream(engine_, request->request_id(), 1,
                                      [this](const std::string& id) { AbortRequest(id); });
    absl::Status s = attach_.Attach(request->request_id(), stream);
    if (!s.ok()) stream->Fail(ToGrpcStatus(s));
    return stream;
  }
  auto input = ToGenerateInput(*request, &engine_->model().tokenizer());
  if (!input.ok()) {
    auto* s = new GenerateStream(engine_, request->request_id(), 0);
    s->Fail(ToGrpcStatus(input.status()));
    return s;
  }
  Logger("worker")->debug("req={} generate: {} prompt tokens", input->request_id, input->prompt_ids.size());
  const int samples = input->resume ? 1 : input->params.n;
  auto* stream = new GenerateStream(engine_, input->request_id, samples,
                                    [this](const std::string& id) { AbortRequest(id); });
  if (request->has_prefix_pull() && !request->prefix_pull().peer_address().empty()) {
    PullThenStart(stream, request->prefix_pull(), std::move(*input));
    return stream;
  }
  if (const int64_t remote_blocks = BlocksToBorrow(*input); remote_blocks > 0) {
    StartBorrowing(std::move(*input), stream, remote_blocks);
    return stream;
  }
  stream->Start(std::move(*input));
  return stream;
}

void WorkerService::PullThenStart(GenerateStream* stream, v1::PrefixPull pull, GenerateInput input) {
  PrefixPullOptions options = options_.prefix_pull;
  if (options.channel_credentials == nullptr) options.channel_credentials = options_.migration.channel_credentials;
  options.pools = &peer_pools_;
  // The stream may end (client gone) while the pull runs: only its handle
  // is used from here on.
  std::shared_ptr<StreamHandle> handle = stream->handle();
  ++migrations_in_flight_;
  std::thread([this, handle, options, pull = std::move(pull), input = std::move(input)]() mutable {
    ++pull_stats_.pulls;
    auto pulled = PullPrefix(*engine_, pull, input.prompt_ids, options);
    if (pulled.ok()) {
      ++pull_stats_.pulls_ok;
      pull_stats_.blocks += pulled->blocks_received;
      pull_stats_.bytes += pulled->bytes_received;
      if (pulled->shared_pool) ++pull_stats_.shared_pool;
      if (pulled->device_pool) ++pull_stats_.device_pool;
      Logger("worker")->debug("req={} pulled {} blocks ({} bytes) from {}; {} blocks of the prompt cached",
                              input.request_id, pulled->blocks_received, pulled->bytes_received,
                              pull.peer_address(), pulled->blocks_cached);
    } else {
      ++pull_stats_.failures;
      Logger("worker")->info("req={} prefix pull from {} failed, computing the prefix instead: {}",
                             input.request_id, pull.peer_address(), pulled.status().ToString());
    }
    GenerateStream::StartOnHandle(engine_, handle, std::move(input));
    --migrations_in_flight_;
  }).detach();
}

grpc::ServerWriteReactor<v1::KvChunk>* WorkerService::ExportPrefix(grpc::CallbackServerContext* context,
                                                                   const v1::ExportPrefixRequest* request) {
  return new ExportPrefixStream(engine_, *request, &pull_stats_, &held_exports_);
}

grpc::ServerUnaryReactor* WorkerService::ReleasePrefixExport(grpc::CallbackServerContext* context,
                                                             const v1::ReleasePrefixExportRequest* request,
                                                             v1::ReleasePrefixExportResponse* response) {
  response->set_held(held_exports_.Release(request->transfer_id()));
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Abort(grpc::CallbackServerContext* context,
                                               const v1::AbortRequest* request,
                                               v1::AbortResponse* response) {
  AbortRequest(request->request_id());
  response->set_found(true);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Stats(grpc::CallbackServerContext* context,
                                               const v1::StatsRequest* request,
                                               v1::StatsResponse* response) {
  EngineStats s = engine_->Stats();
  *response->mutable_load() = Load();
  response->set_prefix_cache_hit_rate(s.prefix_cache_hit_rate);
  response->set_blocks_used(s.blocks_used);
  response->set_blocks_cached(s.blocks_cached);
  response->set_model_id(engine_->model().id());
  response->set_role(options_.role);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Health(grpc::CallbackServerContext* context,
                                                const v1::HealthRequest* request,
                                                v1::HealthResponse* response) {
  response->set_ready(true);
  response->set_incarnation_id(incarnation_id_);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

v1::LoadReport WorkerService::Load() const {
  EngineStats s = engine_->Stats();
  v1::LoadReport load;
  load.set_blocks_free(s.blocks_free);
  load.set_blocks_total(s.blocks_total);
  load.set_running_requests(s.running);
  load.set_waiting_requests(s.waiting);
  load.set_blocks_needed_waiting(s.blocks_needed_waiting);
  load.set_tokens_per_second(s.tokens_per_second);
  load.set_cached_blocks(s.blocks_cached);
  load.set_kv_bytes_per_block(s.kv_bytes_per_block);
  load.set_prefill_tokens_per_second(s.prefill_tokens_per_second);
  return load;
}

grpc::ServerUnaryReactor* WorkerService::ReserveKv(grpc::CallbackServerContext* context,
                                                   const v1::ReserveKvRequest* request,
                                                   v1::ReserveKvResponse* response) {
  const v1::KvLayout& l = request->layout();
  KvTransferHeader layout;
  layout.model_id = l.model_id();
  layout.num_layers = l.num_layers();
  layout.num_kv_heads = l.num_kv_heads();
  layout.head_dim = l.head_dim();
  layout.block_size = l.block_size();
  layout.dtype = l.dtype();
  absl::Status s = engine_->ReserveForMigration(request->request_id(), layout, request->num_tokens(),
                                                options_.migration.reservation_ttl).get();
  response->set_accepted(s.ok());
  response->set_transfer_id(request->request_id());
  if (!s.ok()) response->set_reason(std::string(s.message()));
  // A sender on this host offers its device pool (CUDA IPC): take it if the
  // backend opens it here.
  if (s.ok() && request->has_device_pool() && request->device_pool().host() == SharedPoolHostKey()) {
    absl::Status opened = engine_->OpenPeerDeviceKvPool(FromDeviceKvPool(request->device_pool()));
    response->set_opens_device_pool(opened.ok());
    if (!opened.ok() && !absl::IsUnimplemented(opened)) {
      Logger("worker")->warn("req={} the sender's device KV pool does not open here ({}); its blocks come "
                             "through the stream",
                             request->request_id(), std::string(opened.message()));
    }
  }
  // A sender on this host offers its shared pool: take it if it maps here.
  if (s.ok() && request->has_source_pool() &&
      request->source_pool().bytes_per_block() == engine_->kv_shape().bytes_per_block()) {
    absl::StatusOr<std::shared_ptr<const MappedPool>> mapped =
        peer_pools_.Get(FromSharedKvPool(request->source_pool()));
    response->set_maps_source_pool(mapped.ok());
    if (!mapped.ok() && request->source_pool().host() == SharedPoolHostKey()) {
      Logger("worker")->warn("req={} the sender's KV pool is on this host but does not map here ({}); "
                             "its blocks come through the stream",
                             request->request_id(), std::string(mapped.status().message()));
    }
  }
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Kill(grpc::CallbackServerContext* context,
                                              const v1::KillRequest* request,
                                              v1::KillResponse* response) {
  if (!options_.enable_fault_injection) {
    Logger("worker")->warn("refused a Kill from {}: fault injection is off", context->peer());
    auto* reactor = context->DefaultReactor();
    reactor->Finish(
        grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                     "this worker refuses Kill: fault injection is off (start `ferry worker` with "
                     "--enable-fault-injection to allow it)"));
    return reactor;
  }
  Logger("worker")->warn("Kill from {} (fault injection): ending the process now, without draining",
                         context->peer());
  response->set_incarnation_id(incarnation_id_);
  auto* reactor = new KillReactor;
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerReadReactor<v1::KvChunk>* WorkerService::ReceiveKv(grpc::CallbackServerContext* context,
                                                               v1::ReceiveKvResponse* response) {
  return new ReceiveKvReactor(context, engine_, &attach_, response, &peer_pools_, &transfer_progress_,
                              options_.migration.writes_on_loop);
}

grpc::ServerUnaryReactor* WorkerService::KvTransferProgress(grpc::CallbackServerContext* context,
                                                            const v1::KvTransferProgressRequest* request,
                                                            v1::KvTransferProgressResponse* response) {
  if (std::optional<int64_t> written = transfer_progress_.Get(request->request_id())) {
    response->set_found(true);
    response->set_blocks_written(*written);
  }
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::MigrateOut(grpc::CallbackServerContext* context,
                                                    const v1::MigrateOutRequest* request,
                                                    v1::MigrateOutResponse* response) {
  auto* reactor = context->DefaultReactor();
  // The copy rounds take a while: run them off the RPC threads.
  ++migrations_in_flight_;
  std::thread([this, reactor, request, response] {
    auto result = ferry::MigrateOut(*engine_, request->request_id(), request->destination(),
                                    options_.migration, &outbound_);
    response->set_migrated(result.ok());
    if (result.ok()) {
      response->set_downtime_micros(absl::ToInt64Microseconds(result->downtime));
      response->set_kv_bytes_sent(result->bytes_sent);
      response->set_kv_blocks_sent(result->blocks_sent);
      response->set_rounds(result->rounds);
      response->set_shared_pool(result->shared_pool);
      response->set_device_pool(result->device_pool);
    } else {
      response->set_error(std::string(result.status().message()));
      Logger("worker")->info("req={} migration to {} failed: {}", request->request_id(),
                             request->destination(), result.status().ToString());
    }
    reactor->Finish(grpc::Status::OK);
    --migrations_in_flight_;
  }).detach();
  return reactor;
}

}  // namespace ferry

// ---- Borrowed KV blocks (DistAttention) ----

namespace ferry {

void WorkerService::EnableKvBorrowing(const std::string& scheduler_address, std::function<std::string()> worker_id) {
  borrower_ = std::make_unique<KvBorrower>(scheduler_address, std::move(worker_id),
                                           options_.migration.channel_credentials);
}

int64_t WorkerService::BlocksToBorrow(const GenerateInput& input) const {
  if (borrower_ == nullptr || engine_->lending_kv() == nullptr || input.params.n != 1) return 0;
  const int bs = engine_->options().block_size;
  const int64_t total = static_cast<int64_t>(input.prompt_ids.size()) + input.params.max_tokens;
  if (total > engine_->max_model_len()) return 0;  // the engine refuses it with the reason
  const int64_t need = NumBlocksForTokens(total, bs);
  return std::max<int64_t>(0, need - engine_->num_kv_blocks());
}

void WorkerService::StartBorrowing(GenerateInput input, GenerateStream* stream, int64_t remote_blocks) {
  // The borrow waits on the scheduler and the lenders: not on an RPC thread.
  ++migrations_in_flight_;
  // The stream may end (client gone) meanwhile: only its handle is used.
  std::shared_ptr<StreamHandle> handle = stream->handle();
  std::thread([this, input = std::move(input), handle, remote_blocks]() mutable {
    // The whole pool stays local: the lenders hold only what does not fit.
    const int64_t local_blocks = engine_->num_kv_blocks();
    auto remote = borrower_->Borrow(*engine_, input.request_id, local_blocks, remote_blocks);
    if (!remote.ok()) {
      Logger("worker")->warn("req={} {}", input.request_id, remote.status().ToString());
      GenerateStream::FailOnHandle(handle, ToGrpcStatus(remote.status()));
    } else {
      input.remote_kv = std::move(*remote);
      GenerateStream::StartOnHandle(engine_, handle, std::move(input));
    }
    --migrations_in_flight_;
  }).detach();
}

grpc::ServerUnaryReactor* WorkerService::LendKv(grpc::CallbackServerContext* context, const v1::LendKvRequest* request,
                                                v1::LendKvResponse* response) {
  absl::Status s = lender_.Lend(*request);
  response->set_accepted(s.ok());
  if (!s.ok()) response->set_reason(std::string(s.message()));
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::ReleaseKv(grpc::CallbackServerContext* context,
                                                   const v1::ReleaseKvRequest* request,
                                                   v1::ReleaseKvResponse* response) {
  response->set_found(lender_.Release(request->lease_id()));
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerBidiReactor<v1::BorrowedAttentionRequest, v1::BorrowedAttentionResponse>* WorkerService::AttendBorrowed(
    grpc::CallbackServerContext* context) {
  return lender_.NewStream();
}

std::string WorkerService::RenderDistAttentionMetrics() const {
  const EngineStats e = engine_->Stats();
  const KvLenderCounters& l = lender_.counters();
  std::string out;
  auto metric = [&out](const char* name, const char* type, const char* help, int64_t value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ", value, "\n");
  };
  metric("ferry_kv_blocks_lent", "gauge", "KV blocks of this worker lent to requests of other workers", e.blocks_lent);
  metric("ferry_kv_leases_lent", "gauge", "leases this worker lends now", e.lent_leases);
  metric("ferry_kv_leases_granted_total", "counter", "leases this worker reserved blocks for", l.leases_granted);
  metric("ferry_kv_leases_refused_total", "counter", "leases this worker refused", l.leases_refused);
  metric("ferry_kv_leases_released_total", "counter", "leases whose blocks were freed", l.leases_released);
  metric("ferry_dist_attention_lender_layer_calls_total", "counter",
         "layers of borrowed attention computed here for other workers", l.layer_calls);
  metric("ferry_dist_attention_lender_layer_micros_total", "counter",
         "microseconds spent on them (K/V writes and attention)", l.layer_micros);
  metric("ferry_requests_running_with_borrowed_kv", "gauge", "running requests with positions on other workers",
         e.running_with_borrowed_kv);
  metric("ferry_borrowed_kv_failures_total", "counter", "requests failed because a KV lender failed",
         e.borrowed_kv_failures);
  if (const DistAttentionCounters* b = borrow_counters()) {
    metric("ferry_kv_borrows_total", "counter", "requests that borrowed KV blocks", b->borrows);
    metric("ferry_kv_borrow_failures_total", "counter", "borrow attempts that failed", b->borrow_failures);
    metric("ferry_kv_blocks_borrowed", "gauge", "KV blocks borrowed from other workers now", b->blocks_borrowed);
    metric("ferry_dist_attention_owner_layer_calls_total", "counter", "lender round trips (one per layer and lender)",
           b->layer_calls);
    metric("ferry_dist_attention_owner_wait_micros_total", "counter",
           "microseconds waited for lenders after the local attention", b->layer_wait_micros);
    metric("ferry_dist_attention_bytes_sent_total", "counter", "bytes sent to lenders", b->bytes_sent);
    metric("ferry_dist_attention_bytes_received_total", "counter", "bytes received from lenders", b->bytes_received);
  }
  return out;
}

}  // namespace ferry
