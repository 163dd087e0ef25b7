// Borrowed KV blocks (DistAttention): the scheduler picks lenders from the
// workers' load reports, has each reserve its share (Worker.LendKv), keeps
// the ledger, and reclaims the blocks (Worker.ReleaseKv) when the request
// ends, when its owner returns them, or when the owner or a lender dies.
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "scheduler/service/scheduler.h"

namespace ferry {

void Scheduler::BorrowKv(const v1::BorrowKvRequest& request, Reply<v1::BorrowKvResponse> reply) {
  poster_->Post([this, request, reply = std::move(reply)] {
    const WorkerRecord* owner = registry_.Find(request.worker_id());
    if (owner == nullptr || !owner->alive) {
      return reply(absl::NotFoundError(absl::StrCat("unknown worker '", request.worker_id(), "'")));
    }
    std::vector<KvLenderCandidate> candidates;
    for (const WorkerRecord* w : registry_.All()) {
      if (!w->alive || w->suspect || w->draining || w->worker_id == owner->worker_id) continue;
      if (w->registration.model_id != owner->registration.model_id ||
          w->registration.block_size != request.layout().block_size()) {
        continue;
      }
      KvLenderCandidate c;
      c.worker_id = w->worker_id;
      c.blocks_free = w->load.blocks_free;
      c.blocks_total = w->load.blocks_total;
      c.blocks_needed_waiting = w->load.blocks_needed_waiting;
      c.reported = w->last_heartbeat;
      candidates.push_back(c);
    }
    const absl::Time now = options_.clock->Now();
    auto plan = kv_ledger_.Plan(request.request_id(), owner->worker_id, request.num_blocks(), candidates, now);
    if (!plan.ok()) {
      Logger("scheduler")->info("req={} cannot borrow {} KV blocks: {}", request.request_id(), request.num_blocks(),
                                plan.status().ToString());
      return reply(plan.status());
    }
    // In the ledger at once, so a second borrow does not count the same room.
    kv_ledger_.Record(*plan);
    struct Pending {
      std::vector<KvLease> leases;
      std::vector<v1::LendKvResponse> responses;
      std::vector<grpc::Status> statuses;
      int outstanding = 0;
      Reply<v1::BorrowKvResponse> reply;
      std::string owner_address;
    };
    auto pending = std::make_shared<Pending>();
    pending->leases = *plan;
    pending->responses.resize(plan->size());
    pending->statuses.resize(plan->size());
    pending->outstanding = static_cast<int>(plan->size());
    pending->reply = std::move(reply);
    pending->owner_address = owner->registration.address;
    auto on_all_answered = [this, pending] {
      std::string refusal;
      for (size_t i = 0; i < pending->leases.size(); ++i) {
        if (!pending->statuses[i].ok()) {
          refusal = absl::StrCat("lender ", pending->leases[i].lender_worker_id, ": ",
                                 pending->statuses[i].error_message());
        } else if (!pending->responses[i].accepted()) {
          refusal = absl::StrCat("lender ", pending->leases[i].lender_worker_id, " refused: ",
                                 pending->responses[i].reason());
        }
      }
      const std::string& request_id = pending->leases.front().request_id;
      if (!refusal.empty()) {
        metrics_.Add("ferry_scheduler_kv_borrow_refused_total");
        ReleaseKvOf(request_id);
        return pending->reply(absl::ResourceExhaustedError(absl::StrCat("cannot borrow KV blocks: ", refusal)));
      }
      if (kv_ledger_.LeasesOf(request_id).size() != pending->leases.size()) {
        // A lender died while reserving: its lease is gone already.
        ReleaseKvOf(request_id);
        return pending->reply(absl::UnavailableError("a KV lender was lost while reserving"));
      }
      v1::BorrowKvResponse response;
      for (const KvLease& lease : pending->leases) {
        v1::KvLoan* loan = response.add_loans();
        loan->set_lease_id(lease.lease_id);
        loan->set_lender_worker_id(lease.lender_worker_id);
        const WorkerRecord* lender = registry_.Find(lease.lender_worker_id);
        loan->set_lender_address(lender ? lender->registration.address : "");
        loan->set_num_blocks(lease.num_blocks);
        Logger("scheduler")->info("req={} lease={} {} KV blocks lent by worker={} to worker={}", lease.request_id,
                                  lease.lease_id, lease.num_blocks, lease.lender_worker_id, lease.owner_worker_id);
      }
      metrics_.Add("ferry_scheduler_kv_borrows_total");
      pending->reply(std::move(response));
    };
    for (size_t i = 0; i < plan->size(); ++i) {
      const KvLease& lease = (*plan)[i];
      const WorkerRecord* lender = registry_.Find(lease.lender_worker_id);
      struct Call {
        grpc::ClientContext context;
        v1::LendKvRequest request;
        v1::LendKvResponse response;
        std::shared_ptr<v1::Worker::Stub> stub;
      };
      auto* call = new Call;
      call->stub = StubFor(lender->registration.address);
      call->request.set_lease_id(lease.lease_id);
      call->request.set_request_id(lease.request_id);
      call->request.set_owner_address(pending->owner_address);
      call->request.set_num_blocks(lease.num_blocks);
      *call->request.mutable_layout() = request.layout();
      call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      call->stub->async()->LendKv(
          &call->context, &call->request, &call->response,
          [this, call, i, pending, on_all_answered, poster = poster_](grpc::Status status) {
            v1::LendKvResponse response = call->response;
            delete call;
            poster->Post([this, i, pending, on_all_answered, status, response] {
              pending->statuses[i] = status;
              pending->responses[i] = response;
              if (--pending->outstanding == 0) on_all_answered();
            });
          });
    }
  });
}

void Scheduler::ReturnKv(const v1::ReturnKvRequest& request, Reply<v1::ReturnKvResponse> reply) {
  poster_->Post([this, request, reply = std::move(reply)] {
    std::vector<KvLease> leases = kv_ledger_.ReleaseRequest(request.request_id());
    v1::ReturnKvResponse response;
    response.set_leases_released(static_cast<int>(leases.size()));
    ReleaseKvLeases(leases, "returned by the owner");
    reply(std::move(response));
  });
}

void Scheduler::ReleaseKvLeases(const std::vector<KvLease>& leases, const std::string& why) {
  for (const KvLease& lease : leases) {
    Logger("scheduler")->info("req={} lease={} ends ({}): worker={} frees {} KV blocks", lease.request_id,
                              lease.lease_id, why, lease.lender_worker_id, lease.num_blocks);
    const WorkerRecord* lender = registry_.Find(lease.lender_worker_id);
    if (lender == nullptr || !lender->alive) continue;
    struct Call {
      grpc::ClientContext context;
      v1::ReleaseKvRequest request;
      v1::ReleaseKvResponse response;
      std::shared_ptr<v1::Worker::Stub> stub;
    };
    auto* call = new Call;
    call->stub = StubFor(lender->registration.address);
    call->request.set_lease_id(lease.lease_id);
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    call->stub->async()->ReleaseKv(&call->context, &call->request, &call->response,
                                   [call](grpc::Status) { delete call; });
  }
}

std::string Scheduler::RenderKvLendingMetrics() const {
  const KvLedgerCounts& c = kv_ledger_.counts();
  int64_t blocks = 0;
  for (const KvLease& lease : kv_ledger_.All()) blocks += lease.num_blocks;
  std::string out;
  out += "# HELP ferry_scheduler_kv_leases_active KV leases (borrowed blocks) in the ledger now\n";
  out += "# TYPE ferry_scheduler_kv_leases_active gauge\n";
  out += absl::StrCat("ferry_scheduler_kv_leases_active ", kv_ledger_.num_leases(), "\n");
  out += "# HELP ferry_scheduler_kv_blocks_lent KV blocks lent between workers now\n";
  out += "# TYPE ferry_scheduler_kv_blocks_lent gauge\n";
  out += absl::StrCat("ferry_scheduler_kv_blocks_lent ", blocks, "\n");
  out += "# TYPE ferry_scheduler_kv_leases_granted_total counter\n";
  out += absl::StrCat("ferry_scheduler_kv_leases_granted_total ", c.leases_granted, "\n");
  out += "# TYPE ferry_scheduler_kv_blocks_granted_total counter\n";
  out += absl::StrCat("ferry_scheduler_kv_blocks_granted_total ", c.blocks_granted, "\n");
  out += "# TYPE ferry_scheduler_kv_borrow_no_room_total counter\n";
  out += absl::StrCat("ferry_scheduler_kv_borrow_no_room_total ", c.borrow_refused, "\n");
  out += "# TYPE ferry_scheduler_kv_leases_released_total counter\n";
  for (int i = 0; i < kNumKvReleaseReasons; ++i) {
    out += absl::StrCat("ferry_scheduler_kv_leases_released_total{reason=\"",
                        KvReleaseReasonName(static_cast<KvReleaseReason>(i)), "\"} ", c.leases_released[i], "\n");
  }
  return out;
}

}  // namespace ferry
