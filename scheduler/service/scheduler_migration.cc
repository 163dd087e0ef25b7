// Live migration and the prefill-to-decode hand-off, scheduler side: ask the
// source to move a sample (MigrateOut), then attach to the destination when
// the source's stream ends with MIGRATED.
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/strings.h"
#include "scheduler/service/scheduler.h"
#include "scheduler/service/scheduler_internal.h"

namespace ferry {

RequestView Scheduler::ViewOf(const Request& r, const Sample& s) const {
  RequestView v;
  v.request_id = r.id;
  v.worker_id = s.worker_id;
  v.priority = r.request.priority();
  const int64_t prompt = r.request.prompt_ids_size() > 0
                             ? r.request.prompt_ids_size()
                             : static_cast<int64_t>(r.request.prompt().size() / 4 + 1);
  v.num_tokens = prompt + static_cast<int64_t>(s.progress.output_ids().size());
  v.num_blocks = BlocksForTokens(v.num_tokens, BlockSizeOf(s.worker_id));
  v.migratable = r.num_samples() == 1 && !s.finished && s.call_id != 0 && !s.hand_off_pending &&
                 !s.progress.output_ids().empty();
  v.migrating = s.migrating;
  v.last_migrated = s.last_migrated;
  return v;
}

absl::Status Scheduler::StartMigration(Request& r, Sample& s, const std::string& destination_id,
                                       const std::string& trigger, Reply<v1::MigrateResponse> reply) {
  if (r.num_samples() != 1) return absl::FailedPreconditionError("only n=1 requests migrate");
  if (s.finished) return absl::FailedPreconditionError("the request has finished");
  auto cit = calls_.find(s.call_id);
  if (cit == calls_.end()) return absl::FailedPreconditionError("the request is not running on a worker");
  const WorkerRecord* dst = registry_.Find(destination_id);
  if (dst == nullptr || !dst->alive) {
    return absl::NotFoundError(absl::StrCat("no live worker ", destination_id));
  }
  if (auto st = migrations_.Start(r.id, s.worker_id, destination_id, trigger, options_.clock->Now()); !st.ok()) {
    return st;
  }
  s.migrating = true;
  Logger("scheduler")->info("req={} migrating worker={} -> worker={} ({})", r.id, s.worker_id, destination_id,
                            trigger);

  struct Pending {
    grpc::ClientContext context;
    v1::MigrateOutRequest request;
    v1::MigrateOutResponse response;
    std::shared_ptr<v1::Worker::Stub> stub;
  };
  auto* p = new Pending;
  p->stub = StubFor(cit->second->address);
  p->request.set_request_id(r.id);
  p->request.set_destination(dst->registration.address);
  p->context.set_deadline(absl::ToChronoTime(absl::Now() + options_.migration_timeout));
  std::weak_ptr<LoopPoster> poster = poster_;
  const std::string request_id = r.id;
  p->stub->async()->MigrateOut(
      &p->context, &p->request, &p->response,
      [this, p, poster, request_id, destination_id, reply = std::move(reply)](grpc::Status status) {
        if (auto post = poster.lock()) {
          post->Post([this, request_id, destination_id, status, response = p->response, reply] {
            OnMigrateOutDone(request_id, destination_id, status, response, reply);
          });
        }
        delete p;
      });
  return absl::OkStatus();
}

void Scheduler::OnMigrateOutDone(const std::string& request_id, const std::string& destination_id,
                                 grpc::Status status, const v1::MigrateOutResponse& response,
                                 Reply<v1::MigrateResponse> reply) {
  v1::MigrateResponse out;
  const bool migrated = status.ok() && response.migrated();
  metrics_.Add("ferry_scheduler_kv_bytes_moved_total", response.kv_bytes_sent());
  metrics_.Add("ferry_scheduler_kv_blocks_moved_total", response.kv_blocks_sent());
  if (migrated) {
    metrics_.ObserveDowntime(static_cast<double>(response.downtime_micros()) * 1e-6);
    out.set_ok(true);
    out.set_downtime_micros(response.downtime_micros());
  } else {
    const std::string why = status.ok() ? response.error() : status.error_message();
    const MigrationRecord* m = migrations_.Find(request_id);
    if (m != nullptr && m->destination_worker_id == destination_id) {
      (void)migrations_.Abort(request_id, MigrationAbortReason::kRefused, options_.clock->Now());
      auto it = requests_.find(request_id);
      if (it != requests_.end()) it->second->samples[0].migrating = false;
    }
    Logger("scheduler")->info("req={} migration to worker={} refused: {}", request_id, destination_id, why);
    out.set_ok(false);
    out.set_error(why.empty() ? "the source did not migrate the request" : why);
    out.set_error_code(static_cast<int>(status.ok() ? absl::StatusCode::kAborted
                                                    : static_cast<absl::StatusCode>(status.error_code())));
  }
  if (reply) reply(std::move(out));
}

void Scheduler::OnMigrated(Request& r, Sample& s, const std::string& address) {
  const absl::Time now = options_.clock->Now();
  auto record = migrations_.Commit(r.id, now);
  const std::string source = s.worker_id;
  s.migrating = false;
  s.last_migrated = now;
  // The source's stream ends by itself; nothing more is read from it.
  DetachCall(s.call_id, /*cancel=*/false);
  s.call_id = 0;
  const WorkerRecord* dst = registry_.FindByAddress(address);
  if (address.empty() || dst == nullptr) {
    return RecoverSample(r, s, source, absl::StrCat("migrated to an unknown worker '", address, "'"));
  }
  if (record.ok() && record->trigger == "pd") metrics_.Add("ferry_scheduler_pd_handoffs_total");
  Logger("scheduler")->info("req={} moved worker={} -> worker={}", r.id, source, dst->worker_id);
  v1::GenerateRequest attach;
  attach.set_request_id(r.id);
  attach.set_attach(true);
  attach.set_stream(true);
  StartCall(r, {s.index}, dst->worker_id, address, std::move(attach));
}

void Scheduler::MaybeHandOff(Request& r, Sample& s) {
  s.hand_off_pending = false;
  if (r.num_samples() != 1 || s.migrating) return;
  auto dst = placement_.ChooseDecodeWorker(BuildView(), ViewOf(r, s), options_.clock->Now());
  if (!dst) {
    metrics_.Add("ferry_scheduler_pd_colocated_total");
    return;
  }
  if (auto st = StartMigration(r, s, *dst, "pd", nullptr); !st.ok()) {
    Logger("scheduler")->info("req={} stays on its prefill worker: {}", r.id, std::string(st.message()));
  }
}

void Scheduler::RunMigrationPolicy() {
  ClusterView view = BuildView();
  if (view.workers.size() < 2) return;
  for (const MigrationOrder& order : migration_policy_.Decide(view, options_.clock->Now())) {
    auto it = requests_.find(order.request_id);
    if (it == requests_.end()) continue;
    absl::Status st = StartMigration(*it->second, it->second->samples[0], order.destination_worker_id,
                                     order.reason, nullptr);
    if (!st.ok()) Logger("scheduler")->debug("req={} not moved: {}", order.request_id, std::string(st.message()));
  }
}

void Scheduler::Migrate(const v1::MigrateRequest& request, Reply<v1::MigrateResponse> reply) {
  poster_->Post([this, request, reply = std::move(reply)] {
    auto fail = [&](const absl::Status& status) {
      v1::MigrateResponse out;
      out.set_ok(false);
      out.set_error(std::string(status.message()));
      out.set_error_code(static_cast<int>(status.code()));
      reply(std::move(out));
    };
    auto it = requests_.find(request.request_id());
    if (it == requests_.end()) {
      return fail(absl::NotFoundError(absl::StrCat("no request '", Sv(request.request_id()), "' is running")));
    }
    Request& r = *it->second;
    Sample& s = r.samples[0];
    std::string destination = request.destination_worker_id();
    if (destination.empty()) {
      RequestView v = ViewOf(r, s);
      v.migratable = true;
      auto chosen = migration_policy_.ChooseDestination(BuildView(), v);
      if (!chosen) return fail(absl::FailedPreconditionError("no worker can take the request"));
      destination = *chosen;
    } else if (registry_.Find(destination) == nullptr) {
      // Admins may name a worker by the address it registered.
      const WorkerRecord* w = registry_.FindByAddress(destination);
      if (w == nullptr) {
        return fail(absl::NotFoundError(absl::StrCat("no worker '", Sv(destination), "' is registered")));
      }
      destination = w->worker_id;
    }
    const std::string source = s.worker_id;
    Reply<v1::MigrateResponse> answer = [reply, source, destination](absl::StatusOr<v1::MigrateResponse> out) {
      if (out.ok()) {
        out->set_source_worker_id(source);
        out->set_destination_worker_id(destination);
      }
      reply(std::move(out));
    };
    absl::Status st = StartMigration(r, s, destination, "admin", std::move(answer));
    if (st.code() == absl::StatusCode::kInvalidArgument || st.code() == absl::StatusCode::kAlreadyExists) {
      // Already there, or already on its way: nothing an admin can fix by retrying the same call.
      st = absl::FailedPreconditionError(st.message());
    }
    if (!st.ok()) fail(st);
  });
}

}  // namespace ferry
