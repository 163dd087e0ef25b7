#include "benchmarks/sim/simulator.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmarks/sim/event_queue.h"
#include "scheduler/policy/dispatch_policy.h"
#include "scheduler/policy/prefix_index.h"

namespace ferry::sim {
namespace {

absl::Time At(double s) { return absl::UnixEpoch() + absl::Seconds(s); }

int64_t IdNumber(const std::string& id) { return std::strtoll(id.c_str() + 1, nullptr, 10); }

struct Migration {
  int64_t seq = 0;
  int src = 0;
  int dst = 0;
  int64_t reserved = 0;
  int64_t blocks_at_start = 0;
  bool handoff = false;
  bool copied = false;
  bool done = false;
};

class Simulation {
 public:
  Simulation(const SimOptions& options, const SimProfile& profile, const std::vector<SimRequest>& requests,
             std::unique_ptr<DispatchPolicy> dispatch, std::unique_ptr<DispatchPolicy> placement_dispatch)
      : options_(options),
        profile_(profile),
        requests_(requests),
        dispatch_(std::move(dispatch)),
        placement_(std::move(placement_dispatch), options.disaggregation_options),
        migration_(options.migration_options),
        prefix_aware_(dispatch_->name() == "prefix-aware") {}

  SimRun Run();

 private:
  int64_t BlocksFor(int64_t tokens) const {
    return (tokens + options_.engine.block_size - 1) / options_.engine.block_size;
  }
  double BlockSeconds(int64_t blocks) const {
    return static_cast<double>(blocks) * options_.engine.block_size * profile_.kv_bytes_per_token /
           profile_.kv_link_bandwidth;
  }
  void SetUp();
  void OnArrival(int64_t i);
  DispatchRequest MakeDispatchRequest(const SimSeq& seq) const;
  void Kick(int w);
  void OnStepDone(int w);
  void OnHeartbeat();
  void OnMigrationTick();
  void StartMigration(int64_t seq, int dst, bool handoff);
  void OnCopied(int64_t m);
  void Detach(int64_t m);
  void OnResume(int64_t m);
  void Abort(int64_t m);
  void Finish(int64_t seq_id, bool ok, const char* error);
  WorkerLoad LoadOf(const SimWorker& w) const;
  RequestView ViewOf(const SimSeq& seq) const;

  const SimOptions& options_;
  const SimProfile& profile_;
  const std::vector<SimRequest>& requests_;
  std::unique_ptr<DispatchPolicy> dispatch_;
  DisaggregationPolicy placement_;
  MigrationPolicy migration_;
  // Which worker caches which prompt blocks, as the scheduler keeps it:
  // the prompts it sent there, then what heartbeats report.
  const bool prefix_aware_;
  PrefixIndex prefix_index_;
  std::vector<uint64_t> stored_hashes_, removed_hashes_;

  double now_ = 0;
  EventQueue queue_;
  std::vector<SimWorker> workers_;
  std::vector<std::vector<int64_t>> ready_by_worker_;  // copied migrations waiting for a step boundary
  std::vector<SimSeq> seqs_;
  std::vector<double> last_token_s_;
  std::vector<double> last_migrated_s_;
  std::vector<Migration> migrations_;
  std::vector<loadgen::RequestResult> results_;
  ClusterView view_;
  int64_t num_finished_ = 0;
  double last_finish_s_ = 0;
  SimStats stats_;
};

WorkerLoad Simulation::LoadOf(const SimWorker& w) const {
  WorkerLoad l;
  l.blocks_free = w.blocks_free();
  l.blocks_total = w.blocks_total();
  l.running_requests = w.num_running();
  l.waiting_requests = w.num_waiting();
  l.blocks_needed_waiting = w.blocks_needed_waiting();
  l.cached_blocks = w.prefix_cache().num_cached();
  return l;
}

RequestView Simulation::ViewOf(const SimSeq& seq) const {
  RequestView r;
  r.request_id = absl::StrCat("r", seq.id);
  r.worker_id = view_.workers[seq.worker].worker_id;
  r.num_tokens = seq.num_tokens();
  r.num_blocks = seq.blocks;
  r.migrating = seq.migration >= 0;
  r.last_migrated = last_migrated_s_[seq.id] == -std::numeric_limits<double>::infinity()
                        ? absl::InfinitePast()
                        : At(last_migrated_s_[seq.id]);
  return r;
}

void Simulation::SetUp() {
  const int n = options_.num_workers;
  workers_.reserve(n);
  ready_by_worker_.resize(n);
  for (int i = 0; i < n; ++i) {
    workers_.emplace_back(i, options_.engine, &profile_);
    WorkerView v;
    v.worker_id = absl::StrFormat("w%05d", i);
    v.address = "sim";
    if (options_.disaggregation) {
      v.role = i < options_.num_prefill_workers ? WorkerRoleKind::kPrefill : WorkerRoleKind::kDecode;
    }
    v.load = LoadOf(workers_.back());
    v.last_heartbeat = At(0);
    view_.workers.push_back(std::move(v));
  }
  const size_t m = requests_.size();
  seqs_.resize(m);
  results_.resize(m);
  last_token_s_.assign(m, 0);
  last_migrated_s_.assign(m, -std::numeric_limits<double>::infinity());
  for (size_t i = 0; i < m; ++i) {
    const SimRequest& r = requests_[i];
    SimSeq& s = seqs_[i];
    s.id = static_cast<int64_t>(i);
    s.prompt_tokens = std::max(1, r.input_tokens);
    s.max_tokens = std::max(1, r.output_tokens);
    s.block_hashes = r.block_hashes;
    loadgen::RequestResult& res = results_[i];
    res.scheduled_s = r.arrival_s;
    res.start_s = r.arrival_s;
    res.prompt_tokens = s.prompt_tokens;
    res.requested_output_tokens = s.max_tokens;
    res.error = "unfinished";
    queue_.Push(r.arrival_s, EventKind::kArrival, static_cast<int64_t>(i));
  }
  queue_.Push(0, EventKind::kHeartbeat);
  if (options_.migration) queue_.Push(options_.migration_interval_s, EventKind::kMigrationTick);
}

void Simulation::Finish(int64_t seq_id, bool ok, const char* error) {
  loadgen::RequestResult& r = results_[seq_id];
  r.ok = ok;
  r.error = ok ? "" : error;
  r.e2e_s = now_ - requests_[seq_id].arrival_s;
  r.output_tokens = seqs_[seq_id].generated;
  ++num_finished_;
  last_finish_s_ = now_;
  if (options_.progress && num_finished_ % 1000 == 0) {
    options_.progress(num_finished_, static_cast<int64_t>(requests_.size()));
  }
}

void Simulation::OnArrival(int64_t i) {
  SimSeq& seq = seqs_[i];
  if (BlocksFor(seq.prompt_tokens + seq.max_tokens) > options_.engine.num_blocks) {
    ++stats_.rejected;
    seq.finished = true;
    Finish(i, false, "too_long");
    results_[i].error_detail = "prompt plus max_tokens exceed a worker's KV cache";
    return;
  }
  const DispatchRequest req = MakeDispatchRequest(seq);
  std::string worker_id;
  if (options_.disaggregation) {
    absl::StatusOr<Placement> p = placement_.Place(view_, req, At(now_));
    if (!p.ok()) {
      seq.finished = true;
      Finish(i, false, "no_worker");
      return;
    }
    worker_id = p->worker_id;
    seq.hand_off_after_prefill = p->hand_off_after_prefill;
  } else {
    absl::StatusOr<DispatchDecision> d = dispatch_->Decide(view_, req, At(now_));
    if (!d.ok()) {
      seq.finished = true;
      Finish(i, false, "no_worker");
      return;
    }
    worker_id = d->worker_id;
  }
  const int w = static_cast<int>(IdNumber(worker_id));
  WorkerView& v = view_.workers[w];
  v.load.pending_requests += 1;
  v.load.pending_blocks += req.num_prompt_blocks;
  v.num_assigned += 1;
  if (prefix_aware_) prefix_index_.Insert(v.worker_id, seq.block_hashes);
  workers_[w].Enqueue(seq);
  Kick(w);
}

DispatchRequest Simulation::MakeDispatchRequest(const SimSeq& seq) const {
  DispatchRequest req;
  req.num_prompt_tokens = seq.prompt_tokens;
  req.num_prompt_blocks = BlocksFor(seq.prompt_tokens);
  if (prefix_aware_ && !seq.block_hashes.empty()) {
    for (const WorkerView& v : view_.workers) {
      if (!v.alive) continue;
      const int64_t match = prefix_index_.MatchBlocks(v.worker_id, seq.block_hashes);
      if (match > 0) req.cached_prefix_blocks[v.worker_id] = match;
    }
  }
  return req;
}

void Simulation::Kick(int w) {
  SimWorker& worker = workers_[w];
  if (worker.busy() || !worker.has_work()) return;
  StepOutcome outcome;
  const double dt = worker.StartStep(seqs_, &outcome);
  for (int64_t id : outcome.preempted) {
    if (seqs_[id].migration >= 0) Abort(seqs_[id].migration);
  }
  if (dt > 0) queue_.Push(now_ + dt, EventKind::kStepDone, w);
}

void Simulation::OnStepDone(int w) {
  StepOutcome out;
  workers_[w].FinishStep(seqs_, &out);
  for (int64_t id : out.tokens) {
    SimSeq& seq = seqs_[id];
    loadgen::RequestResult& r = results_[id];
    if (seq.generated == 1) {
      r.ttft_s = now_ - requests_[id].arrival_s;
    } else {
      r.itl_s.push_back(now_ - last_token_s_[id]);
    }
    last_token_s_[id] = now_;
    if (seq.finished) continue;
    if (seq.hand_off_after_prefill && seq.generated == 1 && seq.migration < 0) {
      std::optional<std::string> dst = placement_.ChooseDecodeWorker(view_, ViewOf(seq), At(now_));
      if (dst) StartMigration(id, static_cast<int>(IdNumber(*dst)), /*handoff=*/true);
    }
  }
  for (int64_t id : out.finished) {
    if (seqs_[id].migration >= 0) Abort(seqs_[id].migration);
    Finish(id, true, "");
  }
  std::vector<int64_t> ready;
  ready.swap(ready_by_worker_[w]);
  for (int64_t m : ready) {
    if (!migrations_[m].done) Detach(m);
  }
  Kick(w);
}

void Simulation::OnHeartbeat() {
  for (size_t i = 0; i < workers_.size(); ++i) {
    WorkerView& v = view_.workers[i];
    v.load = LoadOf(workers_[i]);
    v.num_assigned = workers_[i].num_running() + workers_[i].num_waiting();
    v.last_heartbeat = At(now_);
    workers_[i].TakeBlockHashEvents(&stored_hashes_, &removed_hashes_);
    if (prefix_aware_) {
      prefix_index_.Insert(v.worker_id, stored_hashes_);
      prefix_index_.Remove(v.worker_id, removed_hashes_);
    }
  }
  if (num_finished_ < static_cast<int64_t>(requests_.size())) {
    queue_.Push(now_ + options_.heartbeat_s, EventKind::kHeartbeat);
  }
}

void Simulation::OnMigrationTick() {
  // Only workers at least the threshold below the freest one can be sources
  // (a move needs that gap), so only their requests go into the view.
  double max_freeness = -std::numeric_limits<double>::infinity();
  for (const WorkerView& v : view_.workers) max_freeness = std::max(max_freeness, Freeness(v.load));
  view_.requests.clear();
  for (size_t w = 0; w < workers_.size(); ++w) {
    if (Freeness(view_.workers[w].load) > max_freeness - options_.migration_options.freeness_gap_threshold) continue;
    for (int64_t id : workers_[w].running()) {
      const SimSeq& seq = seqs_[id];
      if (seq.generated >= 1 && seq.computed + 1 >= seq.num_tokens()) view_.requests.push_back(ViewOf(seq));
    }
  }
  for (const Migration& m : migrations_) {
    if (!m.done && seqs_[m.seq].worker >= 0) view_.requests.push_back(ViewOf(seqs_[m.seq]));
  }
  std::vector<MigrationOrder> orders = migration_.Decide(view_, At(now_));
  view_.requests.clear();
  for (const MigrationOrder& o : orders) {
    const int64_t id = IdNumber(o.request_id);
    if (seqs_[id].finished || seqs_[id].migration >= 0) continue;
    StartMigration(id, static_cast<int>(IdNumber(o.destination_worker_id)), /*handoff=*/false);
  }
  if (num_finished_ < static_cast<int64_t>(requests_.size())) {
    queue_.Push(now_ + options_.migration_interval_s, EventKind::kMigrationTick);
  }
}

void Simulation::StartMigration(int64_t seq_id, int dst, bool handoff) {
  SimSeq& seq = seqs_[seq_id];
  const int64_t reserve = seq.blocks + 1;
  ++stats_.migrations_started;
  if (dst == seq.worker || !workers_[dst].Reserve(reserve)) {
    ++stats_.migrations_aborted;
    return;
  }
  Migration m;
  m.seq = seq_id;
  m.src = seq.worker;
  m.dst = dst;
  m.reserved = reserve;
  m.blocks_at_start = seq.blocks;
  m.handoff = handoff;
  seq.migration = static_cast<int>(migrations_.size());
  migrations_.push_back(m);
  WorkerView& v = view_.workers[dst];
  v.load.pending_requests += 1;
  v.load.pending_blocks += reserve;
  queue_.Push(now_ + options_.rpc_latency_s + BlockSeconds(seq.blocks), EventKind::kMigrationCopied,
              seq.migration);
}

void Simulation::OnCopied(int64_t m) {
  Migration& mig = migrations_[m];
  if (mig.done) return;
  mig.copied = true;
  if (workers_[mig.src].busy()) {
    ready_by_worker_[mig.src].push_back(m);  // the request is in the step running now
  } else {
    Detach(m);
  }
}

void Simulation::Detach(int64_t m) {
  Migration& mig = migrations_[m];
  SimSeq& seq = seqs_[mig.seq];
  const int64_t need = BlocksFor(seq.computed);
  if (need > mig.reserved) {
    if (!workers_[mig.dst].Reserve(need - mig.reserved)) {
      Abort(m);
      return;
    }
    mig.reserved = need;
  }
  // The last round: the blocks written since the bulk copy, one at least.
  const int64_t last_round = std::max<int64_t>(1, need - mig.blocks_at_start);
  workers_[mig.src].Detach(seq);
  seq.worker = -1;
  queue_.Push(now_ + options_.rpc_latency_s + BlockSeconds(last_round), EventKind::kMigrationResume, m);
  Kick(mig.src);
}

void Simulation::OnResume(int64_t m) {
  Migration& mig = migrations_[m];
  SimSeq& seq = seqs_[mig.seq];
  SimWorker& dst = workers_[mig.dst];
  dst.Unreserve(mig.reserved);
  mig.done = true;
  seq.migration = -1;
  last_migrated_s_[seq.id] = now_;
  if (!dst.AdmitMigrated(seq)) {
    // Cannot happen with the reservation held; recompute rather than lose it.
    seq.computed = 0;
    dst.Enqueue(seq);
  }
  ++stats_.migrations_done;
  if (mig.handoff) ++stats_.handoffs;
  Kick(mig.dst);
}

void Simulation::Abort(int64_t m) {
  Migration& mig = migrations_[m];
  if (mig.done) return;
  workers_[mig.dst].Unreserve(mig.reserved);
  mig.done = true;
  seqs_[mig.seq].migration = -1;
  ++stats_.migrations_aborted;
}

SimRun Simulation::Run() {
  SetUp();
  const int64_t n = static_cast<int64_t>(requests_.size());
  while (!queue_.empty() && num_finished_ < n) {
    const Event e = queue_.Pop();
    now_ = e.time_s;
    ++stats_.events;
    switch (e.kind) {
      case EventKind::kArrival: OnArrival(e.a); break;
      case EventKind::kStepDone: OnStepDone(static_cast<int>(e.a)); break;
      case EventKind::kHeartbeat: OnHeartbeat(); break;
      case EventKind::kMigrationTick: OnMigrationTick(); break;
      case EventKind::kMigrationCopied: OnCopied(e.a); break;
      case EventKind::kMigrationResume: OnResume(e.a); break;
    }
  }
  SimRun run;
  double first_arrival = std::numeric_limits<double>::infinity();
  for (const SimRequest& r : requests_) first_arrival = std::min(first_arrival, r.arrival_s);
  run.duration_s = n == 0 ? 0 : std::max(0.0, last_finish_s_ - first_arrival);
  double busy = 0;
  for (const SimWorker& w : workers_) {
    stats_.steps += w.steps();
    stats_.preemptions += w.preemptions();
    stats_.prefix_prompt_tokens += w.prefix_prompt_tokens();
    stats_.prefix_hit_tokens += w.prefix_hit_tokens();
    stats_.cached_blocks_evicted += w.prefix_cache().num_evicted();
    stats_.blocks_held_at_end += w.blocks_total() - w.blocks_free();
    busy += w.busy_s();
  }
  stats_.simulated_s = now_;
  stats_.mean_worker_busy = now_ > 0 && !workers_.empty() ? busy / (now_ * workers_.size()) : 0;
  stats_.profile_description = profile_.description;
  run.stats = stats_;
  run.results = std::move(results_);
  return run;
}

// The scheduler's policy by name; prefix-aware with the options given (the
// service runs it with the defaults).
absl::StatusOr<std::unique_ptr<DispatchPolicy>> MakeDispatch(const SimOptions& options) {
  if (options.dispatch == "prefix-aware") return std::make_unique<PrefixAwarePolicy>(options.prefix_aware_options);
  return MakeDispatchPolicy(options.dispatch);
}

}  // namespace

absl::StatusOr<SimRun> RunSimulation(const SimOptions& options, const std::vector<SimRequest>& requests) {
  if (options.num_workers <= 0) return absl::InvalidArgumentError("--workers must be at least 1");
  if (options.engine.block_size <= 0 || options.engine.max_num_batched_tokens <= 0 ||
      options.engine.max_num_seqs <= 0 || options.engine.num_blocks < 0) {
    return absl::InvalidArgumentError(
        "--block-size, --max-num-batched-tokens and --max-num-seqs must be positive, --kv-blocks >= 0");
  }
  if (options.heartbeat_s <= 0 || options.migration_interval_s <= 0 || options.rpc_latency_s < 0) {
    return absl::InvalidArgumentError("--heartbeat-ms and --migration-interval-ms must be positive");
  }
  if (options.disaggregation &&
      (options.num_prefill_workers <= 0 || options.num_prefill_workers >= options.num_workers)) {
    return absl::InvalidArgumentError(
        "--disaggregate needs --prefill-workers between 1 and --workers - 1 (the rest decode)");
  }
  for (const SimRequest& r : requests) {
    if (!(r.arrival_s >= 0) || r.input_tokens <= 0 || r.output_tokens <= 0) {
      return absl::InvalidArgumentError("every simulated request needs an arrival >= 0 and lengths >= 1");
    }
    if (static_cast<int64_t>(r.block_hashes.size()) > r.input_tokens / options.engine.block_size) {
      return absl::InvalidArgumentError("a simulated request has more block hashes than full prompt blocks");
    }
  }
  absl::StatusOr<SimProfile> profile = LookupSimProfile(options.profile);
  if (!profile.ok()) return profile.status();
  absl::StatusOr<std::unique_ptr<DispatchPolicy>> dispatch = MakeDispatch(options);
  if (!dispatch.ok()) return dispatch.status();
  absl::StatusOr<std::unique_ptr<DispatchPolicy>> placement = MakeDispatch(options);
  if (!placement.ok()) return placement.status();
  SimOptions resolved = options;
  if (resolved.engine.num_blocks == 0) {
    resolved.engine.num_blocks = profile->kv_capacity_tokens / resolved.engine.block_size;
  }
  Simulation sim(resolved, *profile, requests, std::move(*dispatch), std::move(*placement));
  return sim.Run();
}

}  // namespace ferry::sim
