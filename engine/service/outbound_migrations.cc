#include "engine/service/outbound_migrations.h"

#include "absl/time/clock.h"

namespace ferry {

void OutboundMigrations::Begin(const std::string& id, const std::string& destination) {
  absl::MutexLock lock(&mu_);
  entries_[id] = Entry{destination, false, false, absl::Now()};
}

std::optional<std::string> OutboundMigrations::Cancel(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  it->second.cancelled = true;
  if (!it->second.handed_over) return std::nullopt;
  std::string destination = it->second.destination;
  entries_.erase(it);
  return destination;
}

bool OutboundMigrations::HandOver(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.cancelled) return false;
  it->second.handed_over = true;
  it->second.since = absl::Now();
  return true;
}

void OutboundMigrations::End(const std::string& id) {
  absl::MutexLock lock(&mu_);
  entries_.erase(id);
}

int OutboundMigrations::Expire(absl::Duration ttl) {
  const absl::Time cutoff = absl::Now() - ttl;
  int dropped = 0;
  absl::MutexLock lock(&mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.handed_over && it->second.since < cutoff) {
      it = entries_.erase(it);
      ++dropped;
    } else {
      ++it;
    }
  }
  return dropped;
}

size_t OutboundMigrations::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace ferry
