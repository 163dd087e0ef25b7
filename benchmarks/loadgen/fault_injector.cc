#include "benchmarks/loadgen/fault_injector.h"

#include <httplib.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace ferry::loadgen {

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

FaultInjector::FaultInjector(std::string base_url, FaultOptions options)
    : base_url_(std::move(base_url)), options_(std::move(options)) {}

FaultInjector::~FaultInjector() {
  if (thread_.joinable()) Stop();
}

void FaultInjector::Start() {
  if (options_.migrate_every_s <= 0 || thread_.joinable()) return;
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
  const auto period = std::chrono::duration<double>(options_.migrate_every_s);
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
    lock.unlock();
    MigrateOnce();
    lock.lock();
  }
}

void FaultInjector::MigrateOnce() {
  httplib::Client client(base_url_);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(30, 0);
  httplib::Headers headers;
  if (!options_.admin_key.empty()) headers.emplace("Authorization", "Bearer " + options_.admin_key);
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

Json FaultReportJson(const FaultReport& r) {
  Json failures = Json::object(), examples = Json::object();
  for (const auto& [k, v] : r.failures) failures[k] = v;
  for (const auto& [k, v] : r.failure_examples) examples[k] = v;
  const Distribution& d = r.downtime_ms;
  return {{"migrations_attempted", r.migrations_attempted},
          {"migrations_ok", r.migrations_ok},
          {"idle_ticks", r.idle_ticks},
          {"failures", failures},
          {"failure_examples", examples},
          {"downtime_ms",
           {{"count", d.count},
            {"mean", d.mean},
            {"median", d.median},
            {"p99", d.p99},
            {"max", d.max}}}};
}

}  // namespace ferry::loadgen
