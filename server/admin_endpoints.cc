// The gateway's cluster admin endpoints:
//   GET  /admin/cluster                      workers, roles, load, requests
//   POST /admin/migrate {"request_id", "to"} move a running request
//   POST /admin/drain   {"worker"}           stop new work on a worker, move its requests out
//   POST /admin/kill    {"worker"}           fault injection: end a worker's process abruptly
//                                            (only a worker started with --enable-fault-injection
//                                            accepts; its requests recover as from a crash)
// Access: with an admin key (--admin-key / $FERRY_ADMIN_KEY) the caller must
// present it as "Authorization: Bearer KEY" (401 otherwise; API keys do not
// open these endpoints). Without one they are open only on a gateway that
// has no API keys either (a local, unauthenticated deployment); a gateway
// with API keys but no admin key answers 403. A gateway whose backend is a
// single worker or engine answers 501: there is no cluster to administer.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "server/gateway.h"
#include "server/json_fields.h"
#include "server/openai_error.h"
#include "server/openai_response.h"

namespace ferry {
namespace {

const char* RoleName(v1::WorkerRole role) {
  switch (role) {
    case v1::WORKER_ROLE_PREFILL:
      return "prefill";
    case v1::WORKER_ROLE_DECODE:
      return "decode";
    default:
      return "mixed";
  }
}

Json WorkerJson(const v1::WorkerInfo& w) {
  const v1::LoadReport& l = w.load();
  Json requests = Json::array();
  for (const std::string& id : w.request_ids()) requests.push_back(id);
  return Json{{"id", w.worker_id()},
              {"address", w.address()},
              {"role", RoleName(w.role())},
              {"model", w.model_id()},
              {"incarnation", w.incarnation_id()},
              {"alive", w.alive()},
              {"draining", w.draining()},
              {"load",
               {{"blocks_free", l.blocks_free()},
                {"blocks_total", l.blocks_total()},
                {"running_requests", l.running_requests()},
                {"waiting_requests", l.waiting_requests()},
                {"blocks_needed_waiting", l.blocks_needed_waiting()},
                {"cached_blocks", l.cached_blocks()},
                {"tokens_per_second", l.tokens_per_second()}}},
              {"num_requests", w.num_requests()},
              {"requests", std::move(requests)}};
}

HttpResponse JsonOk(const Json& j) {
  HttpResponse r;
  r.body = Dump(j);
  return r;
}

// A migration or kill the cluster would not do conflicts with the state of
// the request or worker (409, under `code`): a migration it refuses, a kill
// a worker started without --enable-fault-injection refuses, or one of a
// dead worker. Unknown names stay 404, bad input 400, an unreachable
// scheduler 503.
absl::Status AsConflictError(absl::Status s, const char* code) {
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return s;
    default:
      return WithErrorCode(WithHttpStatus(std::move(s), 409), code);
  }
}

// A required, non-empty string field.
absl::StatusOr<std::string> RequiredString(const JsonFields& f, const char* key, const char* what) {
  FERRY_ASSIGN_OR_RETURN(std::optional<std::string> v, f.String(key));
  if (!v || v->empty()) {
    return InvalidParamError(key, absl::StrCat("'", Sv(key), "' (", Sv(what), ") is required"));
  }
  return *v;
}

// Fields other than `allowed` are an error: a typo must not pass silently.
absl::Status OnlyFields(const Json& body, std::initializer_list<const char*> allowed) {
  for (const auto& [key, value] : body.items()) {
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (!known) return InvalidParamError(key, absl::StrCat("unknown field '", Sv(key), "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Gateway::AuthorizeAdmin(const HttpRequest& request) const {
  if (!admin_key_.enabled()) {
    if (!keys_.enabled()) return absl::OkStatus();
    return WithErrorCode(
        absl::PermissionDeniedError(
            "the admin endpoints are disabled: this gateway requires API keys but has no admin "
            "key; start it with --admin-key (or $FERRY_ADMIN_KEY)"),
        "admin_disabled");
  }
  std::optional<std::string> token = ApiKeys::BearerToken(request.Header("authorization"));
  if (!token) {
    return WithErrorCode(
        absl::UnauthenticatedError(
            "missing admin key: send it as an 'Authorization: Bearer <key>' header"),
        "invalid_admin_key");
  }
  if (!admin_key_.Match(*token)) {
    return WithErrorCode(absl::UnauthenticatedError("invalid admin key"), "invalid_admin_key");
  }
  return absl::OkStatus();
}

absl::StatusOr<ClusterAdmin*> Gateway::Admin() const {
  ClusterAdmin* admin = context_.backend->cluster_admin();
  if (admin == nullptr) {
    return WithErrorCode(
        absl::UnimplementedError(
            "this gateway sends generations to a single worker, not to a cluster scheduler: "
            "there is no cluster to administer (start the gateway with --scheduler, or run "
            "ferry serve --workers N)"),
        "not_a_cluster");
  }
  return admin;
}

absl::StatusOr<HttpResponse> Gateway::AdminCluster() const {
  FERRY_ASSIGN_OR_RETURN(ClusterAdmin * admin, Admin());
  FERRY_ASSIGN_OR_RETURN(v1::ListWorkersResponse list, admin->ListWorkers());
  Json workers = Json::array();
  int alive = 0, requests = 0;
  for (const v1::WorkerInfo& w : list.workers()) {
    workers.push_back(WorkerJson(w));
    alive += w.alive() ? 1 : 0;
    requests += w.num_requests();
  }
  return JsonOk(Json{{"object", "cluster"},
                     {"num_workers", list.workers_size()},
                     {"num_workers_alive", alive},
                     {"num_requests", requests},
                     {"workers", std::move(workers)}});
}

absl::StatusOr<HttpResponse> Gateway::AdminMigrate(const HttpRequest& request) const {
  FERRY_ASSIGN_OR_RETURN(Json body, ParseJsonBody(request.body));
  FERRY_RETURN_IF_ERROR(OnlyFields(body, {"request_id", "to"}));
  JsonFields f(body);
  FERRY_ASSIGN_OR_RETURN(std::string request_id,
                         RequiredString(f, "request_id", "a request id from /admin/cluster"));
  FERRY_ASSIGN_OR_RETURN(std::optional<std::string> to, f.String("to"));
  FERRY_ASSIGN_OR_RETURN(ClusterAdmin * admin, Admin());
  absl::StatusOr<v1::MigrateResponse> moved = admin->Migrate(request_id, to.value_or(""));
  if (!moved.ok()) return AsConflictError(moved.status(), "migration_refused");
  return JsonOk(Json{{"object", "cluster.migration"},
                     {"request_id", request_id},
                     {"from", moved->source_worker_id()},
                     {"to", moved->destination_worker_id()},
                     {"downtime_ms", static_cast<double>(moved->downtime_micros()) / 1000.0}});
}

absl::StatusOr<HttpResponse> Gateway::AdminDrain(const HttpRequest& request) const {
  FERRY_ASSIGN_OR_RETURN(Json body, ParseJsonBody(request.body));
  FERRY_RETURN_IF_ERROR(OnlyFields(body, {"worker"}));
  JsonFields f(body);
  FERRY_ASSIGN_OR_RETURN(std::string worker, RequiredString(f, "worker", "a worker id or address"));
  FERRY_ASSIGN_OR_RETURN(ClusterAdmin * admin, Admin());
  FERRY_RETURN_IF_ERROR(admin->Drain(worker));
  return JsonOk(Json{{"object", "cluster.drain"}, {"worker", worker}, {"draining", true}});
}

absl::StatusOr<HttpResponse> Gateway::AdminKill(const HttpRequest& request) const {
  FERRY_ASSIGN_OR_RETURN(Json body, ParseJsonBody(request.body));
  FERRY_RETURN_IF_ERROR(OnlyFields(body, {"worker"}));
  JsonFields f(body);
  FERRY_ASSIGN_OR_RETURN(std::string worker, RequiredString(f, "worker", "a worker id or address"));
  FERRY_ASSIGN_OR_RETURN(ClusterAdmin * admin, Admin());
  absl::StatusOr<v1::KillWorkerResponse> killed = admin->KillWorker(worker);
  if (!killed.ok()) return AsConflictError(killed.status(), "kill_refused");
  return JsonOk(Json{{"object", "cluster.kill"},
                     {"worker", worker},
                     {"id", killed->worker_id()},
                     {"address", killed->address()},
                     {"killed", true}});
}

}  // namespace ferry
