#include "scheduler/service/worker_registry.h"

#include "absl/strings/str_cat.h"

namespace ferry {

absl::StatusOr<RegisterResult> WorkerRegistry::Register(const WorkerRegistration& registration, absl::Time now) {
  if (registration.address.empty()) return absl::InvalidArgumentError("worker address is empty");
  if (registration.incarnation_id.empty()) return absl::InvalidArgumentError("worker incarnation id is empty");
  RegisterResult result;
  for (auto& [id, w] : workers_) {
    if (w.registration.address != registration.address) continue;
    if (w.registration.incarnation_id == registration.incarnation_id) {
      // The same process again (it missed heartbeats): it keeps its id.
      w.registration = registration;
      w.alive = true;
      w.died = absl::InfiniteFuture();
      w.last_heartbeat = now;
      result.worker_id = id;
    } else if (w.alive) {
      w.alive = false;
      w.died = now;
      result.replaced.push_back(id);
    }
  }
  if (result.worker_id.empty()) {
    WorkerRecord w;
    w.worker_id = absl::StrCat("w", next_id_++);
    w.registration = registration;
    w.registered = now;
    w.last_heartbeat = now;
    result.worker_id = w.worker_id;
    workers_.emplace(w.worker_id, std::move(w));
  }
  return result;
}

absl::StatusOr<const WorkerRecord*> WorkerRegistry::Heartbeat(const std::string& worker_id,
                                                              const std::string& incarnation_id,
                                                              const WorkerLoad& load, absl::Time now) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || !it->second.alive || it->second.registration.incarnation_id != incarnation_id) {
    return absl::NotFoundError(absl::StrCat("worker ", worker_id, " is not registered"));
  }
  it->second.load = load;
  it->second.load.pending_requests = 0;
  it->second.load.pending_blocks = 0;
  it->second.last_heartbeat = now;
  it->second.suspect = false;
  return &it->second;
}

std::vector<std::string> WorkerRegistry::ExpireSilent(absl::Time now) {
  std::vector<std::string> dead;
  for (auto it = workers_.begin(); it != workers_.end();) {
    WorkerRecord& w = it->second;
    if (w.alive && now - w.last_heartbeat > options_.worker_timeout) {
      w.alive = false;
      w.died = now;
      dead.push_back(w.worker_id);
    }
    if (!w.alive && now - w.died > options_.forget_after) {
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  return dead;
}

void WorkerRegistry::MarkDead(const std::string& worker_id, absl::Time now) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || !it->second.alive) return;
  it->second.alive = false;
  it->second.died = now;
}

void WorkerRegistry::MarkSuspect(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second.suspect = true;
}

absl::Status WorkerRegistry::SetDraining(const std::string& worker_id, bool draining) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return absl::NotFoundError(absl::StrCat("unknown worker ", worker_id));
  it->second.draining = draining;
  return absl::OkStatus();
}

void WorkerRegistry::AddPending(const std::string& worker_id, int64_t blocks) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  it->second.load.pending_requests += 1;
  it->second.load.pending_blocks += blocks;
}

const WorkerRecord* WorkerRegistry::Find(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : &it->second;
}

const WorkerRecord* WorkerRegistry::FindByAddress(const std::string& address) const {
  for (const auto& [id, w] : workers_) {
    if (w.alive && w.registration.address == address) return &w;
  }
  return nullptr;
}

std::vector<const WorkerRecord*> WorkerRegistry::All() const {
  std::vector<const WorkerRecord*> out;
  for (const auto& [id, w] : workers_) out.push_back(&w);
  return out;
}

}  // namespace ferry
