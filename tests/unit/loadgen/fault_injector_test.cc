#include "benchmarks/loadgen/fault_injector.h"

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

TEST(FaultInjectorTest, DoesNothingWhenOff) {
  FaultInjector f("http://127.0.0.1:1", {});
  f.Start();
  FaultReport r = f.Stop();
  EXPECT_EQ(r.migrations_attempted, 0);
  EXPECT_EQ(r.idle_ticks, 0);
}

}  // namespace
}  // namespace ferry::loadgen
