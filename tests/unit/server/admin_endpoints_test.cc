// The gateway's cluster admin endpoints against a fake cluster, without
// HTTP: who may call them, what they return, and OpenAI-shaped errors for
// bad bodies, unknown names, a single-worker backend and a lost scheduler.
#include <memory>

#include "gtest/gtest.h"
#include "server/gateway.h"
#include "server/model_assets.h"
#include "tests/test_support.h"
#include "tests/unit/server/fake_backend.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;
using testing::FakeBackend;
using testing::FakeClusterAdmin;

class AdminEndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string model = ferry::testing::SharedPath("models/stories260K.gguf");
    if (!std::filesystem::exists(model)) GTEST_SKIP() << model << " is absent";
    auto assets = ModelAssets::Load(model);
    ASSERT_TRUE(assets.ok()) << assets.status();
    assets_ = std::move(*assets);
    cluster_.AddWorker("w1", v1::WORKER_ROLE_PREFILL, {"cmpl-a-0", "cmpl-b-0"});
    cluster_.AddWorker("w2", v1::WORKER_ROLE_DECODE, {});
    backend_.cluster_admin_ = &cluster_;
    Make(GatewayOptions{});
  }

  void Make(GatewayOptions options) {
    gateway_.reset();
    metrics_ = std::make_unique<MetricsRegistry>();
    gateway_ = std::make_unique<Gateway>(options, assets_.get(), &backend_, metrics_.get());
  }

  HttpResponse Call(const std::string& method, const std::string& path,
                    const std::string& body = "", const std::string& auth = "") {
    HttpRequest r{method, path, body, {}, "127.0.0.1"};
    if (!auth.empty()) r.headers.emplace_back("Authorization", auth);
    return gateway_->Handle(r);
  }

  // The OpenAI error object of a response that must be an error.
  static Json Error(const HttpResponse& r) {
    Json j = Json::parse(r.body);
    EXPECT_TRUE(j.contains("error")) << r.body;
    return j.value("error", Json::object());
  }

  std::unique_ptr<ModelAssets> assets_;
  FakeBackend backend_;
  FakeClusterAdmin cluster_;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<Gateway> gateway_;
};

TEST_F(AdminEndpointsTest, ClusterListsWorkersRolesLoadAndRequests) {
  HttpResponse r = Call("GET", "/admin/cluster");
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = Json::parse(r.body);
  EXPECT_EQ(j["object"], "cluster");
  EXPECT_EQ(j["num_workers"], 2);
  EXPECT_EQ(j["num_workers_alive"], 2);
  EXPECT_EQ(j["num_requests"], 2);
  ASSERT_EQ(j["workers"].size(), 2u);
  const Json& w1 = j["workers"][0];
  EXPECT_EQ(w1["id"], "w1");
  EXPECT_EQ(w1["role"], "prefill");
  EXPECT_EQ(w1["alive"], true);
  EXPECT_EQ(w1["draining"], false);
  EXPECT_EQ(w1["load"]["blocks_total"], 100);
  EXPECT_EQ(w1["load"]["blocks_free"], 90);
  EXPECT_EQ(w1["num_requests"], 2);
  EXPECT_EQ(w1["requests"], (Json{"cmpl-a-0", "cmpl-b-0"}));
  EXPECT_EQ(j["workers"][1]["role"], "decode");
  EXPECT_EQ(j["workers"][1]["requests"], Json::array());
}

TEST_F(AdminEndpointsTest, MigrateMovesARequestAndReportsWhereTo) {
  HttpResponse r = Call("POST", "/admin/migrate", R"({"request_id": "cmpl-a-0", "to": "w2"})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = Json::parse(r.body);
  EXPECT_EQ(j["object"], "cluster.migration");
  EXPECT_EQ(j["request_id"], "cmpl-a-0");
  EXPECT_EQ(j["from"], "w1");
  EXPECT_EQ(j["to"], "w2");
  EXPECT_DOUBLE_EQ(j["downtime_ms"].get<double>(), 1.5);
  Json cluster = Json::parse(Call("GET", "/admin/cluster").body);
  EXPECT_EQ(cluster["workers"][1]["requests"], (Json{"cmpl-a-0"}));
  // Without "to" the cluster picks the destination.
  r = Call("POST", "/admin/migrate", R"({"request_id": "cmpl-b-0"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["to"], "w2");
  // Moving it where it already is conflicts with its state.
  r = Call("POST", "/admin/migrate", R"({"request_id": "cmpl-b-0", "to": "w2"})");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(Error(r)["code"], "migration_refused");
}

TEST_F(AdminEndpointsTest, UnknownNamesAre404AndBadBodiesAre400) {
  HttpResponse r = Call("POST", "/admin/migrate", R"({"request_id": "nope", "to": "w2"})");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_NE(Error(r)["message"].get<std::string>().find("nope"), std::string::npos) << r.body;
  r = Call("POST", "/admin/migrate", R"({"request_id": "cmpl-a-0", "to": "w9"})");
  EXPECT_EQ(r.status, 404) << r.body;
  r = Call("POST", "/admin/drain", R"({"worker": "w9"})");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(Error(r)["type"], "not_found_error");

  for (const char* body :
       {"", "{", "[1]", R"({"to": "w2"})", R"({"request_id": 7})", R"({"request_id": ""})",
        R"({"request_id": "cmpl-a-0", "destination": "w2"})"}) {
    r = Call("POST", "/admin/migrate", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    EXPECT_EQ(Error(r)["type"], "invalid_request_error") << body;
  }
  for (const char* body : {"{}", R"({"worker": true})", R"({"worker": "w1", "force": true})"}) {
    r = Call("POST", "/admin/drain", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
  }
  // Nothing moved or drained.
  Json cluster = Json::parse(Call("GET", "/admin/cluster").body);
  EXPECT_EQ(cluster["workers"][0]["num_requests"], 2);
  EXPECT_EQ(cluster["workers"][0]["draining"], false);
  // Wrong methods.
  EXPECT_EQ(Call("GET", "/admin/migrate").status, 405);
  EXPECT_EQ(Call("POST", "/admin/cluster", "{}").status, 405);
}

TEST_F(AdminEndpointsTest, DrainMarksTheWorker) {
  HttpResponse r = Call("POST", "/admin/drain", R"({"worker": "w1"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["draining"], true);
  Json cluster = Json::parse(Call("GET", "/admin/cluster").body);
  EXPECT_EQ(cluster["workers"][0]["draining"], true);
  EXPECT_EQ(cluster["workers"][1]["draining"], false);
}

TEST_F(AdminEndpointsTest, KillEndsTheWorkerByIdOrAddress) {
  HttpResponse r = Call("POST", "/admin/kill", R"({"worker": "w1"})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = Json::parse(r.body);
  EXPECT_EQ(j["object"], "cluster.kill");
  EXPECT_EQ(j["worker"], "w1");
  EXPECT_EQ(j["id"], "w1");
  EXPECT_EQ(j["address"], "127.0.0.1:50000");
  EXPECT_EQ(j["killed"], true);
  Json cluster = Json::parse(Call("GET", "/admin/cluster").body);
  EXPECT_EQ(cluster["workers"][0]["alive"], false);
  EXPECT_EQ(cluster["num_workers_alive"], 1);
  // By address; a dead worker cannot be killed again.
  r = Call("POST", "/admin/kill", R"({"worker": "127.0.0.1:50001"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["id"], "w2");
  r = Call("POST", "/admin/kill", R"({"worker": "w2"})");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(Error(r)["code"], "kill_refused");
}

TEST_F(AdminEndpointsTest, KillRefusalsUnknownWorkersAndBadBodies) {
  HttpResponse r = Call("POST", "/admin/kill", R"({"worker": "w9"})");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(Error(r)["type"], "not_found_error");
  EXPECT_NE(Error(r)["message"].get<std::string>().find("w9"), std::string::npos) << r.body;
  for (const char* body : {"", "{", "[]", "{}", R"({"worker": ""})", R"({"worker": 3})",
                           R"({"worker": "w1", "signal": 9})"}) {
    r = Call("POST", "/admin/kill", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    EXPECT_EQ(Error(r)["type"], "invalid_request_error") << body;
  }
  // A worker started without --enable-fault-injection says no; it lives on.
  cluster_.set_refuse_kill(true);
  r = Call("POST", "/admin/kill", R"({"worker": "w1"})");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(Error(r)["code"], "kill_refused");
  EXPECT_NE(Error(r)["message"].get<std::string>().find("--enable-fault-injection"),
            std::string::npos)
      << r.body;
  Json cluster = Json::parse(Call("GET", "/admin/cluster").body);
  EXPECT_EQ(cluster["num_workers_alive"], 2);
  EXPECT_EQ(Call("GET", "/admin/kill").status, 405);
}

TEST_F(AdminEndpointsTest, AdminKeyIsRequiredWhenSet) {
  GatewayOptions o;
  o.admin_key = "root-secret";
  o.api_keys = {"user-key"};
  Make(o);
  HttpResponse r = Call("GET", "/admin/cluster");
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(Error(r)["code"], "invalid_admin_key");
  // An API key is not an admin key.
  EXPECT_EQ(Call("GET", "/admin/cluster", "", "Bearer user-key").status, 401);
  EXPECT_EQ(Call("POST", "/admin/drain", R"({"worker": "w1"})", "Bearer root-secre").status, 401);
  EXPECT_EQ(Call("GET", "/admin/cluster", "", "Bearer root-secret").status, 200);
  EXPECT_EQ(Call("POST", "/admin/drain", R"({"worker": "w1"})", "Bearer root-secret").status, 200);
  EXPECT_EQ(Call("POST", "/admin/kill", R"({"worker": "w1"})", "").status, 401);
  EXPECT_EQ(Call("POST", "/admin/kill", R"({"worker": "w1"})", "Bearer user-key").status, 401);
  EXPECT_EQ(Json::parse(
                Call("GET", "/admin/cluster", "", "Bearer root-secret").body)["num_workers_alive"],
            2);
  EXPECT_EQ(Call("POST", "/admin/kill", R"({"worker": "w1"})", "Bearer root-secret").status, 200);
  // ... and the admin key is not an API key.
  EXPECT_EQ(Call("GET", "/v1/models", "", "Bearer root-secret").status, 401);
  // Auth comes before the body is looked at.
  EXPECT_EQ(Call("POST", "/admin/migrate", "{", "").status, 401);
}

TEST_F(AdminEndpointsTest, WithoutAnAdminKeyOnlyAnOpenGatewayAllowsAdmin) {
  // No API keys and no admin key: as open as the rest of the API.
  EXPECT_EQ(Call("GET", "/admin/cluster").status, 200);
  GatewayOptions o;
  o.api_keys = {"user-key"};
  Make(o);
  for (const char* auth : {"", "Bearer user-key"}) {
    HttpResponse r = Call("GET", "/admin/cluster", "", auth);
    EXPECT_EQ(r.status, 403) << r.body;
    EXPECT_EQ(Error(r)["type"], "permission_error");
    EXPECT_NE(Error(r)["message"].get<std::string>().find("--admin-key"), std::string::npos)
        << r.body;
  }
  EXPECT_EQ(Call("POST", "/admin/drain", R"({"worker": "w1"})", "Bearer user-key").status, 403);
  EXPECT_EQ(Call("POST", "/admin/kill", R"({"worker": "w1"})", "Bearer user-key").status, 403);
  EXPECT_EQ(Json::parse(Call("GET", "/v1/models", "", "Bearer user-key").body)["object"], "list");
}

TEST_F(AdminEndpointsTest, SingleWorkerBackendSaysThereIsNoCluster) {
  backend_.cluster_admin_ = nullptr;
  for (auto [method, path, body] : {std::tuple{"GET", "/admin/cluster", ""},
                                    std::tuple{"POST", "/admin/migrate", R"({"request_id": "x"})"},
                                    std::tuple{"POST", "/admin/drain", R"({"worker": "w1"})"},
                                    std::tuple{"POST", "/admin/kill", R"({"worker": "w1"})"}}) {
    HttpResponse r = Call(method, path, body);
    EXPECT_EQ(r.status, 501) << path << " " << r.body;
    EXPECT_EQ(Error(r)["code"], "not_a_cluster") << path;
    EXPECT_NE(Error(r)["message"].get<std::string>().find("single worker"), std::string::npos)
        << r.body;
  }
}

TEST_F(AdminEndpointsTest, UnreachableSchedulerIs503) {
  cluster_.set_fail_with(absl::UnavailableError("failed to connect to all addresses"));
  EXPECT_EQ(Call("GET", "/admin/cluster").status, 503);
  EXPECT_EQ(Call("POST", "/admin/migrate", R"({"request_id": "cmpl-a-0"})").status, 503);
  EXPECT_EQ(Call("POST", "/admin/drain", R"({"worker": "w1"})").status, 503);
  EXPECT_EQ(Call("POST", "/admin/kill", R"({"worker": "w1"})").status, 503);
}

}  // namespace
}  // namespace ferry
