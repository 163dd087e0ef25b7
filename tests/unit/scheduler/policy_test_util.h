// Builders for hand-made cluster views in policy tests.
#pragma once

#include <string>

#include "scheduler/policy/cluster_view.h"

namespace ferry::testing {

inline WorkerView MakeWorker(std::string id, int64_t free, int running, WorkerRoleKind role = WorkerRoleKind::kMixed) {
  WorkerView w;
  w.worker_id = std::move(id);
  w.address = "addr-" + w.worker_id;
  w.role = role;
  w.load.blocks_total = 1000;
  w.load.blocks_free = free;
  w.load.running_requests = running;
  return w;
}

inline RequestView MakeRequest(std::string id, std::string worker, int priority, int64_t blocks) {
  RequestView r;
  r.request_id = std::move(id);
  r.worker_id = std::move(worker);
  r.priority = priority;
  r.num_blocks = blocks;
  r.num_tokens = blocks * 16;
  return r;
}

}  // namespace ferry::testing
