// ferry-distattn-bench: DistAttention (`ferry worker --kv-borrowing`) with
// `ferry scheduler` and N `ferry worker`s as separate programs on 127.0.0.1,
// one thread each, the same path as a real cluster:
//
//   longest context   for N = 1, 2, 3, 4 workers with the same small KV cache
//                     each (--kv-blocks), the longest context (prompt +
//                     --output-tokens, in whole KV blocks) that completes
//                     through the scheduler, found by doubling then bisection
//                     (each probe bounded by --probe-timeout-s). The tokens of
//                     each longest request are checked against one worker with
//                     a KV cache big enough for it (greedy), so the figure is
//                     for correct results. The scheduler's ledger lets a lender
//                     lend all but a tenth of its blocks, to at most
//                     --max-lenders lenders per request (the scheduler's
//                     --kv-max-lenders, default 4): that bound is printed
//                     next to the result.
//   remote attention  a context of --tpot-context tokens on one worker that
//                     holds it, then split over 2 and 3 workers (each worker's
//                     KV cache as small as the split allows; the request sent
//                     straight to worker 0 so it is the owner; the three
//                     placements take turns, --repeats each): decode step time
//                     (TPOT), the owner's wait for its lenders per layer and the
//                     bytes per round trip (worker metrics ferry_dist_attention_*,
//                     scraped after the first token and at the end, so prefill is
//                     left out), the lenders' compute per round trip, against a
//                     gRPC round trip on loopback (Worker.Health).
//
//   ferry-distattn-bench [--model PATH] [--workers 1,2,3,4] [--kv-blocks 16]
//                        [--output-tokens 4] [--tpot-context 512]
//                        [--decode-tokens 32] [--repeats 3]
//
// Without --model the workers serve the built-in model (the tiny preset,
// 2048 positions). Exits 1 when a result differs from the single worker's.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "benchmarks/bench_process.h"
#include "benchmarks/process_cluster.h"
#include "scheduler/policy/kv_ledger.h"
#include "tools/flags.h"

namespace ferry::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchConfig {
  std::string ferry;
  std::string model;
  std::string temp_dir;
  std::vector<int> workers;
  int64_t kv_blocks = 16;
  int64_t output_tokens = 4;
  int64_t probe_timeout_s = 60;
  int64_t tpot_context = 512;
  int64_t decode_tokens = 32;
  int64_t repeats = 3;
  int64_t threads = 1;
  int64_t block_size = 16;
  int64_t max_lenders = 4;  // the scheduler's --kv-max-lenders

  int64_t tpot_context_blocks() const { return (tpot_context + block_size - 1) / block_size; }
};

// What the benchmark learns from a worker with a large KV cache.
struct ModelFacts {
  std::string model_id;
  int64_t kv_bytes_per_block = 0;
  int64_t max_context = 0;  // tokens (prompt + output) one request may have
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::optional<std::vector<int>> ParseWorkerCounts(const std::string& list) {
  std::vector<int> counts;
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n < 1 || n > 16) return std::nullopt;
    counts.push_back(n);
  }
  std::sort(counts.begin(), counts.end());
  return counts;
}

// A greedy request of `prompt_len` prompt tokens (ids 3..902, with some
// structure so attention has something to look at) and `max_tokens` outputs.
v1::GenerateRequest Greedy(const std::string& id, int64_t prompt_len, int64_t max_tokens) {
  v1::GenerateRequest r;
  r.set_request_id(id);
  for (int64_t i = 0; i < prompt_len; ++i) r.add_prompt_ids(static_cast<int32_t>(3 + (i * 37 + i / 7) % 900));
  r.mutable_params()->set_temperature(0);
  r.mutable_params()->set_max_tokens(static_cast<int32_t>(max_tokens));
  r.mutable_params()->set_ignore_eos(true);
  r.set_stream(true);
  return r;
}

std::string NextId(const std::string& prefix) {
  static int next = 0;
  return absl::StrCat(prefix, "-", ++next);
}

// Blocks a lender keeps for itself under the scheduler's default ledger.
int64_t LenderKeeps(int64_t blocks) {
  return static_cast<int64_t>(std::ceil(KvLedgerOptions{}.lender_keep_fraction * static_cast<double>(blocks)));
}

// The most blocks one request may hold on `workers` workers of `blocks`
// blocks each, borrowing from at most `max_lenders`: all of the owner's, the
// rest of the lenders' after their keep.
int64_t LedgerBoundBlocks(int workers, int64_t blocks,
                          int64_t max_lenders = KvLedgerOptions{}.max_lenders_per_request) {
  const int lenders = static_cast<int>(std::min<int64_t>(workers - 1, max_lenders));
  return blocks + lenders * (blocks - LenderKeeps(blocks));
}

absl::StatusOr<ModelFacts> LearnModel(ProcessCluster& reference) {
  ModelFacts facts;
  auto stats = reference.Stats(0);
  if (!stats.ok()) return stats.status();
  facts.model_id = stats->model_id();
  facts.kv_bytes_per_block = stats->load().kv_bytes_per_block();
  // The engine names its context length when a request asks for more.
  GenerateResult r = reference.Generate(Greedy(NextId("limit"), 1, int64_t{1} << 30), absl::Seconds(30));
  std::smatch m;
  const std::string why = r.Why();
  if (!std::regex_search(why, m, std::regex("maximum context length is ([0-9]+)")) ||
      !absl::SimpleAtoi(m[1].str(), &facts.max_context)) {
    return absl::InternalError(absl::StrCat("cannot tell the model's context length from: ", why));
  }
  if (facts.kv_bytes_per_block <= 0) return absl::InternalError("the worker reports no KV block size");
  return facts;
}

// ---- Longest context -------------------------------------------------------

struct LongestContext {
  int64_t blocks = 0;  // the longest that completed (0: none)
  std::vector<int32_t> tokens;
  std::string first_refusal;  // why the shortest failing probe failed
  int probes = 0;
  double seconds = 0;
};

// Runs a request of exactly `blocks` KV blocks through the scheduler.
// Fills `tokens` when it completed with every output token.
absl::StatusOr<bool> Probe(ProcessCluster& cluster, const BenchConfig& config, int64_t blocks,
                           std::vector<int32_t>& tokens, std::string& why) {
  const int64_t context = blocks * config.block_size;
  GenerateResult r = cluster.Generate(Greedy(NextId("probe"), context - config.output_tokens, config.output_tokens),
                                      absl::Seconds(config.probe_timeout_s));
  const bool ok = r.ok() && static_cast<int64_t>(r.tokens.size()) == config.output_tokens;
  if (ok) tokens = r.tokens;
  why = ok ? "" : (r.ok() ? "too few tokens" : r.Why());
  if (absl::Status s = cluster.WaitIdle(absl::Seconds(20)); !s.ok()) return s;
  return ok;
}

absl::StatusOr<LongestContext> FindLongest(ProcessCluster& cluster, const BenchConfig& config,
                                           int64_t max_blocks) {
  LongestContext out;
  const Clock::time_point start = Clock::now();
  // lo completed (or is below the shortest request), hi did not (or is past
  // the model's context); the answer is lo once they meet.
  int64_t lo = config.output_tokens / config.block_size;
  int64_t hi = max_blocks + 1;
  bool doubling = true;
  int64_t next = std::clamp<int64_t>(config.kv_blocks, lo + 1, max_blocks);
  while (hi - lo > 1) {
    const int64_t b = doubling ? next : lo + (hi - lo) / 2;
    std::vector<int32_t> tokens;
    std::string why;
    auto ok = Probe(cluster, config, b, tokens, why);
    if (!ok.ok()) return ok.status();
    ++out.probes;
    if (*ok) {
      lo = b;
      out.blocks = b;
      out.tokens = std::move(tokens);
      next = std::min(2 * b, hi - 1);
    } else {
      hi = b;
      out.first_refusal = why;
      doubling = false;
    }
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return out;
}

// The longest context on `workers` workers, checked against `reference`.
struct LongestRow {
  LongestContext longest;
  bool same_tokens = true;
  std::string check = "-";  // yes, NO, or why the reference failed
};

absl::StatusOr<LongestRow> MeasureLongest(const BenchConfig& config, const ModelFacts& facts, int workers,
                                          ProcessCluster& reference) {
  ProcessClusterOptions o{.ferry = config.ferry, .model = config.model, .temp_dir = config.temp_dir,
                          .num_workers = workers, .kv_cache_bytes = config.kv_blocks * facts.kv_bytes_per_block,
                          .block_size = static_cast<int>(config.block_size),
                          .threads = static_cast<int>(config.threads),
                          .max_lenders = static_cast<int>(config.max_lenders)};
  auto cluster = ProcessCluster::Start(o);
  if (!cluster.ok()) return cluster.status();
  auto longest = FindLongest(**cluster, config, facts.max_context / config.block_size);
  if (!longest.ok()) return longest.status();
  LongestRow row;
  row.longest = std::move(*longest);
  if (row.longest.blocks == 0) return row;
  const int64_t context = row.longest.blocks * config.block_size;
  GenerateResult ref =
      reference.Generate(Greedy(NextId("ref"), context - config.output_tokens, config.output_tokens),
                         absl::Seconds(config.probe_timeout_s));
  row.same_tokens = ref.ok() && ref.tokens == row.longest.tokens;
  row.check = row.same_tokens ? "yes" : (ref.ok() ? "NO" : "reference failed: " + ref.Why());
  return row;
}

bool RunLongestContext(const BenchConfig& config, const ModelFacts& facts, ProcessCluster& reference) {
  const int64_t bs = config.block_size;
  std::printf("## Longest context served vs number of workers\n\n");
  std::printf("KV cache per worker: %lld blocks = %lld tokens (%.2f MB); %lld output tokens per request; "
              "the model allows %lld tokens.\n\n",
              static_cast<long long>(config.kv_blocks), static_cast<long long>(config.kv_blocks * bs),
              static_cast<double>(config.kv_blocks * facts.kv_bytes_per_block) / 1e6,
              static_cast<long long>(config.output_tokens), static_cast<long long>(facts.max_context));
  std::printf("| workers | cluster KV tokens | longest context tokens | vs 1 worker | ledger bound tokens | "
              "probes | search s | same tokens as one big worker |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---|\n");
  int64_t single = 0;
  bool all_match = true;
  std::vector<std::string> refusals;
  for (int n : config.workers) {
    auto row = MeasureLongest(config, facts, n, reference);
    if (!row.ok()) {
      std::fprintf(stderr, "error: %d workers: %s\n", n, std::string(row.status().message()).c_str());
      return false;
    }
    const LongestContext& l = row->longest;
    const int64_t context = l.blocks * bs;
    if (n == 1) single = context;
    all_match = all_match && row->same_tokens;
    const int64_t bound = std::min(LedgerBoundBlocks(n, config.kv_blocks, config.max_lenders) * bs, facts.max_context);
    const std::string ratio = single > 0 ? absl::StrFormat("%.2fx", static_cast<double>(context) / single) : "-";
    std::printf("| %d | %lld | %lld | %s | %lld | %d | %.1f | %s |\n", n,
                static_cast<long long>(n * config.kv_blocks * bs), static_cast<long long>(context), ratio.c_str(),
                static_cast<long long>(bound), l.probes, l.seconds, row->check.c_str());
    std::fflush(stdout);
    refusals.push_back(absl::StrCat(n, n == 1 ? " worker" : " workers", ", one block more: ",
                                    l.first_refusal.empty() ? "past the model's context" : l.first_refusal));
  }
  std::printf("\n");
  for (const std::string& r : refusals) std::printf("- %s\n", r.c_str());
  std::printf("\n");
  return all_match;
}

// ---- Remote attention cost -------------------------------------------------

// The DistAttention counters of a cluster at one moment: the owner's
// (worker 0) and the lenders' (the others) summed.
struct Counters {
  double owner_round_trips = 0;
  double owner_wait_us = 0;
  double bytes_sent = 0;
  double bytes_received = 0;
  double lender_round_trips = 0;
  double lender_us = 0;

  Counters operator-(const Counters& o) const {
    return {owner_round_trips - o.owner_round_trips, owner_wait_us - o.owner_wait_us, bytes_sent - o.bytes_sent,
            bytes_received - o.bytes_received,      lender_round_trips - o.lender_round_trips,
            lender_us - o.lender_us};
  }
};

Counters ReadCounters(ProcessCluster& cluster) {
  auto value = [](const std::string& text, const char* name) { return std::max(0.0, PrometheusValue(text, name)); };
  Counters c;
  const std::string owner = cluster.WorkerMetrics(0);
  c.owner_round_trips = value(owner, "ferry_dist_attention_owner_layer_calls_total");
  c.owner_wait_us = value(owner, "ferry_dist_attention_owner_wait_micros_total");
  c.bytes_sent = value(owner, "ferry_dist_attention_bytes_sent_total");
  c.bytes_received = value(owner, "ferry_dist_attention_bytes_received_total");
  for (int i = 1; i < cluster.num_workers(); ++i) {
    const std::string lender = cluster.WorkerMetrics(i);
    c.lender_round_trips += value(lender, "ferry_dist_attention_lender_layer_calls_total");
    c.lender_us += value(lender, "ferry_dist_attention_lender_layer_micros_total");
  }
  return c;
}

// One request's decode on worker 0: the step time and the counters of its
// decode steps (from its first token to its end).
struct DecodeRun {
  double tpot_ms = 0;  // mean decode step after the first one
  // From the first token on: some steps may already be counted in the first
  // read, which the ratios (per round trip) do not mind.
  Counters decode;
  Counters whole;  // the whole request: one prefill step and the decode steps
  int64_t leases = 0;
  int64_t blocks_borrowed = 0;
  std::vector<int32_t> tokens;
};

absl::StatusOr<DecodeRun> RunDecode(ProcessCluster& cluster, const v1::GenerateRequest& request,
                                    absl::Duration timeout) {
  const std::string scheduler_before = cluster.SchedulerMetrics();
  const Counters before = ReadCounters(cluster);
  Counters at_first_token;
  bool taken = false;
  GenerateResult r = cluster.GenerateOn(0, request, timeout, [&](int) {
    if (!taken) at_first_token = ReadCounters(cluster);
    taken = true;
  });
  if (!r.ok() || static_cast<int>(r.tokens.size()) != request.params().max_tokens()) {
    return absl::InternalError(absl::StrCat("the request failed: ", r.ok() ? "too few tokens" : r.Why()));
  }
  DecodeRun run;
  const Counters after = ReadCounters(cluster);
  run.decode = after - at_first_token;
  run.whole = after - before;
  const std::string scheduler_after = cluster.SchedulerMetrics();
  auto delta = [&](const char* name) {
    return static_cast<int64_t>(PrometheusValue(scheduler_after, name) - PrometheusValue(scheduler_before, name));
  };
  run.leases = delta("ferry_scheduler_kv_leases_granted_total");
  run.blocks_borrowed = delta("ferry_scheduler_kv_blocks_granted_total");
  // From the end of the first decode step (its gap also holds the metric
  // scrape above); a mean, since one event may carry several tokens.
  const size_t n = r.token_ms.size();
  run.tpot_ms = (r.token_ms[n - 1] - r.token_ms[1]) / static_cast<double>(n - 2);
  run.tokens = std::move(r.tokens);
  if (absl::Status s = cluster.WaitIdle(absl::Seconds(20)); !s.ok()) return s;
  return run;
}

// The smallest KV cache per worker (in blocks) with which a request of
// `blocks` blocks spans all `workers` workers (0 for one worker: the default).
int64_t BlocksPerWorkerToSplit(int workers, int64_t blocks) {
  if (workers == 1) return 0;
  int64_t k = (blocks + workers - 1) / workers;
  while (LedgerBoundBlocks(workers, k) < blocks) ++k;
  return k;
}

struct SplitFigures {
  int workers = 0;
  int64_t kv_blocks = 0;  // per worker (0: the default, large)
  double tpot_ms = 0;
  double round_trips_per_step = 0;
  double wait_per_layer_ms = 0;
  double lender_per_round_trip_ms = 0;
  double sent_per_round_trip = 0;
  double received_per_round_trip = 0;
  int64_t leases = 0;
  int64_t blocks_borrowed = 0;
  bool same_tokens = true;
};

// One of the three placements of the context, with its runs so far.
struct Split {
  int workers = 0;
  int64_t kv_blocks = 0;  // per worker (0: the default, large)
  std::unique_ptr<ProcessCluster> cluster;
  std::vector<DecodeRun> runs;
};

absl::StatusOr<Split> StartSplit(const BenchConfig& config, const ModelFacts& facts, int workers) {
  Split split;
  split.workers = workers;
  split.kv_blocks = BlocksPerWorkerToSplit(workers, config.tpot_context_blocks());
  ProcessClusterOptions o{.ferry = config.ferry, .model = config.model, .temp_dir = config.temp_dir,
                          .num_workers = workers, .kv_cache_bytes = split.kv_blocks * facts.kv_bytes_per_block,
                          .block_size = static_cast<int>(config.block_size),
                          // The prefill in one step, so that it is one round trip per layer and lender.
                          .max_num_batched_tokens = static_cast<int>(std::max<int64_t>(2048, config.tpot_context)),
                          .threads = static_cast<int>(config.threads)};
  auto cluster = ProcessCluster::Start(o);
  if (!cluster.ok()) return cluster.status();
  split.cluster = std::move(*cluster);
  return split;
}

SplitFigures Summarize(const Split& split, int64_t steps, const std::vector<int32_t>& expected) {
  SplitFigures f;
  f.workers = split.workers;
  f.kv_blocks = split.kv_blocks;
  std::vector<double> tpot, trips, wait, lender, sent, received;
  for (const DecodeRun& run : split.runs) {
    const Counters& d = run.decode;
    tpot.push_back(run.tpot_ms);
    f.same_tokens = f.same_tokens && run.tokens == expected;
    f.leases = run.leases;
    f.blocks_borrowed = run.blocks_borrowed;
    if (d.owner_round_trips <= 0 || run.leases <= 0) continue;
    // The prefill is one step: its prompt reaches every lender.
    trips.push_back(run.whole.owner_round_trips / static_cast<double>(steps));
    // One wait per layer and step, for all lenders at once.
    wait.push_back(d.owner_wait_us / (d.owner_round_trips / static_cast<double>(run.leases)) / 1e3);
    if (d.lender_round_trips > 0) lender.push_back(d.lender_us / d.lender_round_trips / 1e3);
    sent.push_back(d.bytes_sent / d.owner_round_trips);
    received.push_back(d.bytes_received / d.owner_round_trips);
  }
  f.tpot_ms = Median(tpot);
  f.round_trips_per_step = Median(trips);
  f.wait_per_layer_ms = Median(wait);
  f.lender_per_round_trip_ms = Median(lender);
  f.sent_per_round_trip = Median(sent);
  f.received_per_round_trip = Median(received);
  return f;
}

void PrintSplitRow(const SplitFigures& f, const SplitFigures& local, int layers, int64_t context_blocks) {
  const std::string kv = f.kv_blocks > 0 ? std::to_string(f.kv_blocks) : "default";
  const std::string placement =
      absl::StrCat(context_blocks - f.blocks_borrowed, " + ", f.blocks_borrowed, " (", f.leases, " lenders)");
  const double extra = f.tpot_ms - local.tpot_ms;
  if (f.leases == 0) {
    std::printf("| %d | %s | %s | 0 | %.2f | - | - | - | - | - | %s |\n", f.workers, kv.c_str(), placement.c_str(),
                f.tpot_ms, f.same_tokens ? "yes" : "NO");
    return;
  }
  std::printf("| %d | %s | %s | %.0f | %.2f | %+.2f | %+.3f | %.3f | %.3f | %.0f / %.0f | %s |\n", f.workers,
              kv.c_str(), placement.c_str(), f.round_trips_per_step, f.tpot_ms, extra,
              layers > 0 ? extra / layers : 0.0, f.wait_per_layer_ms, f.lender_per_round_trip_ms,
              f.sent_per_round_trip, f.received_per_round_trip, f.same_tokens ? "yes" : "NO");
}

// Rows: one worker, then the 2- and 3-worker splits.
void PrintRemoteAttention(const BenchConfig& config, const std::vector<SplitFigures>& rows) {
  const int64_t context_blocks = config.tpot_context_blocks();
  const int64_t outputs = config.decode_tokens + 1;
  // Layers from the 2-worker split: one round trip per layer and step.
  const int layers = rows[1].leases == 1 ? static_cast<int>(std::lround(rows[1].round_trips_per_step)) : 0;
  std::printf("## Remote attention per layer on loopback\n\n");
  std::printf("Context %lld tokens (%lld blocks: %lld prompt + %lld output); TPOT: mean of the last %lld decode "
              "steps; %d layers (round trips per step with one lender); medians of %lld runs.\n\n",
              static_cast<long long>(config.tpot_context), static_cast<long long>(context_blocks),
              static_cast<long long>(config.tpot_context - outputs), static_cast<long long>(outputs),
              static_cast<long long>(config.decode_tokens - 1), layers, static_cast<long long>(config.repeats));
  std::printf("| workers | KV blocks per worker | blocks here + borrowed | round trips per step | TPOT ms | "
              "vs one worker ms | per layer ms | owner wait per layer ms | lender compute per round trip ms | "
              "bytes per round trip sent / received | same tokens |\n");
  std::printf("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (const SplitFigures& f : rows) PrintSplitRow(f, rows[0], layers, context_blocks);
  std::printf("\n");
}

bool RunRemoteAttention(const BenchConfig& config, const ModelFacts& facts, ProcessCluster& reference) {
  const int64_t outputs = config.decode_tokens + 1;
  GenerateResult ref = reference.Generate(Greedy(NextId("ref"), config.tpot_context - outputs, outputs),
                                          absl::Seconds(config.probe_timeout_s));
  if (!ref.ok()) {
    std::fprintf(stderr, "error: the reference worker failed: %s\n", ref.Why().c_str());
    return false;
  }
  // All three placements stay up and take turns, so that load from
  // elsewhere on the machine falls on each of them alike.
  std::vector<Split> splits;
  for (int workers : {1, 2, 3}) {
    auto split = StartSplit(config, facts, workers);
    if (!split.ok()) {
      std::fprintf(stderr, "error: %d workers: %s\n", workers, std::string(split.status().message()).c_str());
      return false;
    }
    splits.push_back(std::move(*split));
  }
  for (int rep = 0; rep < config.repeats; ++rep) {
    for (Split& split : splits) {
      auto run = RunDecode(*split.cluster, Greedy(NextId("tpot"), config.tpot_context - outputs, outputs),
                           absl::Seconds(config.probe_timeout_s));
      if (!run.ok()) {
        std::fprintf(stderr, "error: %d workers: %s\n", split.workers, std::string(run.status().message()).c_str());
        return false;
      }
      split.runs.push_back(std::move(*run));
    }
  }
  std::vector<SplitFigures> rows;
  for (const Split& split : splits) rows.push_back(Summarize(split, outputs, ref.tokens));
  PrintRemoteAttention(config, rows);
  std::printf("gRPC round trip on loopback (Worker.Health, median of 200): %.3f ms\n\n",
              reference.HealthPingMs(0, 200));
  return std::all_of(rows.begin(), rows.end(), [](const SplitFigures& f) { return f.same_tokens; });
}

// The 1-minute load average ("?" when unknown): the figures depend on it.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string first;
  return in >> first ? first : "?";
}

absl::Status CheckConfig(const BenchConfig& c) {
  if (c.block_size < 1) return absl::InvalidArgumentError("--block-size must be at least 1");
  if (c.kv_blocks < 1) return absl::InvalidArgumentError("--kv-blocks must be at least 1");
  if (c.output_tokens < 1) return absl::InvalidArgumentError("--output-tokens must be at least 1");
  if (c.repeats < 1) return absl::InvalidArgumentError("--repeats must be at least 1");
  if (c.decode_tokens < 3) return absl::InvalidArgumentError("--decode-tokens must be at least 3");
  // The prompt must reach the last lender of the 3-worker split (the ledger
  // fills the lenders in order), so that every step talks to every lender.
  const int64_t k3 = BlocksPerWorkerToSplit(3, c.tpot_context_blocks());
  if (c.tpot_context != 0 && c.tpot_context - c.decode_tokens - 1 <= (2 * k3 - LenderKeeps(k3)) * c.block_size) {
    return absl::InvalidArgumentError(
        "--decode-tokens is too large for --tpot-context: the prompt must reach the last lender of a 3-worker split");
  }
  if (c.probe_timeout_s < 1) return absl::InvalidArgumentError("--probe-timeout-s must be at least 1");
  if (!std::filesystem::exists(c.ferry)) return absl::NotFoundError(absl::StrCat("no ferry program at ", c.ferry));
  return absl::OkStatus();
}

int Run(BenchConfig& config, bool skip_longest) {
  const Clock::time_point start = Clock::now();
  config.temp_dir = MakeTempDir("ferry-distattn-");
  if (config.temp_dir.empty()) {
    std::fprintf(stderr, "error: cannot create a temporary directory\n");
    return 1;
  }
  // One worker on its own with the default KV cache (four full contexts):
  // the tokens every distributed result must match.
  ProcessClusterOptions ro{.ferry = config.ferry, .model = config.model, .temp_dir = config.temp_dir,
                           .num_workers = 1, .with_scheduler = false, .kv_borrowing = false,
                           .block_size = static_cast<int>(config.block_size),
                           .threads = static_cast<int>(config.threads)};
  auto reference = ProcessCluster::Start(ro);
  absl::StatusOr<ModelFacts> facts =
      reference.ok() ? LearnModel(**reference) : absl::StatusOr<ModelFacts>(reference.status());
  if (!facts.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(facts.status().message()).c_str());
    std::filesystem::remove_all(config.temp_dir);
    return 1;
  }
  std::printf("model %s, KV block %lld tokens = %.1f KB, %lld thread(s) per worker, load average %s, ferry %s\n\n",
              facts->model_id.c_str(), static_cast<long long>(config.block_size),
              static_cast<double>(facts->kv_bytes_per_block) / 1e3, static_cast<long long>(config.threads),
              LoadAverage().c_str(), config.ferry.c_str());
  std::fflush(stdout);
  bool ok = true;
  if (!skip_longest) ok = RunLongestContext(config, *facts, **reference) && ok;
  if (config.tpot_context > 0) ok = RunRemoteAttention(config, *facts, **reference) && ok;
  std::printf("total %.1f s, load average %s\n", std::chrono::duration<double>(Clock::now() - start).count(),
              LoadAverage().c_str());
  reference->reset();
  std::filesystem::remove_all(config.temp_dir);
  if (!ok) std::fprintf(stderr, "error: a result differs from the single worker's, or a run failed\n");
  return ok ? 0 : 1;
}

int Main(int argc, char** argv) {
  BenchConfig config;
  config.ferry = FerryBesideSelf();
  std::string workers = "1,2,3,4";
  bool skip_longest = false;
  FlagParser flags("distattn-bench",
                   "Longest context vs number of workers and remote attention cost per layer (DistAttention, "
                   "ferry scheduler + ferry workers on loopback).");
  flags.AddString("ferry", &config.ferry, "the ferry program");
  flags.AddString("model", &config.model, "GGUF file or Hugging Face directory (default: the built-in model)");
  flags.AddString("workers", &workers, "comma-separated worker counts for the longest-context search");
  flags.AddInt("kv-blocks", &config.kv_blocks, "KV blocks per worker for the longest-context search");
  flags.AddInt("output-tokens", &config.output_tokens, "output tokens of each longest-context probe");
  flags.AddInt("probe-timeout-s", &config.probe_timeout_s, "seconds one request may take");
  flags.AddInt("tpot-context", &config.tpot_context, "context tokens for the remote attention cost (0: skip it)");
  flags.AddInt("decode-tokens", &config.decode_tokens, "decode steps measured per run");
  flags.AddInt("repeats", &config.repeats, "runs per split (the median is reported)");
  flags.AddInt("threads", &config.threads, "CPU threads per worker");
  flags.AddInt("block-size", &config.block_size, "tokens per KV block");
  flags.AddBool("skip-longest", &skip_longest, "only measure the remote attention cost");
  flags.AddInt("max-lenders", &config.max_lenders, "most lenders per request (the scheduler's --kv-max-lenders)");
  return RunWithFlags(flags, argc, argv, [&]() -> int {
    const std::optional<std::vector<int>> counts = ParseWorkerCounts(workers);
    if (!counts) {
      std::fprintf(stderr, "error: bad --workers '%s' (comma-separated counts from 1 to 16)\n", workers.c_str());
      return 2;
    }
    config.workers = *counts;
    if (absl::Status s = CheckConfig(config); !s.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
      return 2;
    }
    return Run(config, skip_longest);
  });
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) { return ferry::bench::Main(argc, argv); }
