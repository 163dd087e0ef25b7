#include "scheduler/service/scheduler_service.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace ferry {
namespace {

// A reply callback that fills `response` and finishes `reactor`.
template <typename T>
Scheduler::Reply<T> Answer(grpc::ServerUnaryReactor* reactor, T* response) {
  return [reactor, response](absl::StatusOr<T> result) {
    if (!result.ok()) {
      reactor->Finish(ToGrpcStatus(result.status()));
      return;
    }
    *response = std::move(*result);
    reactor->Finish(grpc::Status::OK);
  };
}

}  // namespace

grpc::ServerWriteReactor<v1::TokenEvent>* SchedulerService::Generate(grpc::CallbackServerContext* context,
                                                                     const v1::GenerateRequest* request) {
  v1::GenerateRequest copy = *request;
  // Cancellation finds the request by id, so it needs one from the start.
  if (copy.request_id().empty()) copy.set_request_id(absl::StrCat("sched-", next_request_number_.fetch_add(1)));
  auto [stream, reactor] = ClientStream::Create(
      [this, id = copy.request_id()] { scheduler_->CancelGenerate(id); });
  scheduler_->Generate(std::move(copy), stream);
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::Abort(grpc::CallbackServerContext* context,
                                                  const v1::AbortRequest* request, v1::AbortResponse* response) {
  auto* reactor = context->DefaultReactor();
  scheduler_->Abort(*request, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::RegisterWorker(grpc::CallbackServerContext* context,
                                                           const v1::RegisterWorkerRequest* request,
                                                           v1::RegisterWorkerResponse* response) {
  auto* reactor = context->DefaultReactor();
  scheduler_->RegisterWorker(*request, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::Heartbeat(grpc::CallbackServerContext* context,
                                                      const v1::HeartbeatRequest* request,
                                                      v1::HeartbeatResponse* response) {
  auto* reactor = context->DefaultReactor();
  scheduler_->Heartbeat(*request, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::ListWorkers(grpc::CallbackServerContext* context,
                                                        const v1::ListWorkersRequest* request,
                                                        v1::ListWorkersResponse* response) {
  auto* reactor = context->DefaultReactor();
  scheduler_->ListWorkers(Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::DrainWorker(grpc::CallbackServerContext* context,
                                                        const v1::DrainWorkerRequest* request,
                                                        v1::DrainWorkerResponse* response) {
  auto* reactor = context->DefaultReactor();
  scheduler_->DrainWorker(*request, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::KillWorker(grpc::CallbackServerContext* context,
                                                       const v1::KillWorkerRequest* request,
                                                       v1::KillWorkerResponse* response) {
  auto* reactor = context->DefaultReactor();
  scheduler_->KillWorker(*request, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::Migrate(grpc::CallbackServerContext* context,
                                                    const v1::MigrateRequest* request,
                                                    v1::MigrateResponse* response) {
  auto* reactor = context->DefaultReactor();
  scheduler_->Migrate(*request, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::BorrowKv(grpc::CallbackServerContext* context,
                                                     const v1::BorrowKvRequest* request,
                                                     v1::BorrowKvResponse* response) {
  auto* reactor = context->DefaultReactor();
  scheduler_->BorrowKv(*request, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::ReturnKv(grpc::CallbackServerContext* context,
                                                     const v1::ReturnKvRequest* request,
                                                     v1::ReturnKvResponse* response) {
  auto* reactor = context->DefaultReactor();
  scheduler_->ReturnKv(*request, Answer(reactor, response));
  return reactor;
}

}  // namespace ferry
