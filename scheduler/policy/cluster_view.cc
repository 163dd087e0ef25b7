#include "scheduler/policy/cluster_view.h"

#include <algorithm>

namespace ferry {

double Freeness(const WorkerLoad& load) {
  const double available =
      static_cast<double>(load.blocks_free - load.blocks_needed_waiting - load.pending_blocks);
  const int busy = load.running_requests + load.pending_requests;
  return available / static_cast<double>(std::max(busy, 1));
}

const WorkerView* ClusterView::FindWorker(const std::string& worker_id) const {
  for (const WorkerView& w : workers) {
    if (w.worker_id == worker_id) return &w;
  }
  return nullptr;
}

ClusterView ClusterView::FilterWorkers(const std::function<bool(const WorkerView&)>& keep) const {
  ClusterView out;
  out.requests = requests;
  for (const WorkerView& w : workers) {
    if (keep(w)) out.workers.push_back(w);
  }
  return out;
}

bool AcceptsNewWork(const WorkerView& w) { return w.alive && !w.draining; }

int64_t BlocksForTokens(int64_t num_tokens, int block_size) {
  if (block_size <= 0) return 0;
  return (num_tokens + block_size - 1) / block_size;
}

}  // namespace ferry
