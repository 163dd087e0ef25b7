// Joins a worker (engine + service) to a scheduler: registration with the
// worker's layout and hash root, then heartbeats with its load and
// prefix-cache events. Shared by `ferry worker` and `ferry serve --workers`.
#pragma once

#include <memory>
#include <string>

#include "engine/engine.h"
#include "engine/service/scheduler_client.h"
#include "engine/service/worker_service.h"

namespace ferry {

// `engine` and `service` must outlive the returned client.
std::unique_ptr<SchedulerClient> JoinScheduler(
    const std::string& scheduler_address, const std::string& advertise_address, Engine* engine,
    const WorkerService& service, v1::WorkerRole role,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

}  // namespace ferry
