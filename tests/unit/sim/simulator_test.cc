#include "benchmarks/sim/simulator.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "benchmarks/loadgen/arrivals.h"
#include "benchmarks/loadgen/dataset.h"
#include "benchmarks/loadgen/metrics.h"
#include "benchmarks/sim/sim_block_hashes.h"

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

// The prefix set (`groups` system prompts of `prefix_len` tokens, each
// request's own 64 after it) at `rate`, with its block hashes.
std::vector<SimRequest> SharedPrefixWorkload(int n, int groups, int prefix_len, double rate) {
  loadgen::DatasetOptions d;
  d.name = "prefix";
  d.num_prompts = n;
  d.num_prefixes = groups;
  d.prefix_len = prefix_len;
  d.input_len = 64;
  d.output_len = 32;
  d.seed = 5;
  absl::StatusOr<std::vector<loadgen::BenchRequest>> set = loadgen::LoadDataset(d);
  absl::StatusOr<std::vector<double>> times = loadgen::ArrivalTimes({rate, 1.0, 0, 5}, n);
  EXPECT_TRUE(set.ok() && times.ok());
  std::vector<SimRequest> out;
  for (int i = 0; i < n; ++i) {
    const loadgen::BenchRequest& b = (*set)[i];
    out.push_back({(*times)[i], b.input_tokens, b.output_tokens, SimBlockHashes(b, i, 16)});
  }
  return out;
}

double MeanTtft(const SimRun& run) {
  double sum = 0;
  for (const auto& r : run.results) sum += r.ttft_s;
  return sum / static_cast<double>(run.results.size());
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

// Every worker caches only some of the 48 system prompts: least-loaded
// spreads each group over all of them and keeps missing; prefix-aware
// sends a group where the index says it is cached.
TEST(SimulatorTest, PrefixAwareDispatchBeatsLeastLoadedOnSharedPrefixes) {
  const std::vector<SimRequest> reqs = SharedPrefixWorkload(3000, 48, 1024, 60);
  SimOptions o;
  o.num_workers = 6;
  o.engine.num_blocks = 1500;  // 24,000 tokens: a third of the prompts
  o.dispatch = "least-loaded";
  absl::StatusOr<SimRun> balanced = RunSimulation(o, reqs);
  o.dispatch = "prefix-aware";
  absl::StatusOr<SimRun> aware = RunSimulation(o, reqs);
  ASSERT_TRUE(balanced.ok() && aware.ok());
  for (const SimRun* run : {&*balanced, &*aware}) {
    for (const auto& r : run->results) ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(run->stats.prefix_prompt_tokens, 3000 * (1024 + 64));
    EXPECT_EQ(run->stats.blocks_held_at_end, 0);
    EXPECT_GT(run->stats.cached_blocks_evicted, 0);
  }
  EXPECT_GT(aware->stats.prefix_hit_rate(), balanced->stats.prefix_hit_rate() + 0.1);
  const loadgen::BenchSummary a = loadgen::Summarize(aware->results, aware->duration_s, {});
  const loadgen::BenchSummary b = loadgen::Summarize(balanced->results, balanced->duration_s, {});
  EXPECT_LT(a.ttft_ms.mean, 0.8 * b.ttft_ms.mean);
  EXPECT_LT(a.ttft_ms.median, b.ttft_ms.median);
  EXPECT_LT(MeanTtft(*aware), MeanTtft(*balanced));
}

TEST(SimulatorTest, PrefixCachingIsDeterministicAndCutsTtft) {
  const std::vector<SimRequest> reqs = SharedPrefixWorkload(800, 8, 1024, 40);
  SimOptions o;
  o.num_workers = 4;
  o.dispatch = "prefix-aware";
  o.migration = true;
  absl::StatusOr<SimRun> a = RunSimulation(o, reqs);
  absl::StatusOr<SimRun> b = RunSimulation(o, reqs);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(SameResults(*a, *b));
  EXPECT_EQ(a->stats.prefix_hit_tokens, b->stats.prefix_hit_tokens);
  EXPECT_GT(a->stats.prefix_hit_rate(), 0.8);
  EXPECT_EQ(a->stats.blocks_held_at_end, 0);
  o.engine.prefix_caching = false;
  absl::StatusOr<SimRun> off = RunSimulation(o, reqs);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->stats.prefix_hit_tokens, 0);
  EXPECT_LT(MeanTtft(*a), MeanTtft(*off));
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
  // Three hashes for a prompt with two full blocks.
  EXPECT_EQ(RunSimulation(SimOptions{}, {SimRequest{0, 40, 10, {1, 2, 3}}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::sim
