#include "benchmarks/sim/simulator.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "benchmarks/loadgen/arrivals.h"

namespace ferry::sim {
namespace {

// A bursty mix: mostly short requests, one in five long.
std::vector<SimRequest> Workload(int n, double rate, uint64_t seed) {
  absl::StatusOr<std::vector<double>> times = loadgen::ArrivalTimes({rate, 0.5, 0, seed}, n);
  EXPECT_TRUE(times.ok());
  std::mt19937_64 rng(seed);
  std::vector<SimRequest> out;
  for (int i = 0; i < n; ++i) {
    const bool long_one = rng() % 5 == 0;
    out.push_back({(*times)[i], static_cast<int>(64 + rng() % (long_one ? 4000 : 400)),
                   static_cast<int>(16 + rng() % (long_one ? 600 : 100))});
  }
  return out;
}

bool SameResults(const SimRun& a, const SimRun& b) {
  if (a.results.size() != b.results.size() || a.stats.events != b.stats.events) return false;
  for (size_t i = 0; i < a.results.size(); ++i) {
    const auto& x = a.results[i];
    const auto& y = b.results[i];
    if (x.ok != y.ok || x.ttft_s != y.ttft_s || x.e2e_s != y.e2e_s || x.itl_s != y.itl_s ||
        x.output_tokens != y.output_tokens) {
      return false;
    }
  }
  return true;
}

TEST(SimulatorTest, EveryRequestCompletesWithAllItsTokens) {
  SimOptions o;
  o.num_workers = 4;
  const std::vector<SimRequest> reqs = Workload(300, 40, 1);
  absl::StatusOr<SimRun> run = RunSimulation(o, reqs);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->results.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& r = run->results[i];
    ASSERT_TRUE(r.ok) << i << " " << r.error;
    EXPECT_EQ(r.output_tokens, reqs[i].output_tokens);
    EXPECT_EQ(static_cast<int>(r.itl_s.size()), reqs[i].output_tokens - 1);
    EXPECT_GT(r.ttft_s, 0);
    EXPECT_GE(r.e2e_s, r.ttft_s);
  }
  EXPECT_GT(run->duration_s, 0);
  EXPECT_GT(run->stats.steps, 0);
}

TEST(SimulatorTest, SameInputsGiveTheSameResults) {
  SimOptions o;
  o.num_workers = 6;
  o.migration = true;
  const std::vector<SimRequest> reqs = Workload(400, 60, 7);
  absl::StatusOr<SimRun> a = RunSimulation(o, reqs);
  absl::StatusOr<SimRun> b = RunSimulation(o, reqs);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(SameResults(*a, *b));
  absl::StatusOr<SimRun> c = RunSimulation(o, Workload(400, 60, 8));
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(SameResults(*a, *c));
}

TEST(SimulatorTest, RoundRobinSpreadsRequestsEvenly) {
  SimOptions o;
  o.num_workers = 4;
  o.dispatch = "round-robin";
  // All at once and identical: each worker gets every fourth request, so
  // requests 4k .. 4k+3 are served alike, one on each worker.
  std::vector<SimRequest> reqs(40, SimRequest{0, 100, 10});
  absl::StatusOr<SimRun> run = RunSimulation(o, reqs);
  ASSERT_TRUE(run.ok());
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(run->results[i].ttft_s, run->results[i - i % 4].ttft_s);
  EXPECT_LT(run->results[0].ttft_s, run->results[4].ttft_s);
}

TEST(SimulatorTest, DisaggregationHandsLongPromptsToDecodeWorkers) {
  SimOptions o;
  o.num_workers = 4;
  o.num_prefill_workers = 1;
  o.disaggregation = true;
  o.disaggregation_options.min_prompt_tokens = 256;
  std::vector<SimRequest> reqs;
  for (int i = 0; i < 20; ++i) reqs.push_back({i * 0.05, i % 2 == 0 ? 1000 : 100, 50});
  absl::StatusOr<SimRun> run = RunSimulation(o, reqs);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->stats.handoffs, 10);
  for (const auto& r : run->results) {
    EXPECT_TRUE(r.ok);
    EXPECT_EQ(r.output_tokens, 50);
  }
}

TEST(SimulatorTest, MigrationMovesRequestsOffALoadedWorker) {
  SimOptions o;
  o.num_workers = 2;
  o.dispatch = "round-robin";
  o.migration = true;
  o.engine.num_blocks = 2000;
  o.migration_options.cooldown = absl::ZeroDuration();
  // Long requests land on worker 0, short ones on worker 1: worker 1 drains
  // and the balancer moves work over.
  std::vector<SimRequest> reqs;
  for (int i = 0; i < 40; ++i) reqs.push_back({0, i % 2 == 0 ? 1500 : 50, i % 2 == 0 ? 400 : 4});
  absl::StatusOr<SimRun> run = RunSimulation(o, reqs);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_GT(run->stats.migrations_done, 0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_TRUE(run->results[i].ok);
    EXPECT_EQ(run->results[i].output_tokens, reqs[i].output_tokens);
  }
}

TEST(SimulatorTest, TooLongRequestsAreRejectedNotHung) {
  SimOptions o;
  o.num_workers = 1;
  o.engine.num_blocks = 10;
  absl::StatusOr<SimRun> run = RunSimulation(o, {SimRequest{0, 1000, 10}, SimRequest{0, 50, 10}});
  ASSERT_TRUE(run.ok());
  EXPECT_FALSE(run->results[0].ok);
  EXPECT_EQ(run->results[0].error, "too_long");
  EXPECT_TRUE(run->results[1].ok);
  EXPECT_EQ(run->stats.rejected, 1);
}

TEST(SimulatorTest, BadOptionsAreErrors) {
  const std::vector<SimRequest> reqs = {SimRequest{0, 10, 10}};
  SimOptions o;
  o.num_workers = 0;
  EXPECT_EQ(RunSimulation(o, reqs).status().code(), absl::StatusCode::kInvalidArgument);
  o = SimOptions{};
  o.profile = "nope";
  EXPECT_EQ(RunSimulation(o, reqs).status().code(), absl::StatusCode::kInvalidArgument);
  o = SimOptions{};
  o.dispatch = "random";
  EXPECT_EQ(RunSimulation(o, reqs).status().code(), absl::StatusCode::kInvalidArgument);
  o = SimOptions{};
  o.disaggregation = true;  // no prefill workers
  EXPECT_EQ(RunSimulation(o, reqs).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunSimulation(SimOptions{}, {SimRequest{0, 0, 10}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::sim
