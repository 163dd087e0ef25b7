// Requests: placement, the relay of worker events to the client, and
// recovery of samples whose worker failed.
#include <random>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/strings.h"
#include "scheduler/service/prompt_hashes.h"
#include "scheduler/service/scheduler.h"
#include "scheduler/service/scheduler_internal.h"

namespace ferry {
namespace {

// Failures that are the request's own: another worker would fail it too.
bool IsRequestError(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::UNIMPLEMENTED:
      return true;
    default:
      return false;
  }
}

uint64_t RandomSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32 | rd()) & ((uint64_t{1} << 63) - 1);
}

}  // namespace

void Scheduler::Generate(v1::GenerateRequest request, std::shared_ptr<ClientStream> client) {
  bool posted = poster_->Post([this, request = std::move(request), client]() mutable {
    StartRequest(std::move(request), std::move(client));
  });
  if (!posted) client->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "scheduler shutting down"));
}

void Scheduler::StartRequest(v1::GenerateRequest request, std::shared_ptr<ClientStream> client) {
  auto fail = [&](grpc::StatusCode code, std::string message) { client->Finish(grpc::Status(code, message)); };
  if (request.attach() || request.has_resume()) {
    return fail(grpc::StatusCode::INVALID_ARGUMENT, "attach and resume are for workers, not clients");
  }
  if (request.prompt_ids().empty() && request.prompt().empty()) {
    return fail(grpc::StatusCode::INVALID_ARGUMENT, "the prompt is empty");
  }
  if (request.params().n() < 0) return fail(grpc::StatusCode::INVALID_ARGUMENT, "n must not be negative");
  if (request.request_id().empty()) request.set_request_id(absl::StrCat("sched-", next_request_number_++));
  if (requests_.contains(request.request_id())) {
    return fail(grpc::StatusCode::ALREADY_EXISTS, "request id " + request.request_id() + " is in use");
  }
  // A fixed seed makes recovery replay the same stream.
  if (!request.params().has_seed()) request.mutable_params()->set_seed(RandomSeed());

  auto r = std::make_unique<Request>();
  r->id = request.request_id();
  r->arrived = options_.clock->Now();
  const int n = std::max(1, request.params().n());
  r->samples.resize(n);
  for (int i = 0; i < n; ++i) {
    r->samples[i].index = i;
    r->samples[i].unplaced_since = r->arrived;
  }
  r->request = std::move(request);
  r->client = std::move(client);
  metrics_.Add("ferry_scheduler_requests_total");
  Request& ref = *r;
  requests_.emplace(ref.id, std::move(r));
  TryPlaceFresh(ref);
}

DispatchRequest Scheduler::MakeDispatchRequest(const Request& r) const {
  DispatchRequest d;
  d.request_id = r.id;
  d.num_prompt_tokens = r.request.prompt_ids_size() > 0 ? r.request.prompt_ids_size()
                                                        : static_cast<int64_t>(r.request.prompt().size() / 4 + 1);
  d.num_prompt_blocks = BlocksForTokens(d.num_prompt_tokens, options_.default_block_size);
  d.num_samples = r.num_samples();
  d.priority = r.request.priority();
  if (placement_.dispatch().name() == "prefix-aware" && r.request.prompt_ids_size() > 0) {
    for (const WorkerRecord* w : registry_.All()) {
      if (!w->alive) continue;
      int64_t match = prefix_index_.MatchBlocks(w->worker_id, PromptHashesFor(r, w->worker_id));
      if (match > 0) d.cached_prefix_blocks[w->worker_id] = match;
    }
  }
  return d;
}

std::vector<uint64_t> Scheduler::PromptHashesFor(const Request& r, const std::string& worker_id) const {
  const WorkerRecord* w = registry_.Find(worker_id);
  uint64_t root = w != nullptr && w->registration.block_hash_root != 0 ? w->registration.block_hash_root
                                                                        : kSchedulerBlockHashRoot;
  return PromptBlockHashes(std::span(r.request.prompt_ids().data(), r.request.prompt_ids_size()),
                           BlockSizeOf(worker_id), root);
}

bool Scheduler::TryPlaceFresh(Request& r) {
  DispatchRequest d = MakeDispatchRequest(r);
  auto placement = placement_.Place(BuildView(), d, options_.clock->Now());
  if (!placement.ok()) return false;
  const WorkerRecord* w = registry_.Find(placement->worker_id);
  std::vector<int> all;
  for (Sample& s : r.samples) {
    all.push_back(s.index);
    s.hand_off_pending = placement->hand_off_after_prefill;
  }
  r.dispatched = true;
  registry_.AddPending(w->worker_id, d.num_prompt_blocks);
  // Before the estimate below: it would count the prompt as cached there.
  v1::GenerateRequest upstream = r.request;
  MaybeAddPrefixPull(r, *w, upstream);
  if (placement_.dispatch().name() == "prefix-aware") prefix_index_.Insert(w->worker_id, PromptHashesFor(r, w->worker_id));
  metrics_.Add(absl::StrCat("ferry_scheduler_dispatch_total{policy=\"", Sv(placement_.dispatch().name()),
                            "\",reason=\"", placement->reason, "\"}"));
  Logger("scheduler")->debug("req={} worker={} dispatched ({})", r.id, w->worker_id, placement->reason);
  StartCall(r, all, w->worker_id, w->registration.address, std::move(upstream));
  return true;
}

void Scheduler::MaybeAddPrefixPull(const Request& r, const WorkerRecord& w, v1::GenerateRequest& upstream) {
  if (!options_.prefix_pull.enabled || r.request.prompt_ids_size() < 2 || w.registration.block_hash_root == 0) {
    return;
  }
  const std::vector<uint64_t> hashes = PromptHashesFor(r, w.worker_id);
  PrefixPullInput in;
  in.block_size = BlockSizeOf(w.worker_id);
  in.usable_blocks = (r.request.prompt_ids_size() - 1) / in.block_size;
  in.local_blocks = prefix_index_.MatchBlocks(w.worker_id, hashes);
  in.kv_bytes_per_block = w.load.kv_bytes_per_block;
  in.prefill_tokens_per_second = w.load.prefill_tokens_per_second;
  for (const WorkerRecord* p : registry_.All()) {
    if (!p->alive || p->suspect || p->worker_id == w.worker_id) continue;
    // Only a peer with the same chain root and block size holds blocks this
    // worker can use (same model and layout).
    if (p->registration.block_hash_root != w.registration.block_hash_root ||
        BlockSizeOf(p->worker_id) != in.block_size) {
      continue;
    }
    const int64_t match = prefix_index_.MatchBlocks(p->worker_id, hashes);
    if (match > 0) in.peers.push_back({p->worker_id, match});
  }
  if (in.peers.empty()) return;
  std::optional<PrefixPullDecision> d = DecidePrefixPull(options_.prefix_pull, in);
  if (!d) {
    metrics_.Add("ferry_scheduler_prefix_pull_decisions_total{decision=\"recompute\"}");
    return;
  }
  const WorkerRecord* peer = registry_.Find(d->peer_id);
  if (peer == nullptr) return;
  v1::PrefixPull* pull = upstream.mutable_prefix_pull();
  pull->set_peer_address(peer->registration.address);
  // Hashes from block 0: the peer checks the whole chain, sends [first_block, end).
  pull->set_first_block(d->first_block);
  for (int64_t i = 0; i < d->first_block + d->num_blocks; ++i) pull->add_block_hashes(hashes[static_cast<size_t>(i)]);
  metrics_.Add("ferry_scheduler_prefix_pull_decisions_total{decision=\"pull\"}");
  metrics_.Add("ferry_scheduler_prefix_pull_blocks_total", d->num_blocks);
  Logger("scheduler")->debug(
      "req={} worker={} pulls blocks [{}, {}) from worker={} (est. {:.1f} ms vs {:.1f} ms recompute)", r.id,
      w.worker_id, d->first_block, d->first_block + d->num_blocks, d->peer_id, d->pull_seconds * 1e3,
      d->recompute_seconds * 1e3);
}

bool Scheduler::TryPlaceResume(Request& r, Sample& s) {
  ClusterView view = BuildView();
  ClusterView others = view.FilterWorkers([&](const WorkerView& w) { return w.worker_id != s.last_failed_worker; });
  DispatchRequest d = MakeDispatchRequest(r);
  d.num_samples = 1;
  d.num_prompt_tokens += static_cast<int64_t>(s.progress.output_ids().size());
  auto placement = placement_.Place(others, d, options_.clock->Now());
  if (!placement.ok()) placement = placement_.Place(view, d, options_.clock->Now());
  if (!placement.ok()) return false;
  const WorkerRecord* w = registry_.Find(placement->worker_id);

  v1::GenerateRequest up;
  up.set_request_id(r.num_samples() == 1 ? r.id : absl::StrCat(r.id, "/", s.index));
  *up.mutable_prompt_ids() = r.request.prompt_ids();
  up.set_prompt(r.request.prompt());
  *up.mutable_params() = r.request.params();
  up.mutable_params()->set_n(1);  // the sample index picks the generator
  up.set_priority(r.request.priority());
  up.set_stream(true);
  v1::RequestState* state = up.mutable_resume();
  state->set_request_id(up.request_id());
  *state->mutable_prompt_ids() = r.request.prompt_ids();
  for (int32_t id : s.progress.output_ids()) state->add_output_ids(id);
  *state->mutable_params() = up.params();
  state->set_priority(r.request.priority());
  state->set_arrival_unix_micros(absl::ToUnixMicros(r.arrived));
  state->set_sample_index(s.index);
  state->set_emitted_text_bytes(s.progress.text_bytes());

  s.hand_off_pending = placement->hand_off_after_prefill && s.progress.output_ids().empty();
  registry_.AddPending(w->worker_id, d.num_prompt_blocks);
  metrics_.Add("ferry_scheduler_recoveries_total");
  Logger("scheduler")->info("req={} sample={} resumed on worker={} after {} tokens", r.id, s.index,
                            w->worker_id, s.progress.output_ids().size());
  StartCall(r, {s.index}, w->worker_id, w->registration.address, std::move(up));
  return true;
}

uint64_t Scheduler::StartCall(Request& r, const std::vector<int>& samples, const std::string& worker_id,
                              const std::string& address, v1::GenerateRequest upstream) {
  auto c = std::make_unique<Call>();
  c->id = next_call_id_++;
  c->request_id = r.id;
  c->upstream_id = upstream.request_id();
  c->samples = samples;
  c->worker_id = worker_id;
  c->address = address;
  for (int idx : samples) {
    Sample& s = r.samples[idx];
    s.call_id = c->id;
    s.worker_id = worker_id;
    c->next_pos[idx] = static_cast<int64_t>(s.progress.output_ids().size());
  }
  const uint64_t id = c->id;
  std::weak_ptr<LoopPoster> poster = poster_;
  auto post = [poster](EventLoop::Task t) {
    if (auto p = poster.lock()) p->Post(std::move(t));
  };
  c->call = UpstreamCall::Start(
      StubFor(address), std::move(upstream),
      [this, post, id](v1::TokenEvent ev) { post([this, id, ev = std::move(ev)]() mutable { OnUpstreamEvent(id, std::move(ev)); }); },
      [this, post, id](grpc::Status st) { post([this, id, st] { OnUpstreamDone(id, st); }); });
  calls_.emplace(id, std::move(c));
  return id;
}

void Scheduler::OnUpstreamEvent(uint64_t call_id, v1::TokenEvent event) {
  auto cit = calls_.find(call_id);
  if (cit == calls_.end()) return;  // a stream we let go of
  Call& c = *cit->second;
  auto rit = requests_.find(c.request_id);
  if (rit == requests_.end()) return;
  Request& r = *rit->second;
  const int idx = c.samples.size() == 1 ? c.samples[0] : event.sample_index();
  if (idx < 0 || idx >= r.num_samples() || !c.next_pos.contains(idx)) {
    Logger("scheduler")->warn("req={} worker={} sent an event for unknown sample {}", r.id, c.worker_id, idx);
    return;
  }
  Sample& s = r.samples[idx];
  if (s.call_id != call_id || s.finished) return;
  const int64_t pos = event.seq() > 0 ? static_cast<int64_t>(event.seq()) : c.next_pos[idx];
  c.next_pos[idx] = pos + event.token_ids_size();
  event.set_request_id(r.id);
  event.set_sample_index(idx);
  const int64_t dup_before = s.progress.duplicates_dropped();
  std::optional<v1::TokenEvent> out = s.progress.Accept(event, pos);
  metrics_.Add("ferry_scheduler_duplicate_tokens_dropped_total", s.progress.duplicates_dropped() - dup_before);
  if (out) {
    metrics_.Add("ferry_scheduler_tokens_relayed_total", out->token_ids_size());
    r.client->Send(std::move(*out));
  }
  const v1::FinishReason finish = event.finish_reason();
  if (finish == v1::FINISH_REASON_MIGRATED) return OnMigrated(r, s, event.migrated_to());
  if (finish != v1::FINISH_REASON_UNSPECIFIED) {
    s.finished = true;
    s.call_id = 0;
    if (migrations_.Find(r.id) != nullptr) {
      (void)migrations_.Abort(r.id, MigrationAbortReason::kRequestFinished, options_.clock->Now());
      s.migrating = false;
    }
    bool call_done = true;
    for (int i : c.samples) call_done = call_done && r.samples[i].call_id != call_id;
    if (call_done) DetachCall(call_id, /*cancel=*/false);
    return MaybeFinishRequest(r.id);
  }
  if (s.hand_off_pending && !s.progress.output_ids().empty()) MaybeHandOff(r, s);
}

void Scheduler::OnUpstreamDone(uint64_t call_id, grpc::Status status) {
  auto cit = calls_.find(call_id);
  if (cit == calls_.end()) return;
  std::unique_ptr<Call> c = std::move(cit->second);
  calls_.erase(cit);
  auto rit = requests_.find(c->request_id);
  if (rit == requests_.end()) return;
  Request& r = *rit->second;
  for (int idx : c->samples) {
    Sample& s = r.samples[idx];
    if (s.call_id != call_id || s.finished) continue;
    s.call_id = 0;
    if (IsRequestError(status.error_code())) {
      bool nothing_sent = true;
      for (const Sample& o : r.samples) nothing_sent = nothing_sent && o.progress.output_ids().empty() && !o.finished;
      if (nothing_sent) return FailRequest(r, FromGrpcStatus(status));
      FailSample(r, s, status.error_message());
      if (!requests_.contains(c->request_id)) return;
      continue;
    }
    // The worker may be gone: give it no new work until it heartbeats again.
    if (status.error_code() != grpc::StatusCode::NOT_FOUND && status.error_code() != grpc::StatusCode::ALREADY_EXISTS &&
        status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED && !status.ok()) {
      registry_.MarkSuspect(c->worker_id);
    }
    RecoverSample(r, s, c->worker_id,
                  status.ok() ? "the stream ended before the sample finished" : status.error_message());
    if (!requests_.contains(c->request_id)) return;
  }
}

void Scheduler::RecoverSample(Request& r, Sample& s, const std::string& failed_worker, const std::string& why) {
  s.call_id = 0;
  if (s.migrating) {
    (void)migrations_.Abort(r.id, MigrationAbortReason::kSourceLost, options_.clock->Now());
    s.migrating = false;
  }
  if (++s.recoveries > options_.max_recoveries) {
    return FailSample(r, s, absl::StrCat("gave up after ", options_.max_recoveries, " recoveries: ", why));
  }
  Logger("scheduler")->warn("req={} sample={} worker={} failed: {}", r.id, s.index, failed_worker, why);
  s.last_failed_worker = failed_worker;
  s.unplaced_since = options_.clock->Now();
  TryPlaceResume(r, s);  // otherwise the tick retries
}

void Scheduler::PlaceUnplaced() {
  const absl::Time now = options_.clock->Now();
  std::vector<std::string> ids;
  for (const auto& [id, r] : requests_) ids.push_back(id);
  for (const std::string& id : ids) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    Request& r = *it->second;
    if (!r.dispatched) {
      if (TryPlaceFresh(r)) continue;
      if (now - r.arrived > options_.placement_timeout) {
        FailRequest(r, absl::UnavailableError("no worker could take the request"));
      }
      continue;
    }
    for (Sample& s : r.samples) {
      if (s.finished || s.call_id != 0) continue;
      if (TryPlaceResume(r, s)) continue;
      if (now - s.unplaced_since > options_.placement_timeout) {
        FailSample(r, s, "no worker could take over the sample");
        if (!requests_.contains(id)) break;
      }
    }
  }
}

void Scheduler::FailSample(Request& r, Sample& s, const std::string& error) {
  Logger("scheduler")->warn("req={} sample={} failed: {}", r.id, s.index, error);
  metrics_.Add("ferry_scheduler_samples_failed_total");
  if (s.call_id != 0) DetachCall(s.call_id, /*cancel=*/true);
  s.finished = true;
  s.call_id = 0;
  v1::TokenEvent ev;
  ev.set_request_id(r.id);
  ev.set_sample_index(s.index);
  ev.set_seq(s.progress.output_ids().size());
  ev.set_finish_reason(v1::FINISH_REASON_ERROR);
  ev.set_error(error);
  ev.set_stop_token(-1);
  r.client->Send(std::move(ev));
  MaybeFinishRequest(r.id);
}

void Scheduler::FailRequest(Request& r, const absl::Status& status) {
  Logger("scheduler")->warn("req={} failed: {}", r.id, std::string(status.message()));
  metrics_.Add("ferry_scheduler_requests_failed_total");
  for (Sample& s : r.samples) {
    if (s.call_id != 0) DetachCall(s.call_id, /*cancel=*/true);
  }
  if (migrations_.Find(r.id) != nullptr) {
    (void)migrations_.Abort(r.id, MigrationAbortReason::kRequestFinished, options_.clock->Now());
  }
  ReleaseKvOf(r.id);
  r.client->Finish(ToGrpcStatus(status));
  requests_.erase(r.id);
}

void Scheduler::MaybeFinishRequest(const std::string& request_id) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  for (const Sample& s : it->second->samples) {
    if (!s.finished) return;
  }
  metrics_.Add("ferry_scheduler_requests_finished_total");
  ReleaseKvOf(request_id);
  it->second->client->Finish(grpc::Status::OK);
  requests_.erase(it);
}

void Scheduler::DetachCall(uint64_t call_id, bool cancel) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  if (cancel) it->second->call->Cancel();
  calls_.erase(it);
}

void Scheduler::CancelGenerate(const std::string& request_id) {
  poster_->Post([this, request_id] {
    auto it = requests_.find(request_id);
    if (it == requests_.end()) return;
    Request& r = *it->second;
    if (const MigrationRecord* m = migrations_.Find(r.id)) {
      if (const WorkerRecord* dst = registry_.Find(m->destination_worker_id)) {
        SendWorkerAbort(dst->registration.address, r.id);
      }
      (void)migrations_.Abort(r.id, MigrationAbortReason::kRequestFinished, options_.clock->Now());
    }
    for (Sample& s : r.samples) {
      // Cancelling the stream is not enough: a cancel can overtake an attach
      // call before the worker sees it, leaving the migrated request there.
      if (auto cit = calls_.find(s.call_id); cit != calls_.end()) {
        SendWorkerAbort(cit->second->address, cit->second->upstream_id);
      }
      if (s.call_id != 0) DetachCall(s.call_id, /*cancel=*/true);
    }
    metrics_.Add("ferry_scheduler_requests_cancelled_total");
    requests_.erase(it);
  });
}

void Scheduler::Abort(const v1::AbortRequest& request, Reply<v1::AbortResponse> reply) {
  poster_->Post([this, request, reply = std::move(reply)] {
    v1::AbortResponse response;
    auto it = requests_.find(request.request_id());
    response.set_found(it != requests_.end());
    if (it != requests_.end()) {
      Request& r = *it->second;
      for (Sample& s : r.samples) {
        if (s.finished) continue;
        auto cit = calls_.find(s.call_id);
        if (cit != calls_.end()) SendWorkerAbort(cit->second->address, cit->second->upstream_id);
        if (s.call_id != 0) DetachCall(s.call_id, /*cancel=*/true);
        s.finished = true;
        s.call_id = 0;
        v1::TokenEvent ev;
        ev.set_request_id(r.id);
        ev.set_sample_index(s.index);
        ev.set_seq(s.progress.output_ids().size());
        ev.set_finish_reason(v1::FINISH_REASON_ABORT);
        ev.set_stop_token(-1);
        r.client->Send(std::move(ev));
      }
      if (const MigrationRecord* m = migrations_.Find(r.id)) {
        if (const WorkerRecord* dst = registry_.Find(m->destination_worker_id)) {
          SendWorkerAbort(dst->registration.address, r.id);
        }
        (void)migrations_.Abort(r.id, MigrationAbortReason::kRequestFinished, options_.clock->Now());
      }
      metrics_.Add("ferry_scheduler_requests_aborted_total");
      MaybeFinishRequest(r.id);
    }
    reply(std::move(response));
  });
}

}  // namespace ferry
