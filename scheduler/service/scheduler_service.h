// ferry.v1.Scheduler over gRPC (callback API). Converts between gRPC and the
// Scheduler core; the one place scheduler errors become grpc::Status.
#pragma once

#include <atomic>

#include "ferry/v1/scheduler.grpc.pb.h"
#include "scheduler/service/scheduler.h"

namespace ferry {

class SchedulerService final : public v1::Scheduler::CallbackService {
 public:
  // `scheduler` must outlive the service and the server it is registered in.
  explicit SchedulerService(Scheduler* scheduler) : scheduler_(scheduler) {}

  grpc::ServerWriteReactor<v1::TokenEvent>* Generate(grpc::CallbackServerContext* context,
                                                     const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context, const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;
  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* context,
                                           const v1::RegisterWorkerRequest* request,
                                           v1::RegisterWorkerResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context, const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const v1::ListWorkersRequest* request,
                                        v1::ListWorkersResponse* response) override;
  grpc::ServerUnaryReactor* DrainWorker(grpc::CallbackServerContext* context,
                                        const v1::DrainWorkerRequest* request,
                                        v1::DrainWorkerResponse* response) override;
  grpc::ServerUnaryReactor* KillWorker(grpc::CallbackServerContext* context,
                                       const v1::KillWorkerRequest* request,
                                       v1::KillWorkerResponse* response) override;
  grpc::ServerUnaryReactor* Migrate(grpc::CallbackServerContext* context, const v1::MigrateRequest* request,
                                    v1::MigrateResponse* response) override;
  grpc::ServerUnaryReactor* BorrowKv(grpc::CallbackServerContext* context, const v1::BorrowKvRequest* request,
                                     v1::BorrowKvResponse* response) override;
  grpc::ServerUnaryReactor* ReturnKv(grpc::CallbackServerContext* context, const v1::ReturnKvRequest* request,
                                     v1::ReturnKvResponse* response) override;

 private:
  Scheduler* scheduler_;
  std::atomic<uint64_t> next_request_number_{1};
};

}  // namespace ferry
