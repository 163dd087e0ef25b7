#include "scheduler/service/scheduler.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/grpc_credentials.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/strings.h"
#include "scheduler/service/peer_messages.h"
#include "scheduler/service/prompt_hashes.h"
#include "scheduler/service/scheduler_internal.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerOptions& options) {
  auto dispatch = MakeDispatchPolicy(options.dispatch_policy);
  if (!dispatch.ok()) return dispatch.status();
  if (options.worker_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("worker timeout must be positive");
  }
  Logger("scheduler");  // created before any other thread may ask for it
  std::unique_ptr<Scheduler> s(new Scheduler(options, std::move(*dispatch)));
  s->loop_.Start();
  return s;
}

Scheduler::Scheduler(const SchedulerOptions& options, std::unique_ptr<DispatchPolicy> dispatch)
    : options_(options),
      registry_(WorkerRegistryOptions{.worker_timeout = options.worker_timeout}),
      placement_(std::move(dispatch), options.disaggregation),
      migration_policy_([&] {
        MigrationOptions m = options.migration_options;
        m.balance = options.migration;
        return m;
      }()),
      migrations_(MigrationTrackerOptions{.timeout = options.migration_timeout}),
      kv_ledger_(options.kv_ledger),
      loop_(options.policy_interval, [this] { Tick(); }) {
  poster_ = std::make_shared<LoopPoster>(&loop_);
}

Scheduler::~Scheduler() {
  poster_->Close();
  loop_.Stop();
  // The loop is gone: its state is ours to touch from here.
  for (auto& [id, c] : calls_) c->call->Cancel();
  for (auto& [id, r] : requests_) r->client->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "scheduler shutting down"));
}

std::shared_ptr<v1::Worker::Stub> Scheduler::StubFor(const std::string& address) {
  auto it = stubs_.find(address);
  if (it != stubs_.end()) return it->second;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(
      address, ChannelCredentialsOrInsecure(options_.channel_credentials), args);
  auto stub = std::shared_ptr<v1::Worker::Stub>(v1::Worker::NewStub(channel));
  stubs_.emplace(address, stub);
  return stub;
}

int Scheduler::BlockSizeOf(const std::string& worker_id) const {
  const WorkerRecord* w = registry_.Find(worker_id);
  if (w == nullptr || w->registration.block_size <= 0) return options_.default_block_size;
  return w->registration.block_size;
}

void Scheduler::SendWorkerAbort(const std::string& address, const std::string& request_id) {
  struct Pending {
    grpc::ClientContext context;
    v1::AbortRequest request;
    v1::AbortResponse response;
    std::shared_ptr<v1::Worker::Stub> stub;
  };
  auto* p = new Pending;
  p->stub = StubFor(address);
  p->request.set_request_id(request_id);
  p->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  p->stub->async()->Abort(&p->context, &p->request, &p->response, [p](grpc::Status) { delete p; });
}

// ---- registry ----

void Scheduler::RegisterWorker(const v1::RegisterWorkerRequest& request, Reply<v1::RegisterWorkerResponse> reply) {
  poster_->Post([this, request, reply = std::move(reply)] {
    const WorkerRegistration reg = RegistrationFromProto(request);
    auto result = registry_.Register(reg, options_.clock->Now());
    if (!result.ok()) return reply(result.status());
    if (!result->replaced.empty()) OnWorkersLost(result->replaced, "restarted with a new incarnation");
    metrics_.Add("ferry_scheduler_worker_registrations_total");
    Logger("scheduler")->info("worker={} registered at {} (incarnation {})", result->worker_id, reg.address,
                              reg.incarnation_id);
    v1::RegisterWorkerResponse response;
    response.set_worker_id(result->worker_id);
    response.set_heartbeat_interval_micros(absl::ToInt64Microseconds(options_.heartbeat_interval));
    reply(std::move(response));
  });
}

void Scheduler::Heartbeat(const v1::HeartbeatRequest& request, Reply<v1::HeartbeatResponse> reply) {
  poster_->Post([this, request, reply = std::move(reply)] {
    v1::HeartbeatResponse response;
    auto w = registry_.Heartbeat(request.worker_id(), request.incarnation_id(), LoadFromProto(request.load()),
                                 options_.clock->Now());
    response.set_known(w.ok());
    if (w.ok()) {
      response.set_drain((*w)->draining);
      ApplyBlockHashes(**w, request.load(), prefix_index_);
    }
    reply(std::move(response));
  });
}

void Scheduler::ListWorkers(Reply<v1::ListWorkersResponse> reply) {
  poster_->Post([this, reply = std::move(reply)] {
    std::map<std::string, std::vector<std::string>> per_worker;
    for (const auto& [id, r] : requests_) {
      for (const Sample& s : r->samples) {
        if (!s.finished && s.call_id != 0) per_worker[s.worker_id].push_back(id);
      }
    }
    v1::ListWorkersResponse response;
    for (const WorkerRecord* w : registry_.All()) {
      v1::WorkerInfo* info = response.add_workers();
      info->set_worker_id(w->worker_id);
      info->set_address(w->registration.address);
      info->set_role(RoleToProto(w->registration.role));
      *info->mutable_load() = LoadToProto(w->load);
      info->set_alive(w->alive);
      info->set_draining(w->draining);
      const std::vector<std::string>& ids = per_worker[w->worker_id];
      info->set_num_requests(static_cast<int>(ids.size()));
      for (const std::string& id : ids) info->add_request_ids(id);
      info->set_model_id(w->registration.model_id);
      info->set_incarnation_id(w->registration.incarnation_id);
    }
    reply(std::move(response));
  });
}

void Scheduler::DrainWorker(const v1::DrainWorkerRequest& request, Reply<v1::DrainWorkerResponse> reply) {
  poster_->Post([this, request, reply = std::move(reply)] {
    std::string worker_id = request.worker_id();
    // Admins may name a worker by the address it registered.
    if (registry_.Find(worker_id) == nullptr) {
      if (const WorkerRecord* w = registry_.FindByAddress(worker_id)) worker_id = w->worker_id;
    }
    absl::Status s = registry_.SetDraining(worker_id, true);
    if (!s.ok()) return reply(s);
    Logger("scheduler")->info("worker={} draining", worker_id);
    v1::DrainWorkerResponse response;
    response.set_ok(true);
    int placed = 0;
    for (const auto& [id, r] : requests_) {
      for (const Sample& smp : r->samples) {
        if (!smp.finished && smp.call_id != 0 && smp.worker_id == worker_id) ++placed;
      }
    }
    response.set_num_requests(placed);
    reply(std::move(response));
    RunMigrationPolicy();
  });
}

void Scheduler::KillWorker(const v1::KillWorkerRequest& request,
                           Reply<v1::KillWorkerResponse> reply) {
  poster_->Post([this, request, reply = std::move(reply)] {
    const WorkerRecord* w = registry_.Find(request.worker_id());
    if (w == nullptr) w = registry_.FindByAddress(request.worker_id());
    if (w == nullptr) {
      return reply(
          absl::NotFoundError(absl::StrCat("no worker '", request.worker_id(), "' is registered")));
    }
    if (!w->alive) {
      return reply(
          absl::FailedPreconditionError(absl::StrCat("worker ", w->worker_id, " is not alive")));
    }
    struct Pending {
      grpc::ClientContext context;
      v1::KillRequest request;
      v1::KillResponse response;
      std::shared_ptr<v1::Worker::Stub> stub;
    };
    auto* p = new Pending;
    p->stub = StubFor(w->registration.address);
    p->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::KillWorkerResponse response;
    response.set_worker_id(w->worker_id);
    response.set_address(w->registration.address);
    Logger("scheduler")->warn("worker={} asked to kill itself (fault injection)", w->worker_id);
    std::weak_ptr<LoopPoster> poster = poster_;
    p->stub->async()->Kill(&p->context, &p->request, &p->response,
                           [p, poster, response, reply](grpc::Status status) {
                             if (auto post = poster.lock()) {
                               post->Post([status, response, reply] {
                                 if (!status.ok()) return reply(FromGrpcStatus(status));
                                 reply(response);
                               });
                             }
                             delete p;
                           });
  });
}

// ---- the periodic tick ----

void Scheduler::Tick() {
  const absl::Time now = options_.clock->Now();
  std::vector<std::string> silent = registry_.ExpireSilent(now);
  if (!silent.empty()) OnWorkersLost(silent, "heartbeat timeout");
  for (const MigrationRecord& m : migrations_.Expire(now)) {
    auto it = requests_.find(m.request_id);
    if (it != requests_.end()) it->second->samples[0].migrating = false;
    Logger("scheduler")->warn("req={} migration {} -> {} timed out", m.request_id, m.source_worker_id,
                              m.destination_worker_id);
  }
  PlaceUnplaced();
  RunMigrationPolicy();
}

void Scheduler::OnWorkersLost(const std::vector<std::string>& worker_ids, const std::string& why) {
  const absl::Time now = options_.clock->Now();
  for (const std::string& id : worker_ids) {
    Logger("scheduler")->warn("worker={} lost: {}", id, why);
    metrics_.Add("ferry_scheduler_workers_lost_total");
    registry_.MarkDead(id, now);
    prefix_index_.DropWorker(id);
    ReleaseKvLeases(kv_ledger_.DropWorker(id), "worker lost");
    for (const MigrationRecord& m : migrations_.OnWorkerLost(id, now)) {
      auto it = requests_.find(m.request_id);
      if (it != requests_.end()) it->second->samples[0].migrating = false;
    }
    std::vector<uint64_t> lost_calls;
    for (const auto& [call_id, c] : calls_) {
      if (c->worker_id == id) lost_calls.push_back(call_id);
    }
    for (uint64_t call_id : lost_calls) {
      auto c = std::move(calls_[call_id]);
      calls_.erase(call_id);
      c->call->Cancel();
      for (int idx : c->samples) {
        // Recovery can fail the request and drop it: look it up each time.
        auto rit = requests_.find(c->request_id);
        if (rit == requests_.end()) break;
        Sample& s = rit->second->samples[idx];
        if (s.call_id == call_id && !s.finished) RecoverSample(*rit->second, s, id, why);
      }
    }
  }
}

ClusterView Scheduler::BuildView() const {
  ClusterView view;
  std::map<std::string, int> assigned;
  for (const auto& [id, r] : requests_) {
    for (const Sample& s : r->samples) {
      if (s.finished || s.call_id == 0) continue;
      ++assigned[s.worker_id];
      view.requests.push_back(ViewOf(*r, s));
    }
  }
  AddWorkerViews(registry_, assigned, view);
  return view;
}

std::string Scheduler::RenderMetrics() {
  // The loop owns the state: take the snapshot there.
  auto done = std::make_shared<absl::Notification>();
  auto text = std::make_shared<std::string>();
  bool posted = poster_->Post([this, done, text] {
    const MigrationCounts& c = migrations_.counts();
    *text += absl::StrCat("ferry_scheduler_migrations_started_total ", c.started, "\n");
    *text += absl::StrCat("ferry_scheduler_migrations_committed_total ", c.committed, "\n");
    for (int i = 0; i < kNumMigrationAbortReasons; ++i) {
      *text += absl::StrCat("ferry_scheduler_migrations_aborted_total{reason=\"",
                            Sv(MigrationAbortReasonName(static_cast<MigrationAbortReason>(i))), "\"} ",
                            c.aborted[i], "\n");
    }
    int alive = 0;
    for (const WorkerRecord* w : registry_.All()) alive += w->alive ? 1 : 0;
    *text += absl::StrCat("ferry_scheduler_workers_alive ", alive, "\n");
    *text += absl::StrCat("ferry_scheduler_requests_in_flight ", requests_.size(), "\n");
    *text += RenderKvLendingMetrics();
    done->Notify();
  });
  if (posted && done->WaitForNotificationWithTimeout(absl::Seconds(5))) {
    return metrics_.RenderPrometheus() + *text;
  }
  return metrics_.RenderPrometheus();
}

}  // namespace ferry
