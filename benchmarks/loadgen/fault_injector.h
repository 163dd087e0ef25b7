// Fault injection during a load test through the gateway's admin API:
// every `migrate_every_s` it moves one running request (POST /admin/migrate)
// picked from GET /admin/cluster, and at each of `kill_worker_at_s` it kills
// one worker (POST /admin/kill; only workers started with
// --enable-fault-injection accept). It records how each fault went; what a
// kill did to the streams is measured afterwards (recovery_check.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "benchmarks/loadgen/metrics.h"
#include "benchmarks/loadgen/recovery_check.h"

namespace ferry::loadgen {

struct FaultOptions {
  double migrate_every_s = 0;  // 0: no migrations
  // Run times (seconds) at each of which one worker is killed.
  std::vector<double> kill_worker_at_s;
  std::string admin_key;  // sent as a Bearer token when set
};

struct FaultReport {
  int migrations_attempted = 0;
  int migrations_ok = 0;
  int idle_ticks = 0;                   // nothing was running to move
  std::map<std::string, int> failures;  // "http_409", "connection", ...
  std::map<std::string, std::string> failure_examples;
  Distribution downtime_ms;  // as the gateway reported it

  int kills_attempted = 0;
  int kills_ok = 0;
  std::map<std::string, int> kill_failures;  // "no_target", "kill_http_409", ...
  std::map<std::string, std::string> kill_failure_examples;
  std::vector<KillRecord> kills;  // the confirmed ones, in order
  // What the kills did to the streams; filled after the run by the caller
  // (MeasureKills, CompareWithReferences).
  KillImpact kill_impact;
};

// The request to move: the first request of the alive, non-draining worker
// running the most, when there are at least two alive workers. `cluster` is
// the body of GET /admin/cluster.
std::optional<std::string> PickRequestToMigrate(const nlohmann::json& cluster);

// The worker to kill: the alive, non-draining worker running the most
// requests (the first listed of equals), when at least two workers are
// alive, so that one is left to recover on. Workers named in `killed` (by id)
// count as dead: the cluster may list them alive until it notices.
std::optional<WorkerPick> PickWorkerToKill(const nlohmann::json& cluster,
                                           const std::set<std::string>& killed = {});

class FaultInjector {
 public:
  // `base_url` is scheme://host:port of the gateway.
  FaultInjector(std::string base_url, FaultOptions options);
  ~FaultInjector();  // Stops the thread.
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  // Kill times count from `origin` (the load run's time zero).
  void Start(std::chrono::steady_clock::time_point origin = std::chrono::steady_clock::now());
  // Stops and returns what happened.
  FaultReport Stop();

 private:
  void Loop();
  void MigrateOnce();
  void KillOnce();

  const std::string base_url_;
  const FaultOptions options_;
  std::chrono::steady_clock::time_point origin_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                 // guarded by mu_
  FaultReport report_;                // owned by the thread until Stop joins it
  std::vector<double> downtimes_ms_;  // ditto
  std::set<std::string> killed_;      // ditto
};

nlohmann::json FaultReportJson(const FaultReport& report);
nlohmann::json KillImpactJson(const KillImpact& impact);

}  // namespace ferry::loadgen
