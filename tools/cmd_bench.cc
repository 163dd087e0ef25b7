// `ferry bench`: load-tests an OpenAI-compatible endpoint (Ferry, vLLM,
// llama.cpp's server) with streaming requests on a Poisson or Gamma arrival
// schedule, and reports TTFT, TPOT, ITL, E2E, throughput and goodput as a
// table, JSON and an SVG plot; optionally it injects faults through Ferry's
// admin API (migrations, worker kills) and reports what they cost. The work
// is in benchmarks/loadgen.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "benchmarks/loadgen/arrivals.h"
#include "benchmarks/loadgen/dataset.h"
#include "benchmarks/loadgen/fault_injector.h"
#include "benchmarks/loadgen/load_runner.h"
#include "benchmarks/loadgen/metrics.h"
#include "benchmarks/loadgen/recovery_check.h"
#include "benchmarks/loadgen/report.h"
#include "tools/commands.h"
#include "tools/dataset_flags.h"
#include "tools/flags.h"

namespace ferry {
namespace {

using loadgen::SweepPoint;
using Json = nlohmann::json;

struct BenchFlags {
  loadgen::TargetOptions target;
  loadgen::DatasetOptions dataset;
  std::string request_rate = "inf";
  double burstiness = 1.0;
  double ramp_up_s = 0;
  int64_t max_concurrency = 0;
  int64_t max_threads = 1024;
  int64_t seed = 0;
  DatasetFlagValues dataset_values;
  std::string slo, sweep, json_path, plot_path;
  std::string kill_worker_at;
  bool progress = true;
  bool fail_on_error = false;
  loadgen::FaultOptions fault;
};

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return code;
}

bool ParseRate(absl::string_view text, double* rate) {
  if (text == "inf") {
    *rate = std::numeric_limits<double>::infinity();
    return true;
  }
  return absl::SimpleAtod(text, rate) && *rate > 0;
}

Json RequestsJson(const std::vector<loadgen::RequestResult>& results) {
  Json out = Json::array();
  for (const loadgen::RequestResult& r : results) {
    Json j = {{"scheduled_s", r.scheduled_s},
              {"start_s", r.start_s},
              {"ttft_ms", r.ttft_s * 1e3},
              {"e2e_ms", r.e2e_s * 1e3},
              {"output_tokens", r.output_tokens},
              {"prompt_tokens", r.prompt_tokens},
              {"ok", r.ok}};
    if (!r.ok) j["error"] = r.error;
    if (!r.error_detail.empty()) j["error_detail"] = r.error_detail;
    out.push_back(std::move(j));
  }
  return out;
}

void ApplyDatasetFlags(BenchFlags& f) { ferry::ApplyDatasetFlags(f.dataset_values, f.seed, &f.dataset); }

// The rates of --sweep, or the one of --request-rate.
absl::StatusOr<std::vector<double>> Rates(const BenchFlags& f) {
  std::vector<double> rates;
  for (absl::string_view part :
       absl::StrSplit(f.sweep.empty() ? f.request_rate : f.sweep, ',', absl::SkipWhitespace())) {
    double rate = 0;
    if (!ParseRate(part, &rate)) {
      return absl::InvalidArgumentError("--request-rate/--sweep: expected rates > 0 or inf, got '" +
                                        std::string(part) + "'");
    }
    rates.push_back(rate);
  }
  if (rates.empty()) return absl::InvalidArgumentError("--sweep: no rates given");
  if (f.dataset.name == "trace" && (!f.sweep.empty() || f.request_rate != "inf")) {
    return absl::InvalidArgumentError(
        "--dataset trace replays the trace's own arrival times; scale them with "
        "--trace-time-scale");
  }
  return rates;
}

// The requests and arrival times of sweep point `index` at `rate`.
absl::Status Prepare(BenchFlags& f, size_t index, double rate,
                     std::vector<loadgen::BenchRequest>* requests, std::vector<double>* arrivals) {
  loadgen::DatasetOptions& d = f.dataset;
  if (index == 0 || d.name == "random" || d.name == "prefix") {
    // Fresh synthetic prompts for each point of a sweep, so a server's
    // prefix cache does not answer a later point from an earlier one.
    d.seed = static_cast<uint64_t>(f.seed) + index;
    absl::StatusOr<std::vector<loadgen::BenchRequest>> loaded = loadgen::LoadDataset(d);
    if (!loaded.ok()) return loaded.status();
    *requests = std::move(*loaded);
  }
  arrivals->clear();
  if (d.name == "trace") {
    for (const loadgen::BenchRequest& r : *requests) arrivals->push_back(r.arrival_s.value_or(0));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<double>> times =
      loadgen::ArrivalTimes({rate, f.burstiness, f.ramp_up_s, static_cast<uint64_t>(f.seed)},
                            static_cast<int>(requests->size()));
  if (!times.ok()) return times.status();
  *arrivals = std::move(*times);
  return absl::OkStatus();
}

// The run times of --kill-worker-at ("2" or "1.5,4"), each >= 0.
absl::StatusOr<std::vector<double>> KillTimes(const std::string& text) {
  std::vector<double> times;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    double t = 0;
    if (!absl::SimpleAtod(part, &t) || !(t >= 0) || std::isinf(t)) {
      return absl::InvalidArgumentError("--kill-worker-at: expected seconds >= 0, got '" +
                                        std::string(part) + "'");
    }
    times.push_back(t);
  }
  return times;
}

// Runs the streams that were in flight at a kill again, without faults and
// a few at a time, and compares their tokens with what the load got.
void CheckTokens(const loadgen::TargetOptions& target,
                 const std::vector<loadgen::BenchRequest>& requests,
                 const std::vector<loadgen::RequestResult>& results, loadgen::KillImpact* impact) {
  if (impact->to_check.empty()) return;
  std::fprintf(stderr, "checking %zu streams in flight at a kill against a fault-free rerun\n",
               impact->to_check.size());
  std::vector<loadgen::BenchRequest> again;
  for (int i : impact->to_check) again.push_back(requests[i]);
  loadgen::LoadOptions options;
  options.max_concurrency = 8;
  options.progress = false;
  options.keep_output = true;
  absl::StatusOr<loadgen::LoadRun> rerun =
      loadgen::RunLoad(target, again, std::vector<double>(again.size(), 0.0), options);
  if (!rerun.ok()) {
    std::fprintf(stderr, "warning: the fault-free rerun failed: %s\n",
                 std::string(rerun.status().message()).c_str());
    return;
  }
  loadgen::CompareWithReferences(results, rerun->results, impact);
}

Json ConfigJson(const BenchFlags& f, size_t num_requests) {
  return {{"url", f.target.url},
          {"endpoint", f.target.endpoint},
          {"model", f.target.model},
          {"dataset", f.dataset.name},
          {"dataset_path", f.dataset.path},
          {"num_prompts", num_requests},
          {"input_len", f.dataset.input_len},
          {"output_len", f.dataset.output_len},
          {"burstiness", f.burstiness},
          {"ramp_up_s", f.ramp_up_s},
          {"max_concurrency", f.max_concurrency},
          {"migrate_every_s", f.fault.migrate_every_s},
          {"kill_worker_at_s", f.fault.kill_worker_at_s},
          {"seed", f.seed},
          {"slo", f.slo}};
}

int RunBenchMain(BenchFlags& f) {
  ApplyDatasetFlags(f);
  absl::StatusOr<loadgen::Slo> slo = loadgen::ParseSlo(f.slo);
  if (!slo.ok()) return Fail(std::string(slo.status().message()), 2);
  absl::StatusOr<std::vector<double>> rates = Rates(f);
  if (!rates.ok()) return Fail(std::string(rates.status().message()), 2);
  absl::StatusOr<std::vector<double>> kill_times = KillTimes(f.kill_worker_at);
  if (!kill_times.ok()) return Fail(std::string(kill_times.status().message()), 2);
  f.fault.kill_worker_at_s = std::move(*kill_times);
  const bool kills = !f.fault.kill_worker_at_s.empty();
  // Greedy requests stream the same tokens on every run: what the token
  // check after a kill compares against.
  if (kills) f.target.temperature = 0.0;
  std::string base;
  if (absl::Status s = loadgen::EndpointPath(f.target, &base).status(); !s.ok()) {
    return Fail(std::string(s.message()), 2);
  }
  const bool replay = f.dataset.name == "trace";
  loadgen::LoadOptions load{static_cast<int>(f.max_concurrency), static_cast<int>(f.max_threads),
                            f.progress};
  load.keep_output = kills;
  std::vector<loadgen::BenchRequest> requests;
  std::vector<double> arrivals;
  std::vector<SweepPoint> points;
  Json runs = Json::array();
  for (size_t i = 0; i < rates->size(); ++i) {
    const double rate = (*rates)[i];
    if (absl::Status s = Prepare(f, i, rate, &requests, &arrivals); !s.ok()) {
      return Fail(std::string(s.message()), 2);
    }
    loadgen::FaultInjector faults(base, f.fault);
    load.start = std::chrono::steady_clock::now();
    faults.Start(*load.start);
    absl::StatusOr<loadgen::LoadRun> run = loadgen::RunLoad(f.target, requests, arrivals, load);
    loadgen::FaultReport fault_report = faults.Stop();
    if (!run.ok()) return Fail(std::string(run.status().message()), 2);
    if (fault_report.kills_ok > 0) {
      fault_report.kill_impact = loadgen::MeasureKills(run->results, fault_report.kills);
      CheckTokens(f.target, requests, run->results, &fault_report.kill_impact);
    }
    SweepPoint point{replay ? std::numeric_limits<double>::quiet_NaN() : rate,
                     loadgen::Summarize(run->results, run->duration_s, *slo)};
    loadgen::PrintTable(stdout, point, *slo);
    loadgen::PrintFaults(stdout, fault_report, f.fault);
    std::fflush(stdout);
    runs.push_back({{"request_rate", replay             ? Json("trace")
                                     : std::isinf(rate) ? Json("inf")
                                                        : Json(rate)},
                    {"summary", loadgen::SummaryJson(point.summary)},
                    {"requests", RequestsJson(run->results)},
                    {"faults", loadgen::FaultReportJson(fault_report)}});
    points.push_back(std::move(point));
  }
  if (points.size() > 1) loadgen::PrintSweepTable(stdout, points);
  if (!f.json_path.empty()) {
    std::ofstream out(f.json_path);
    out << Json{{"config", ConfigJson(f, requests.size())}, {"runs", runs}}.dump(2) << "\n";
    if (!out) return Fail("cannot write " + f.json_path);
  }
  if (!f.plot_path.empty()) {
    if (absl::Status s = loadgen::WriteSvgPlot(f.plot_path, points); !s.ok())
      return Fail(std::string(s.message()));
  }
  if (f.fail_on_error) {
    for (const SweepPoint& p : points) {
      if (p.summary.failed > 0) return Fail("some requests failed (see the errors above)");
    }
  }
  return 0;
}

}  // namespace

int RunBench(int argc, char** argv) {
  BenchFlags f;
  FlagParser flags("bench", "load-test an OpenAI-compatible endpoint with streaming requests");
  flags.AddString("url", &f.target.url,
                  "server base URL (http://HOST:PORT, optionally ending in /v1)");
  flags.AddString("endpoint", &f.target.endpoint, "completions or chat");
  flags.AddString("model", &f.target.model,
                  "model name sent with each request (left out when empty)");
  flags.AddString("api-key", &f.target.api_key, "API key sent as a Bearer token");
  flags.AddDouble("timeout", &f.target.timeout_s,
                  "seconds a request may take to the end of its stream");
  flags.AddBool("ignore-eos", &f.target.ignore_eos,
                "ask for exactly max_tokens output tokens (ignore_eos)");
  flags.AddString("request-rate", &f.request_rate,
                  "mean requests per second, or inf to send all at once");
  flags.AddDouble("burstiness", &f.burstiness,
                  "Gamma shape of inter-arrival times: 1 Poisson, <1 burstier");
  flags.AddDouble("ramp-up", &f.ramp_up_s, "seconds over which the rate grows linearly from 0");
  flags.AddInt("max-concurrency", &f.max_concurrency, "requests in flight at most (0: no limit)");
  flags.AddInt("max-threads", &f.max_threads, "client threads, one per concurrent stream");
  flags.AddInt("seed", &f.seed, "seed for arrivals and datasets");
  AddDatasetFlags(flags, "requests to send (trace: at most this many rows, 0 all)", &f.dataset_values, &f.dataset);
  flags.AddString("slo", &f.slo, "goodput SLO, e.g. ttft:500,tpot:50 (milliseconds)");
  flags.AddString("sweep", &f.sweep, "comma-separated request rates to run one after another");
  flags.AddString("json", &f.json_path, "write the results as JSON to this file");
  flags.AddString("plot", &f.plot_path,
                  "write an SVG plot (latency vs throughput, TTFT CDF) to this file");
  flags.AddDouble(
      "migrate-every", &f.fault.migrate_every_s,
      "fault injection: move one running request every this many seconds (POST /admin/migrate)");
  flags.AddString(
      "kill-worker-at", &f.kill_worker_at,
      "fault injection: at each of these run times (seconds, comma-separated) kill the live worker "
      "running the most requests (POST /admin/kill; workers need --enable-fault-injection), then "
      "report how long the open streams waited for their next tokens and the tokens lost or "
      "duplicated against a fault-free rerun of those streams; implies greedy requests "
      "(temperature 0)");
  flags.AddString("admin-key", &f.fault.admin_key,
                  "the gateway's admin key for --migrate-every and --kill-worker-at");
  flags.AddBool("progress", &f.progress, "show a progress bar when stderr is a terminal");
  flags.AddBool("fail-on-error", &f.fail_on_error, "exit 1 when any request failed");
  return RunWithFlags(flags, argc, argv, [&] { return RunBenchMain(f); });
}

}  // namespace ferry
