// Fault injection during a load test through the gateway's admin API:
// every `migrate_every_s` it moves one running request (POST /admin/migrate)
// picked from GET /admin/cluster, and records how each move went.
// Killing workers is not done here: the admin API has no call for it.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "benchmarks/loadgen/metrics.h"

namespace ferry::loadgen {

struct FaultOptions {
  double migrate_every_s = 0;  // 0: no migrations
  std::string admin_key;       // sent as a Bearer token when set
};

struct FaultReport {
  int migrations_attempted = 0;
  int migrations_ok = 0;
  int idle_ticks = 0;                   // nothing was running to move
  std::map<std::string, int> failures;  // "http_409", "connection", ...
  std::map<std::string, std::string> failure_examples;
  Distribution downtime_ms;  // as the gateway reported it
};

// The request to move: the first request of the alive, non-draining worker
// running the most, when there are at least two alive workers. `cluster` is
// the body of GET /admin/cluster.
std::optional<std::string> PickRequestToMigrate(const nlohmann::json& cluster);

class FaultInjector {
 public:
  // `base_url` is scheme://host:port of the gateway.
  FaultInjector(std::string base_url, FaultOptions options);
  ~FaultInjector();  // Stops the thread.
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  void Start();
  // Stops and returns what happened.
  FaultReport Stop();

 private:
  void Loop();
  void MigrateOnce();

  const std::string base_url_;
  const FaultOptions options_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                 // guarded by mu_
  FaultReport report_;                // owned by the thread until Stop joins it
  std::vector<double> downtimes_ms_;  // ditto
};

nlohmann::json FaultReportJson(const FaultReport& report);

}  // namespace ferry::loadgen
