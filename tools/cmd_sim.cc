// `ferry sim`: plans a cluster without running one. A discrete-event
// simulation (benchmarks/sim) runs the real scheduler policies against N
// simulated workers with an engine cost model, on the same datasets and
// arrival schedules as `ferry bench`, and reports the same table, JSON and
// plot.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "benchmarks/loadgen/arrivals.h"
#include "benchmarks/loadgen/dataset.h"
#include "benchmarks/loadgen/metrics.h"
#include "benchmarks/loadgen/report.h"
#include "benchmarks/sim/sim_block_hashes.h"
#include "benchmarks/sim/simulator.h"
#include "engine/sim_cost_model.h"
#include "scheduler/policy/dispatch_policy.h"
#include "tools/commands.h"
#include "tools/dataset_flags.h"
#include "tools/flags.h"

namespace ferry {
namespace {

using Json = nlohmann::json;

struct SimFlags {
  sim::SimOptions sim;
  loadgen::DatasetOptions dataset;
  int64_t workers = 8, prefill_workers = 0;
  int64_t block_size = 16, kv_blocks = 0, max_num_batched_tokens = 2048, max_num_seqs = 256;
  bool chunked_prefill = true, prefix_caching = true;
  double heartbeat_ms = 50, migration_interval_ms = 100, migration_gap = 16;
  double prefix_freeness_gap = PrefixAwareOptions{}.max_freeness_gap;
  int64_t prefix_queue_gap = PrefixAwareOptions{}.max_queue_gap;
  int64_t min_prefill_tokens = 64;
  std::string request_rate = "inf", sweep;
  double burstiness = 1.0, ramp_up_s = 0;
  int64_t seed = 0;
  DatasetFlagValues dataset_values{.num_prompts = 1000};
  std::string slo, json_path, plot_path;
  bool progress = true, list_profiles = false;
};

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return code;
}

absl::StatusOr<std::vector<double>> Rates(const SimFlags& f) {
  std::vector<double> rates;
  for (absl::string_view part : absl::StrSplit(f.sweep.empty() ? f.request_rate : f.sweep, ',', absl::SkipWhitespace())) {
    double rate = 0;
    if (part == "inf") {
      rate = std::numeric_limits<double>::infinity();
    } else if (!absl::SimpleAtod(part, &rate) || !(rate > 0)) {
      return absl::InvalidArgumentError("--request-rate/--sweep: expected rates > 0 or inf, got '" +
                                        std::string(part) + "'");
    }
    rates.push_back(rate);
  }
  if (rates.empty()) return absl::InvalidArgumentError("--sweep: no rates given");
  if (f.dataset.name == "trace" && (!f.sweep.empty() || f.request_rate != "inf")) {
    return absl::InvalidArgumentError("--dataset trace replays the trace's own arrival times; scale them with "
                                      "--trace-time-scale");
  }
  return rates;
}

absl::Status ApplyFlags(SimFlags& f) {
  auto in_int = [](int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; };
  if (!in_int(f.workers, 1, 100000)) return absl::InvalidArgumentError("--workers must be in [1, 100000]");
  if (!in_int(f.block_size, 1, 1024)) return absl::InvalidArgumentError("--block-size must be in [1, 1024]");
  if (!in_int(f.max_num_batched_tokens, 1, 1 << 20) || !in_int(f.max_num_seqs, 1, 1 << 16)) {
    return absl::InvalidArgumentError("--max-num-batched-tokens and --max-num-seqs must be positive");
  }
  if (f.kv_blocks < 0) return absl::InvalidArgumentError("--kv-blocks must be >= 0");
  if (!(f.heartbeat_ms > 0) || !(f.migration_interval_ms > 0)) {
    return absl::InvalidArgumentError("--heartbeat-ms and --migration-interval-ms must be positive");
  }
  if (!in_int(f.dataset_values.num_prompts, 0, 10000000)) return absl::InvalidArgumentError("--num-prompts must be in [0, 1e7]");
  if (f.sim.disaggregation && (f.prefill_workers <= 0 || f.prefill_workers >= f.workers)) {
    return absl::InvalidArgumentError(
        "--disaggregate needs --prefill-workers between 1 and --workers - 1 (the rest decode)");
  }
  sim::SimOptions& s = f.sim;
  s.num_workers = static_cast<int>(f.workers);
  s.num_prefill_workers = static_cast<int>(f.prefill_workers);
  s.engine.block_size = static_cast<int>(f.block_size);
  s.engine.num_blocks = f.kv_blocks;
  s.engine.max_num_batched_tokens = static_cast<int>(f.max_num_batched_tokens);
  s.engine.max_num_seqs = static_cast<int>(f.max_num_seqs);
  s.engine.chunked_prefill = f.chunked_prefill;
  s.engine.prefix_caching = f.prefix_caching;
  s.heartbeat_s = f.heartbeat_ms / 1e3;
  s.migration_interval_s = f.migration_interval_ms / 1e3;
  s.migration_options.freeness_gap_threshold = f.migration_gap;
  if (!(f.prefix_freeness_gap >= 0) || !in_int(f.prefix_queue_gap, 0, 1 << 20)) {
    return absl::InvalidArgumentError("--prefix-freeness-gap and --prefix-queue-gap must be >= 0");
  }
  s.prefix_aware_options.max_freeness_gap = f.prefix_freeness_gap;
  s.prefix_aware_options.max_queue_gap = static_cast<int>(f.prefix_queue_gap);
  s.disaggregation_options.min_prompt_tokens = f.min_prefill_tokens;
  ApplyDatasetFlags(f.dataset_values, f.seed, &f.dataset);
  return absl::OkStatus();
}

Json StatsJson(const sim::SimStats& s, double wall_s) {
  return {{"events", s.events},
          {"steps", s.steps},
          {"preemptions", s.preemptions},
          {"migrations_started", s.migrations_started},
          {"migrations_done", s.migrations_done},
          {"migrations_aborted", s.migrations_aborted},
          {"handoffs", s.handoffs},
          {"rejected", s.rejected},
          {"simulated_s", s.simulated_s},
          {"mean_worker_busy", s.mean_worker_busy},
          {"prefix_prompt_tokens", s.prefix_prompt_tokens},
          {"prefix_hit_tokens", s.prefix_hit_tokens},
          {"prefix_hit_rate", s.prefix_hit_rate()},
          {"cached_blocks_evicted", s.cached_blocks_evicted},
          {"blocks_held_at_end", s.blocks_held_at_end},
          {"wall_s", wall_s}};
}

Json RequestsJson(const std::vector<loadgen::RequestResult>& results) {
  Json out = Json::array();
  for (const loadgen::RequestResult& r : results) {
    Json j = {{"scheduled_s", r.scheduled_s}, {"ttft_ms", r.ttft_s * 1e3}, {"e2e_ms", r.e2e_s * 1e3},
              {"output_tokens", r.output_tokens}, {"prompt_tokens", r.prompt_tokens}, {"ok", r.ok}};
    if (!r.ok) j["error"] = r.error;
    out.push_back(std::move(j));
  }
  return out;
}

Json ConfigJson(const SimFlags& f, size_t num_requests) {
  return {{"workers", f.workers},
          {"prefill_workers", f.prefill_workers},
          {"profile", f.sim.profile},
          {"dispatch", f.sim.dispatch},
          {"prefix_freeness_gap", f.prefix_freeness_gap},
          {"prefix_queue_gap", f.prefix_queue_gap},
          {"migration", f.sim.migration},
          {"disaggregate", f.sim.disaggregation},
          {"chunked_prefill", f.chunked_prefill},
          {"prefix_caching", f.prefix_caching},
          {"block_size", f.block_size},
          {"kv_blocks", f.kv_blocks},
          {"max_num_batched_tokens", f.max_num_batched_tokens},
          {"max_num_seqs", f.max_num_seqs},
          {"heartbeat_ms", f.heartbeat_ms},
          {"dataset", f.dataset.name},
          {"dataset_path", f.dataset.path},
          {"num_prompts", num_requests},
          {"input_len", f.dataset.input_len},
          {"output_len", f.dataset.output_len},
          {"burstiness", f.burstiness},
          {"seed", f.seed},
          {"slo", f.slo}};
}

int RunSimMain(SimFlags& f) {
  if (f.list_profiles) {
    for (const std::string& name : SimProfileNames()) {
      absl::StatusOr<SimProfile> p = LookupSimProfile(name);
      if (p.ok()) {
        std::printf("%-20s %s; KV %lld tokens\n", name.c_str(), p->description.c_str(),
                    static_cast<long long>(p->kv_capacity_tokens));
      } else {
        std::printf("%-20s (%s)\n", name.c_str(), std::string(p.status().message()).c_str());
      }
    }
    return 0;
  }
  if (absl::Status s = ApplyFlags(f); !s.ok()) return Fail(std::string(s.message()), 2);
  absl::StatusOr<SimProfile> profile = LookupSimProfile(f.sim.profile);
  if (!profile.ok()) return Fail(std::string(profile.status().message()), 2);
  absl::StatusOr<loadgen::Slo> slo = loadgen::ParseSlo(f.slo);
  if (!slo.ok()) return Fail(std::string(slo.status().message()), 2);
  absl::StatusOr<std::vector<double>> rates = Rates(f);
  if (!rates.ok()) return Fail(std::string(rates.status().message()), 2);
  absl::StatusOr<std::vector<loadgen::BenchRequest>> dataset = loadgen::LoadDataset(f.dataset);
  if (!dataset.ok()) return Fail(std::string(dataset.status().message()), 2);
  const bool replay = f.dataset.name == "trace";
  const bool tty = f.progress && isatty(fileno(stderr));
  if (tty) {
    f.sim.progress = [](int64_t done, int64_t total) {
      std::fprintf(stderr, "\r  simulated %lld / %lld requests", static_cast<long long>(done),
                   static_cast<long long>(total));
    };
  }
  std::printf("ferry sim: %lld workers%s, %s, dispatch %s%s, chunked prefill %s\n",
              static_cast<long long>(f.workers),
              f.sim.disaggregation ? (" (" + std::to_string(f.prefill_workers) + " prefill)").c_str() : "",
              profile->description.c_str(), f.sim.dispatch.c_str(), f.sim.migration ? " + migration" : "",
              f.chunked_prefill ? "on" : "off");
  // Lengths and block hashes once; arrivals per rate below.
  std::vector<sim::SimRequest> requests(dataset->size());
  bool any_hashes = false;
  for (size_t k = 0; k < dataset->size(); ++k) {
    const loadgen::BenchRequest& b = (*dataset)[k];
    requests[k].input_tokens = std::max(1, b.input_tokens);
    requests[k].output_tokens = std::max(1, b.output_tokens);
    requests[k].block_hashes = sim::SimBlockHashes(b, k, static_cast<int>(f.block_size));
    any_hashes |= !requests[k].block_hashes.empty();
  }
  std::vector<loadgen::SweepPoint> points;
  Json runs = Json::array();
  for (size_t i = 0; i < rates->size(); ++i) {
    const double rate = (*rates)[i];
    std::vector<double> arrivals;
    if (replay) {
      for (const loadgen::BenchRequest& r : *dataset) arrivals.push_back(r.arrival_s.value_or(0));
    } else {
      absl::StatusOr<std::vector<double>> times = loadgen::ArrivalTimes(
          {rate, f.burstiness, f.ramp_up_s, static_cast<uint64_t>(f.seed)}, static_cast<int>(dataset->size()));
      if (!times.ok()) return Fail(std::string(times.status().message()), 2);
      arrivals = std::move(*times);
    }
    for (size_t k = 0; k < requests.size(); ++k) requests[k].arrival_s = arrivals[k];
    const auto wall_start = std::chrono::steady_clock::now();
    absl::StatusOr<sim::SimRun> run = sim::RunSimulation(f.sim, requests);
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    if (tty) std::fprintf(stderr, "\n");
    if (!run.ok()) return Fail(std::string(run.status().message()), 2);
    loadgen::SweepPoint point{replay ? std::numeric_limits<double>::quiet_NaN() : rate,
                              loadgen::Summarize(run->results, run->duration_s, *slo)};
    loadgen::PrintTable(stdout, point, *slo);
    const sim::SimStats& st = run->stats;
    std::printf("  sim: %lld events, %lld steps, %lld preemptions, migrations %lld done / %lld aborted, "
                "%lld PD hand-offs, %lld rejected; worker busy %.1f %%; %.1f s simulated in %.2f s\n",
                static_cast<long long>(st.events), static_cast<long long>(st.steps),
                static_cast<long long>(st.preemptions), static_cast<long long>(st.migrations_done),
                static_cast<long long>(st.migrations_aborted), static_cast<long long>(st.handoffs),
                static_cast<long long>(st.rejected), 100 * st.mean_worker_busy, st.simulated_s, wall_s);
    if (any_hashes) {
      std::printf("  prefix cache: %.1f %% of prompt tokens cached (%lld of %lld), %lld cached blocks evicted\n",
                  100 * st.prefix_hit_rate(), static_cast<long long>(st.prefix_hit_tokens),
                  static_cast<long long>(st.prefix_prompt_tokens), static_cast<long long>(st.cached_blocks_evicted));
    }
    std::fflush(stdout);
    runs.push_back({{"request_rate", replay ? Json("trace") : std::isinf(rate) ? Json("inf") : Json(rate)},
                    {"summary", loadgen::SummaryJson(point.summary)},
                    {"sim", StatsJson(st, wall_s)},
                    {"requests", RequestsJson(run->results)}});
    points.push_back(std::move(point));
  }
  if (points.size() > 1) loadgen::PrintSweepTable(stdout, points);
  if (!f.json_path.empty()) {
    std::ofstream out(f.json_path);
    out << Json{{"config", ConfigJson(f, dataset->size())}, {"runs", runs}}.dump(2) << "\n";
    if (!out) return Fail("cannot write " + f.json_path);
  }
  if (!f.plot_path.empty()) {
    if (absl::Status s = loadgen::WritePlot(f.plot_path, points); !s.ok()) return Fail(std::string(s.message()));
  }
  return 0;
}

}  // namespace

int RunSim(int argc, char** argv) {
  SimFlags f;
  FlagParser flags("sim",
                   "simulate a cluster: the real scheduler policies against N simulated workers with an "
                   "engine cost model (no model, no processes)");
  flags.AddInt("workers", &f.workers, "simulated workers");
  flags.AddInt("prefill-workers", &f.prefill_workers, "with --disaggregate: workers that prefill (the rest decode)");
  flags.AddString("profile", &f.sim.profile,
                  "engine cost model: cpu-small or GPU-MODEL, e.g. h100-llama3-8b (--list-profiles)");
  flags.AddBool("list-profiles", &f.list_profiles, "print the cost-model profiles and exit");
  flags.AddString("dispatch", &f.sim.dispatch, "dispatch policy: round-robin, least-loaded or prefix-aware");
  flags.AddDouble("prefix-freeness-gap", &f.prefix_freeness_gap,
                  "prefix-aware: skip the worker caching the prompt when its freeness is this far below the "
                  "least-loaded one's");
  flags.AddInt("prefix-queue-gap", &f.prefix_queue_gap,
               "prefix-aware: skip the worker caching the prompt when its queue is this much longer");
  flags.AddBool("migration", &f.sim.migration, "Llumnix-style live migration between workers to balance load");
  flags.AddDouble("migration-gap", &f.migration_gap, "freeness gap (blocks per request) that triggers a migration");
  flags.AddDouble("migration-interval-ms", &f.migration_interval_ms, "how often the migration policy runs");
  flags.AddBool("disaggregate", &f.sim.disaggregation,
                "prefill/decode disaggregation: prompts prefill on prefill workers, then move to decode workers");
  flags.AddInt("min-prefill-tokens", &f.min_prefill_tokens,
               "with --disaggregate: shorter prompts stay colocated on a decode worker");
  flags.AddBool("chunked-prefill", &f.chunked_prefill,
                "mix prefill chunks into decode steps (--chunked-prefill=false: prefill steps stall decodes)");
  flags.AddBool("prefix-caching", &f.prefix_caching,
                "reuse cached prompt blocks (prefix and Mooncake trace datasets, which name shared prefixes)");
  flags.AddInt("block-size", &f.block_size, "tokens per KV block");
  flags.AddInt("kv-blocks", &f.kv_blocks, "KV blocks per worker (0: what the profile's memory holds)");
  flags.AddInt("max-num-batched-tokens", &f.max_num_batched_tokens, "token budget of one engine step");
  flags.AddInt("max-num-seqs", &f.max_num_seqs, "sequences running at once per worker");
  flags.AddDouble("heartbeat-ms", &f.heartbeat_ms, "interval of the workers' load reports to the scheduler");
  flags.AddString("request-rate", &f.request_rate, "mean requests per second, or inf for all at once");
  flags.AddDouble("burstiness", &f.burstiness, "Gamma shape of inter-arrival times: 1 Poisson, <1 burstier");
  flags.AddDouble("ramp-up", &f.ramp_up_s, "seconds over which the rate grows linearly from 0");
  flags.AddString("sweep", &f.sweep, "comma-separated request rates, one simulation each");
  flags.AddInt("seed", &f.seed, "seed for arrivals and datasets (the simulation itself has no randomness)");
  AddDatasetFlags(flags, "requests to simulate (trace: at most this many rows, 0 all)", &f.dataset_values,
                  &f.dataset);
  flags.AddString("slo", &f.slo, "goodput SLO, e.g. ttft:500,tpot:50 (milliseconds)");
  flags.AddString("json", &f.json_path, "write the results as JSON to this file");
  flags.AddString("plot", &f.plot_path, "write a plot (latency vs throughput, TTFT CDF): .svg, or .png with gnuplot");
  flags.AddBool("progress", &f.progress, "show progress when stderr is a terminal");
  return RunWithFlags(flags, argc, argv, [&] { return RunSimMain(f); });
}

}  // namespace ferry
