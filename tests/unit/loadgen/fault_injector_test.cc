#include "benchmarks/loadgen/fault_injector.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace ferry::loadgen {
namespace {

using Json = nlohmann::json;

Json Worker(const std::string& id, bool alive, std::vector<std::string> requests,
            bool draining = false) {
  return {{"id", id}, {"alive", alive}, {"draining", draining}, {"requests", requests}};
}

TEST(PickRequestToMigrateTest, TakesFromTheBusiestLiveWorker) {
  Json cluster = {{"workers",
                   {Worker("a", true, {"r1"}), Worker("b", true, {"r2", "r3"}),
                    Worker("c", false, {"x", "y", "z"})}}};
  EXPECT_EQ(PickRequestToMigrate(cluster), "r2");
}

TEST(PickRequestToMigrateTest, NothingWithoutAnotherWorkerOrWork) {
  EXPECT_EQ(PickRequestToMigrate({{"workers", {Worker("a", true, {"r1"})}}}), std::nullopt);
  EXPECT_EQ(PickRequestToMigrate({{"workers", {Worker("a", true, {}), Worker("b", true, {})}}}),
            std::nullopt);
  EXPECT_EQ(
      PickRequestToMigrate({{"workers", {Worker("a", true, {"r"}, true), Worker("b", true, {})}}}),
      std::nullopt);
  EXPECT_EQ(PickRequestToMigrate(Json::parse("null")), std::nullopt);
  EXPECT_EQ(PickRequestToMigrate({{"error", "x"}}), std::nullopt);
}

TEST(FaultInjectorTest, PickWorkerToKillTakesTheBusiestLiveWorkerWithItsRequests) {
  Json cluster = {
      {"workers",
       {Worker("a", true, {"r1"}), Worker("b", true, {"r2", "r3"}),
        Worker("c", false, {"x", "y", "z"}), Worker("d", true, {"q1", "q2", "q3"}, true)}}};
  cluster["workers"][1]["address"] = "127.0.0.1:7001";
  std::optional<WorkerPick> pick = PickWorkerToKill(cluster);
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->id, "b");
  EXPECT_EQ(pick->address, "127.0.0.1:7001");
  EXPECT_EQ(pick->requests, (std::vector<std::string>{"r2", "r3"}));
}

TEST(FaultInjectorTest, PickWorkerToKillAnIdleClusterStillLosesAWorker) {
  std::optional<WorkerPick> pick =
      PickWorkerToKill({{"workers", {Worker("a", true, {}), Worker("b", true, {})}}});
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->id, "a");  // the first of equals
  EXPECT_TRUE(pick->requests.empty());
}

TEST(FaultInjectorTest, PickWorkerToKillLeavesOneWorkerToRecoverOn) {
  EXPECT_EQ(PickWorkerToKill({{"workers", {Worker("a", true, {"r1"})}}}), std::nullopt);
  EXPECT_EQ(PickWorkerToKill({{"workers", {Worker("a", true, {"r1"}), Worker("b", false, {})}}}),
            std::nullopt);
  // A worker this run already killed counts as dead while still listed.
  Json cluster = {{"workers", {Worker("a", true, {"r1", "r2"}), Worker("b", true, {"r3"})}}};
  EXPECT_EQ(PickWorkerToKill(cluster, {"a"}), std::nullopt);
  Json three = {
      {"workers",
       {Worker("a", true, {"r1", "r2"}), Worker("b", true, {"r3"}), Worker("c", true, {})}}};
  ASSERT_TRUE(PickWorkerToKill(three, {"a"}).has_value());
  EXPECT_EQ(PickWorkerToKill(three, {"a"})->id, "b");
  // A draining worker is alive (it counts) but is not picked.
  EXPECT_EQ(
      PickWorkerToKill({{"workers", {Worker("a", true, {"r"}, true), Worker("b", true, {})}}})->id,
      "b");
  EXPECT_EQ(PickWorkerToKill(Json::parse("null")), std::nullopt);
  EXPECT_EQ(PickWorkerToKill({{"workers", {{{"alive", true}}, {{"alive", true}}}}}), std::nullopt);
}

TEST(FaultInjectorTest, DoesNothingWhenOff) {
  FaultInjector f("http://127.0.0.1:1", {});
  f.Start();
  FaultReport r = f.Stop();
  EXPECT_EQ(r.migrations_attempted, 0);
  EXPECT_EQ(r.idle_ticks, 0);
  EXPECT_EQ(r.kills_attempted, 0);
}

TEST(FaultInjectorTest, AKillWithNoGatewayIsCountedAsAFailure) {
  FaultOptions options;
  options.kill_worker_at_s = {0.0};
  FaultInjector f("http://127.0.0.1:1", options);
  f.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  FaultReport r = f.Stop();
  EXPECT_EQ(r.kills_attempted, 1);
  EXPECT_EQ(r.kills_ok, 0);
  ASSERT_EQ(r.kill_failures.size(), 1u);
  EXPECT_EQ(r.kill_failures.begin()->first.rfind("cluster_", 0), 0u)
      << r.kill_failures.begin()->first;
  Json j = FaultReportJson(r);
  EXPECT_EQ(j["kills_attempted"], 1);
  EXPECT_EQ(j["kills"], Json::array());
  EXPECT_EQ(j["kill_impact"]["tokens_lost"], 0);
}

}  // namespace
}  // namespace ferry::loadgen
