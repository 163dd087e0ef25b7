#include "benchmarks/loadgen/fault_injector.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "benchmarks/loadgen/report.h"

namespace ferry::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

Clock::duration Duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

using Json = nlohmann::json;

std::optional<std::string> PickRequestToMigrate(const Json& cluster) {
  if (!cluster.is_object() || !cluster.contains("workers") || !cluster["workers"].is_array())
    return std::nullopt;
  int alive = 0;
  const Json* busiest = nullptr;
  for (const Json& w : cluster["workers"]) {
    if (!w.is_object() || !w.value("alive", false)) continue;
    ++alive;
    if (w.value("draining", false) || !w.contains("requests") || !w["requests"].is_array() ||
        w["requests"].empty()) {
      continue;
    }
    if (busiest == nullptr || w["requests"].size() > (*busiest)["requests"].size()) busiest = &w;
  }
  if (alive < 2 || busiest == nullptr || !(*busiest)["requests"][0].is_string())
    return std::nullopt;
  return (*busiest)["requests"][0].get<std::string>();
}

std::optional<WorkerPick> PickWorkerToKill(const Json& cluster,
                                           const std::set<std::string>& killed) {
  if (!cluster.is_object() || !cluster.contains("workers") || !cluster["workers"].is_array())
    return std::nullopt;
  auto requests_of = [](const Json& w) {
    return w.contains("requests") && w["requests"].is_array() ? w["requests"].size() : size_t{0};
  };
  int alive = 0;
  const Json* busiest = nullptr;
  for (const Json& w : cluster["workers"]) {
    if (!w.is_object() || !w.value("alive", false) || !w.contains("id") || !w["id"].is_string() ||
        killed.count(w["id"].get<std::string>()) > 0) {
      continue;
    }
    ++alive;
    if (w.value("draining", false)) continue;
    if (busiest == nullptr || requests_of(w) > requests_of(*busiest)) busiest = &w;
  }
  if (alive < 2 || busiest == nullptr) return std::nullopt;
  WorkerPick pick;
  pick.id = (*busiest)["id"].get<std::string>();
  if (busiest->contains("address") && (*busiest)["address"].is_string()) {
    pick.address = (*busiest)["address"].get<std::string>();
  }
  if (requests_of(*busiest) > 0) {
    for (const Json& id : (*busiest)["requests"]) {
      if (id.is_string()) pick.requests.push_back(id.get<std::string>());
    }
  }
  return pick;
}

FaultInjector::FaultInjector(std::string base_url, FaultOptions options)
    : base_url_(std::move(base_url)), options_(std::move(options)) {}

FaultInjector::~FaultInjector() {
  if (thread_.joinable()) Stop();
}

void FaultInjector::Start(Clock::time_point origin) {
  if ((options_.migrate_every_s <= 0 && options_.kill_worker_at_s.empty()) || thread_.joinable())
    return;
  origin_ = origin;
  thread_ = std::thread([this] { Loop(); });
}

FaultReport FaultInjector::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  report_.downtime_ms = Summarize(downtimes_ms_);
  return report_;
}

void FaultInjector::Loop() {
  const Clock::duration period = Duration(options_.migrate_every_s);
  std::vector<Clock::time_point> kill_times;
  for (double s : options_.kill_worker_at_s) kill_times.push_back(origin_ + Duration(s));
  std::sort(kill_times.begin(), kill_times.end());
  size_t next_kill = 0;
  std::optional<Clock::time_point> next_migration;
  if (options_.migrate_every_s > 0) next_migration = Clock::now() + period;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    const bool kill_next = next_kill < kill_times.size() &&
                           (!next_migration || kill_times[next_kill] <= *next_migration);
    if (!kill_next && !next_migration) {
      cv_.wait(lock, [this] { return stop_; });
      return;
    }
    const Clock::time_point due = kill_next ? kill_times[next_kill] : *next_migration;
    if (cv_.wait_until(lock, due, [this] { return stop_; })) return;
    lock.unlock();
    if (kill_next) {
      KillOnce();
      ++next_kill;
    } else {
      MigrateOnce();
      next_migration = Clock::now() + period;
    }
    lock.lock();
  }
}

namespace {

// A client of the gateway's admin API, with the admin key when there is one.
struct AdminClient {
  AdminClient(const std::string& base_url, const std::string& admin_key) : http(base_url) {
    http.set_connection_timeout(5, 0);
    http.set_read_timeout(30, 0);
    if (!admin_key.empty()) headers.emplace("Authorization", "Bearer " + admin_key);
  }
  httplib::Client http;
  httplib::Headers headers;
};

}  // namespace

void FaultInjector::MigrateOnce() {
  AdminClient admin(base_url_, options_.admin_key);
  httplib::Client& client = admin.http;
  const httplib::Headers& headers = admin.headers;
  auto fail = [&](const std::string& kind, const std::string& detail) {
    ++report_.migrations_attempted;
    if (++report_.failures[kind] == 1) report_.failure_examples[kind] = detail.substr(0, 300);
  };
  httplib::Result cluster = client.Get("/admin/cluster", headers);
  if (!cluster) return fail("cluster_" + httplib::to_string(cluster.error()), "GET /admin/cluster");
  if (cluster->status != 200)
    return fail(absl::StrCat("cluster_http_", cluster->status), cluster->body);
  std::optional<std::string> id = PickRequestToMigrate(Json::parse(cluster->body, nullptr, false));
  if (!id) {
    ++report_.idle_ticks;
    return;
  }
  httplib::Result moved =
      client.Post("/admin/migrate", headers, Json{{"request_id", *id}}.dump(), "application/json");
  if (!moved) return fail("migrate_" + httplib::to_string(moved.error()), "POST /admin/migrate");
  if (moved->status != 200) return fail(absl::StrCat("migrate_http_", moved->status), moved->body);
  ++report_.migrations_attempted;
  ++report_.migrations_ok;
  Json body = Json::parse(moved->body, nullptr, false);
  if (body.is_object() && body.contains("downtime_ms") && body["downtime_ms"].is_number()) {
    downtimes_ms_.push_back(body["downtime_ms"].get<double>());
  }
}

void FaultInjector::KillOnce() {
  AdminClient admin(base_url_, options_.admin_key);
  httplib::Client& client = admin.http;
  const httplib::Headers& headers = admin.headers;
  auto fail = [&](const std::string& kind, const std::string& detail) {
    ++report_.kills_attempted;
    if (++report_.kill_failures[kind] == 1)
      report_.kill_failure_examples[kind] = detail.substr(0, 300);
  };
  httplib::Result cluster = client.Get("/admin/cluster", headers);
  if (!cluster) return fail("cluster_" + httplib::to_string(cluster.error()), "GET /admin/cluster");
  if (cluster->status != 200)
    return fail(absl::StrCat("cluster_http_", cluster->status), cluster->body);
  std::optional<WorkerPick> pick =
      PickWorkerToKill(Json::parse(cluster->body, nullptr, false), killed_);
  if (!pick) {
    return fail("no_target", "fewer than two live workers: one must be left to recover on");
  }
  const Clock::time_point sent = Clock::now();
  httplib::Result killed =
      client.Post("/admin/kill", headers, Json{{"worker", pick->id}}.dump(), "application/json");
  const Clock::time_point answered = Clock::now();
  if (!killed) return fail("kill_" + httplib::to_string(killed.error()), "POST /admin/kill");
  if (killed->status != 200) return fail(absl::StrCat("kill_http_", killed->status), killed->body);
  ++report_.kills_attempted;
  ++report_.kills_ok;
  killed_.insert(pick->id);
  report_.kills.push_back({std::move(*pick), Seconds(sent - origin_), Seconds(answered - origin_)});
}

Json KillImpactJson(const KillImpact& k) {
  return {{"streams_in_flight", k.streams_in_flight},
          {"streams_on_killed_worker", k.streams_on_killed_worker},
          {"streams_failed", k.streams_failed},
          {"next_token_ms", DistributionJson(k.next_token_ms)},
          {"recovery_ms", DistributionJson(k.recovery_ms)},
          {"recovery_on_killed_worker_ms", DistributionJson(k.recovery_on_killed_worker_ms)},
          {"streams_checked", k.streams_checked},
          {"references_failed", k.references_failed},
          {"tokens_lost", k.tokens_lost},
          {"tokens_duplicated", k.tokens_duplicated},
          {"streams_with_lost_tokens", k.streams_with_lost_tokens},
          {"streams_with_duplicated_tokens", k.streams_with_duplicated_tokens}};
}

Json FaultReportJson(const FaultReport& r) {
  auto object = [](const auto& map) {
    Json j = Json::object();
    for (const auto& [k, v] : map) j[k] = v;
    return j;
  };
  Json kills = Json::array();
  for (const KillRecord& k : r.kills) {
    kills.push_back({{"worker", k.worker.id},
                     {"address", k.worker.address},
                     {"requests", k.worker.requests},
                     {"sent_s", k.sent_s},
                     {"at_s", k.at_s}});
  }
  return {{"migrations_attempted", r.migrations_attempted},
          {"migrations_ok", r.migrations_ok},
          {"idle_ticks", r.idle_ticks},
          {"failures", object(r.failures)},
          {"failure_examples", object(r.failure_examples)},
          {"downtime_ms", DistributionJson(r.downtime_ms)},
          {"kills_attempted", r.kills_attempted},
          {"kills_ok", r.kills_ok},
          {"kill_failures", object(r.kill_failures)},
          {"kill_failure_examples", object(r.kill_failure_examples)},
          {"kills", std::move(kills)},
          {"kill_impact", KillImpactJson(r.kill_impact)}};
}

}  // namespace ferry::loadgen
