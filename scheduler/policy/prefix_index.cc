#include "scheduler/policy/prefix_index.h"

namespace ferry {

void PrefixIndex::Insert(const std::string& worker_id, std::span<const uint64_t> block_hashes) {
  Entry& e = workers_[worker_id];
  for (uint64_t h : block_hashes) {
    if (e.hashes.insert(h).second) e.order.push_back(h);
  }
  // Forget the oldest; the order queue can hold hashes removed since, so it
  // is trimmed as well to stay bounded.
  while (e.hashes.size() > max_blocks_ || e.order.size() > 2 * max_blocks_ + 16) {
    e.hashes.erase(e.order.front());
    e.order.pop_front();
  }
}

void PrefixIndex::Remove(const std::string& worker_id, std::span<const uint64_t> block_hashes) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  for (uint64_t h : block_hashes) it->second.hashes.erase(h);
}

void PrefixIndex::DropWorker(const std::string& worker_id) { workers_.erase(worker_id); }

int64_t PrefixIndex::MatchBlocks(const std::string& worker_id, std::span<const uint64_t> block_hashes) const {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return 0;
  int64_t n = 0;
  for (uint64_t h : block_hashes) {
    if (!it->second.hashes.contains(h)) break;
    ++n;
  }
  return n;
}

size_t PrefixIndex::NumBlocks(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? 0 : it->second.hashes.size();
}

}  // namespace ferry
