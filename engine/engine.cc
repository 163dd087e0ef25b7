#include "engine/engine.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/input_validation.h"
#include "engine/ngram_draft.h"

namespace ferry {
namespace {

bool Contains(std::span<const int32_t> ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// The host tier's copies, done by the backend on the loop thread.
class BackendBlockIo final : public KvBlockIo {
 public:
  explicit BackendBlockIo(ForwardBackend* backend) : backend_(backend) {}
  absl::Status ReadBlock(int32_t block, std::span<std::byte> out) override {
    return backend_->ReadKvBlock(block, out);
  }
  absl::Status WriteBlock(int32_t block, std::span<const std::byte> in) override {
    return backend_->WriteKvBlock(block, in);
  }

 private:
  ForwardBackend* backend_;
};


}  // namespace

Engine::Engine(std::shared_ptr<const Model> model, const EngineOptions& options)
    : model_(std::move(model)), options_(options), pool_(options.threads),
      seed_rng_(static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())) {}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::shared_ptr<const Model> model,
                                                       const EngineOptions& options) {
  return Create(std::move(model), options, nullptr);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::shared_ptr<const Model> model,
                                                       const EngineOptions& options, const BackendFactory& make) {
  if (model == nullptr) return absl::InvalidArgumentError("no model");
  if (options.block_size <= 0 || options.block_size > 1024) {
    return absl::InvalidArgumentError("--block-size must be in [1, 1024]");
  }
  if (options.max_num_batched_tokens <= 0) {
    return absl::InvalidArgumentError("--max-num-batched-tokens must be positive");
  }
  if (options.max_num_seqs <= 0) return absl::InvalidArgumentError("--max-num-seqs must be positive");
  if (options.kv_cache_bytes < 0) return absl::InvalidArgumentError("--kv-cache-memory must be positive");
  if (options.kv_host_bytes < 0) return absl::InvalidArgumentError("--kv-host-memory must not be negative");
  std::unique_ptr<Engine> e(new Engine(std::move(model), options));
  const ModelConfig& c = e->model_->config();
  e->max_model_len_ = options.max_model_len > 0
                          ? std::min(options.max_model_len, c.max_position_embeddings)
                          : c.max_position_embeddings;
  if (make) {
    FERRY_ASSIGN_OR_RETURN(e->backend_, make(*e->model_, e->pool_, options));
    if (e->backend_ == nullptr) return absl::InvalidArgumentError("the backend factory made no backend");
  } else if (options.device == "cpu" || options.device.empty()) {
    KvCacheShape unit;
    unit.num_layers = c.num_layers;
    unit.num_kv_heads = c.num_kv_heads;
    unit.head_dim = c.head_dim;
    unit.block_size = options.block_size;
    int64_t bytes = options.kv_cache_bytes;
    if (bytes == 0) bytes = unit.bytes_per_block() * NumBlocksForTokens(4 * int64_t{e->max_model_len_}, options.block_size);
    FERRY_ASSIGN_OR_RETURN(e->backend_, CreateCpuBackend(*e->model_, e->pool_, options, bytes));
  } else if (options.device == "sim") {
    FERRY_ASSIGN_OR_RETURN(e->backend_, CreateSimBackend(*e->model_, options));
  } else if (options.device.rfind("cuda", 0) == 0) {
    EngineOptions o = options;
    o.max_model_len = e->max_model_len_;
    FERRY_ASSIGN_OR_RETURN(e->backend_, CreateCudaBackend(*e->model_, o));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown --device '", options.device, "' (cpu, cuda, cuda:N)"));
  }
  e->kv_ = e->backend_->host_kv();
  const KvCacheShape& shape = e->backend_->kv_shape();
  // Migration and prefix pulls move blocks as fp32 through the backend; one
  // probe tells whether it can (and why not, for the errors they return).
  std::vector<float> probe_f32(static_cast<size_t>(shape.floats_per_block()));
  e->kv_io_status_ = e->backend_->ReadKvBlockF32(0, probe_f32);
  BlockPoolOptions bp;
  bp.num_blocks = shape.num_blocks;
  bp.block_size = options.block_size;
  bp.model_key = absl::StrCat(e->model_->id(), "/", c.num_layers, "/", c.hidden_size, "/f32");
  if (options.kv_host_bytes > 0) {
    const int64_t block_bytes = e->backend_->kv_bytes_per_block();
    HostTierOptions ho;
    ho.num_blocks = options.kv_host_bytes / block_bytes;
    ho.bytes_per_block = block_bytes;
    ho.block_size = options.block_size;
    if (ho.num_blocks < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--kv-host-memory of ", options.kv_host_bytes,
                                                     " bytes holds no block (one block is ", block_bytes,
                                                     " bytes)"));
    }
    // A backend without host copies runs without the tier rather than fail.
    std::vector<std::byte> probe(static_cast<size_t>(block_bytes));
    if (absl::Status st = e->backend_->ReadKvBlock(0, probe); !st.ok()) {
      Logger("engine")->warn("host KV tier disabled: {}", std::string(st.message()));
    } else {
      e->host_io_ = std::make_unique<BackendBlockIo>(e->backend_.get());
      FERRY_ASSIGN_OR_RETURN(e->host_tier_, HostTier::Create(ho, e->host_io_.get()));
      bp.host_tier = e->host_tier_.get();
      Logger("engine")->info("host KV tier: {} blocks ({:.1f} MB)", ho.num_blocks,
                             ho.num_blocks * block_bytes / 1e6);
    }
  }
  e->kv_model_key_ = bp.model_key;
  FERRY_ASSIGN_OR_RETURN(e->blocks_, BlockPool::Create(bp));
  e->block_hash_root_ = e->blocks_->root_hash();
  StepSchedulerOptions so;
  so.max_num_batched_tokens = options.max_num_batched_tokens;
  so.max_num_seqs = options.max_num_seqs;
  so.enable_prefix_caching = options.enable_prefix_caching;
  // Prompt logprobs take the rows the backend has beyond one a sequence.
  so.max_prompt_logprob_rows = static_cast<int>(
      std::clamp<int64_t>(e->backend_->max_logits_rows() - options.max_num_seqs, 0, 256));
  e->scheduler_ = std::make_unique<StepScheduler>(so, *e->blocks_);
  // Drafts take logits rows beyond those: a backend with a fixed number of
  // rows (cuda) has none to spare, and decodes without them.
  e->max_draft_rows_ = std::max<int64_t>(
      0, e->backend_->max_logits_rows() - options.max_num_seqs - so.max_prompt_logprob_rows);
  if (options.speculative_ngram_tokens > 0 && e->max_draft_rows_ == 0) {
    Logger("engine")->warn("{}: no logits rows to spare for speculative decoding; it stays off",
                           e->backend_->Describe());
  }
  e->counters_.blocks_total = shape.num_blocks;
  e->counters_.kv_cache_bytes = shape.num_blocks * e->backend_->kv_bytes_per_block();
  e->counters_.block_size = options.block_size;
  Logger("engine")->info("{}: KV cache {} blocks of {} tokens = {} tokens ({:.1f} MB); context {}",
                         e->backend_->Describe(), shape.num_blocks, options.block_size,
                         shape.num_blocks * options.block_size, e->counters_.kv_cache_bytes / 1e6,
                         e->max_model_len_);
  e->PublishStats();
  e->thread_ = std::thread([raw = e.get()] { raw->Loop(); });
  return e;
}

Engine::~Engine() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status Engine::ValidateInput(const GenerateInput& input) const {
  InputLimits limits;
  limits.vocab_size = model_->config().vocab_size;
  limits.max_model_len = max_model_len_;
  limits.block_size = options_.block_size;
  limits.num_kv_blocks = backend_->kv_shape().num_blocks;
  FERRY_RETURN_IF_ERROR(ValidateGenerateInput(input, limits));
  if (input.params.prompt_logprobs >= 0 && scheduler_->options().max_prompt_logprob_rows == 0) {
    return absl::InvalidArgumentError(
        "prompt_logprobs: no logits rows to spare on this backend (raise --max-num-batched-tokens above "
        "--max-num-seqs)");
  }
  if (input.remote_kv != nullptr) {
    return ValidateRemoteKv(input, static_cast<int64_t>(input.prompt_ids.size()) + input.params.max_tokens);
  }
  return absl::OkStatus();
}

absl::Status Engine::CompileGrammar(GenerateInput& input) const {
  if (const SamplingParams::Reasoning& r = input.params.reasoning; r.active()) {
    const Tokenizer& tok = model_->tokenizer();
    input.reasoning_start_ids = tok.Encode(r.start, /*add_special=*/false, /*parse_special=*/true);
    input.reasoning_end_ids = tok.Encode(r.end, /*add_special=*/false, /*parse_special=*/true);
  }
  if (input.params.structured.empty()) return absl::OkStatus();
  auto grammar = structured::Compile(input.params.structured);
  if (!grammar.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("structured output: ", grammar.status().message()));
  }
  input.grammar = *std::move(grammar);
  return absl::OkStatus();
}

const structured::TokenTrie& Engine::token_trie() {
  if (token_trie_ == nullptr) {
    const Tokenizer& tok = model_->tokenizer();
    const std::vector<int32_t>& eos = model_->eos_ids();
    std::vector<std::string> bytes(static_cast<size_t>(tok.vocab_size()));
    for (int32_t id = 0; id < tok.vocab_size(); ++id) {
      if (!tok.IsControl(id) && !Contains(eos, id))
        bytes[static_cast<size_t>(id)] = tok.TokenBytes(id);
    }
    token_trie_ = std::make_unique<structured::TokenTrie>(bytes);
  }
  return *token_trie_;
}

void Engine::SyncReasoning(Sequence& seq) {
  const Tokenizer& tok = model_->tokenizer();
  const std::vector<int32_t>& eos = model_->eos_ids();
  while (seq.reasoning->tokens() < seq.num_output_tokens()) {
    const int32_t id = seq.output()[static_cast<size_t>(seq.reasoning->tokens())];
    seq.reasoning->Add(id, Contains(eos, id) ? std::string() : tok.TokenBytes(id));
  }
}

bool Engine::SyncMatcher(Sequence& seq) {
  const Tokenizer& tok = model_->tokenizer();
  const std::vector<int32_t>& eos = model_->eos_ids();
  // With a reasoning model the grammar begins after the thinking, part
  // way into a token when `end` is.
  int from = 0;
  size_t skip = 0;
  if (seq.reasoning) {
    SyncReasoning(seq);
    if (seq.reasoning->phase() != ReasoningTracker::Phase::kAnswer) return true;
    from = seq.reasoning->answer_token();
    skip = seq.reasoning->answer_skip();
  }
  seq.matched_tokens = std::max(seq.matched_tokens, from);
  while (seq.matched_tokens < seq.num_output_tokens()) {
    const int at = seq.matched_tokens++;
    const int32_t id = seq.output()[static_cast<size_t>(at)];
    if (Contains(eos, id)) continue;
    const std::string bytes = tok.TokenBytes(id);
    std::string_view b = bytes;
    if (at == from) b.remove_prefix(std::min(skip, b.size()));
    if (!b.empty() && !seq.matcher->Accept(b)) return false;
  }
  return true;
}

absl::Status Engine::Submit(GenerateInput input, EventSink sink) {
  FERRY_RETURN_IF_ERROR(ValidateInput(input));
  FERRY_RETURN_IF_ERROR(CompileGrammar(input));
  auto group = std::make_shared<RequestGroup>();
  group->input = std::move(input);
  group->sink = std::move(sink);
  const int samples = group->input.resume ? 1 : group->input.params.n;
  group->samples_pending = samples - 1;
  group->samples_unfinished = samples;
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError("the engine is shutting down");
  if (!active_ids_.insert(group->input.request_id).second) {
    return absl::AlreadyExistsError(absl::StrCat("request id '", group->input.request_id, "' is in use"));
  }
  group->arrival = next_arrival_++;
  new_requests_.push_back(std::move(group));
  return absl::OkStatus();
}

void Engine::Abort(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  aborts_.push_back(request_id);
}

EngineStats Engine::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void Engine::Loop() {
  while (true) {
    bool idle = scheduler_->num_running() == 0 && scheduler_->num_waiting() == 0;
    {
      absl::MutexLock lock(&mu_);
      if (idle) {
        auto cond = absl::Condition(
            +[](Engine* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu_) {
              return e->stop_ || !e->new_requests_.empty() || !e->aborts_.empty() ||
                     !e->tasks_.empty();
            },
            this);
        if (reservations_.empty() && paused_.empty()) {
          mu_.Await(cond);
        } else {
          // Reservations expire even when nothing else happens.
          mu_.AwaitWithTimeout(cond, absl::Milliseconds(100));
        }
      }
      if (stop_) break;
    }
    DrainInbox();
    ExpireReservations();
    const absl::Time step_start = absl::Now();
    Step();
    PublishStats();
    if (options_.min_step_micros > 0 && !idle) {
      // Paced (EngineOptions::min_step_micros); new requests and aborts
      // wait for the next step as they would behind a slower model.
      absl::SleepFor(absl::Microseconds(options_.min_step_micros) - (absl::Now() - step_start));
    }
  }
  paused_.clear();
  reservations_.clear();
  held_.clear();
  FailAll("");
  PublishStats();
}

void Engine::DrainInbox() {
  std::deque<std::shared_ptr<RequestGroup>> groups;
  std::vector<std::string> aborts;
  std::deque<std::function<void()>> tasks;
  {
    absl::MutexLock lock(&mu_);
    groups.swap(new_requests_);
    aborts.swap(aborts_);
    tasks.swap(tasks_);
  }
  for (auto& task : tasks) task();
  for (auto& g : groups) {
    auto seq = MakeSequence(g);
    if (!seq.ok()) {
      EngineEvent ev;
      ev.request_id = g->input.request_id;
      ev.finish = FinishReason::kError;
      ev.error = std::string(seq.status().message());
      g->sink(std::move(ev));
      absl::MutexLock lock(&mu_);
      active_ids_.erase(g->input.request_id);
      continue;
    }
    Logger("engine")->debug("req={} queued: {} prompt tokens, max_tokens {}, n {}", g->input.request_id,
                            (*seq)->num_prompt_tokens, g->input.params.max_tokens, g->input.params.n);
    scheduler_->AddWaiting(std::move(*seq));
  }
  for (const std::string& id : aborts) {
    std::vector<Sequence*> seqs = scheduler_->Find(id);
    std::shared_ptr<RequestGroup> group;
    if (auto it = paused_.find(id); it != paused_.end()) {
      EngineEvent ev;
      Finish(*it->second, FinishReason::kAbort, ev);
      group = it->second->group;
      group->sink(std::move(ev));
      paused_.erase(it);
    }
    reservations_.erase(id);
    for (Sequence* s : seqs) {
      EngineEvent ev;
      Finish(*s, FinishReason::kAbort, ev);
      group = s->group;
      s->group->sink(std::move(ev));
      scheduler_->Remove(s);  // blocks are released here
    }
    // Samples never forked off still owe their caller a last event.
    if (group) {
      while (group->samples_pending > 0) {
        EngineEvent ev;
        ev.request_id = id;
        ev.sample_index = group->input.params.n - group->samples_pending;
        ev.finish = FinishReason::kAbort;
        --group->samples_pending;
        --group->samples_unfinished;
        group->sink(std::move(ev));
      }
      absl::MutexLock lock(&mu_);
      active_ids_.erase(id);
    }
  }
}

namespace {

// The first token of an n > 1 request: its row forks the other samples.
// Sets token `id`'s bit in a mask of `vocab` bits (grown to that size).
void AllowToken(int32_t id, size_t vocab, std::vector<uint64_t>& allowed) {
  allowed.resize(std::max(allowed.size(), (vocab + 63) / 64), 0);
  if (id >= 0 && static_cast<size_t>(id) < vocab) allowed[id / 64] |= uint64_t{1} << (id % 64);
}

bool ForksNow(const Sequence& seq) {
  return seq.sample_index == 0 && seq.group->samples_pending > 0 && seq.num_output_tokens() == 0;
}

}  // namespace

void Engine::Step() {
  if (scheduler_->num_running() == 0 && scheduler_->num_waiting() == 0) return;
  auto t0 = std::chrono::steady_clock::now();
  const int64_t prompt_computed_before = counters_.prompt_tokens_computed;
  if (options_.speculative_ngram_tokens > 0) ProposeDrafts();
  StepPlan plan = scheduler_->Schedule();
  TrimDrafts(plan);
  if (plan.scheduled.empty()) return;
  backend_->CopyBlocks(plan.copies);

  const int num_seqs = static_cast<int>(plan.scheduled.size());
  batch_tokens_.clear();
  batch_positions_.clear();
  query_start_.assign(1, 0);
  seq_lens_.clear();
  logits_rows_.clear();
  std::vector<const BlockTable*> tables;
  std::vector<int64_t> table_tokens;
  std::vector<int32_t> local_lens;
  std::vector<RemoteKv*> remotes;
  bool any_remote = false;
  for (const ScheduledSequence& s : plan.scheduled) {
    Sequence& seq = *s.seq;
    local_lens.push_back(seq.LocalTokens(seq.num_computed + s.num_new_tokens));
    remotes.push_back(seq.remote_kv());
    any_remote |= seq.remote_kv() != nullptr;
    for (int i = 0; i < s.num_new_tokens; ++i) {
      batch_tokens_.push_back(seq.tokens[seq.num_computed + i]);
      batch_positions_.push_back(seq.num_computed + i);
    }
    query_start_.push_back(static_cast<int32_t>(batch_tokens_.size()));
    seq_lens_.push_back(seq.num_computed + s.num_new_tokens);
    // A row for the last token, and one for each draft token's position.
    for (int d = s.samples ? seq.num_drafted : -1; d >= 0; --d)
      logits_rows_.push_back(static_cast<int32_t>(batch_tokens_.size()) - 1 - d);
    tables.push_back(&seq.table);
    table_tokens.push_back(seq.LocalTokens(seq.num_computed + s.num_new_tokens));
    if (seq.in_prefill()) {
      int prompt_part = std::min(s.num_new_tokens, seq.num_prompt_tokens - seq.num_computed);
      counters_.prompt_tokens_computed += prompt_part;
    }
  }
  // Prompt logprobs: a logits row for every prompt position whose next
  // token is a prompt token, after the sampling rows.
  const size_t sampling_rows = logits_rows_.size();
  prompt_rows_.clear();
  for (size_t k = 0; k < plan.scheduled.size(); ++k) {
    const ScheduledSequence& s = plan.scheduled[k];
    Sequence& seq = *s.seq;
    if (seq.group->input.params.prompt_logprobs < 0 || seq.group->input.resume || !seq.in_prefill()) continue;
    const int from = std::max(seq.num_computed, static_cast<int>(seq.group->prompt_logprobs.size()));
    const int to = std::min(seq.num_computed + s.num_new_tokens, seq.num_prompt_tokens - 1);
    for (int pos = from; pos < to; ++pos) {
      logits_rows_.push_back(query_start_[k] + (pos - seq.num_computed));
      prompt_rows_.push_back({&seq, pos});
    }
  }
  auto csr = BuildBlockTableCsr(tables, table_tokens);
  if (!csr.ok()) {
    FailAll(absl::StrCat("internal error building the batch: ", csr.status().message()));
    return;
  }
  const int vocab = model_->config().vocab_size;
  ForwardBatch batch{batch_tokens_, batch_positions_, query_start_, seq_lens_,
                     csr->indptr, csr->indices, logits_rows_};
  if (any_remote) {
    batch.local_lens = local_lens;
    batch.remote = remotes;
  }
  const bool backend_samples = prompt_rows_.empty() && PlanBackendSampling(plan, row_sampling_);
  absl::Status forward;
  if (backend_samples) {
    sampled_.resize(logits_rows_.size());
    forward = backend_->ForwardAndSample(batch, row_sampling_, sampled_);
  } else {
    logits_.resize(logits_rows_.size() * size_t(vocab));
    forward = backend_->Forward(batch, logits_.data());
  }
  if (!forward.ok()) {
    FailAll(absl::StrCat("forward pass failed: ", forward.message()));
    return;
  }
  scheduler_->Commit(plan);
  for (size_t i = 0; i < prompt_rows_.size(); ++i) {
    const auto [seq, pos] = prompt_rows_[i];
    std::vector<SampledToken>& out = seq->group->prompt_logprobs;
    if (static_cast<int>(out.size()) != pos) continue;  // recomputed after a preemption
    std::span<const float> row(logits_.data() + (sampling_rows + i) * size_t(vocab), vocab);
    SampledToken t;
    t.id = seq->tokens[size_t(pos) + 1];
    float log_z = 0;
    t.top = Sampler::TopLogprobs(row, seq->group->input.params.prompt_logprobs, &log_z);
    t.logprob = row[size_t(t.id)] - log_z;
    t.rank = Sampler::Rank(row, t.id);
    out.push_back(std::move(t));
  }

  std::vector<Sequence*> finished;
  if (any_remote) FailBrokenRemoteKv(plan, finished);
  int row = 0;
  int generated = 0;
  for (const ScheduledSequence& s : plan.scheduled) {
    if (!s.samples) continue;
    Sequence& seq = *s.seq;
    if (backend_samples) {
      const int32_t token = sampled_[size_t(row++)];
      if (seq.finished) continue;
      SampledToken t;
      t.id = token >= 0 && token < vocab ? token : 0;
      ProcessToken(seq, std::move(t), finished);
      ++generated;
      ++counters_.device_sampled_tokens;
      continue;
    }
    if (seq.num_drafted > 0) {
      float* rows = logits_.data() + size_t(row) * vocab;
      row += seq.num_drafted + 1;
      generated += VerifyDrafts(seq, rows, finished);
      continue;
    }
    std::span<float> logits(logits_.data() + size_t(row++) * vocab, vocab);
    if (seq.finished) continue;  // its lender failed
    if (ForksNow(seq)) {
      ForkSamples(seq, logits, finished);
      generated += seq.group->input.params.n - 1;
    }
    ProcessSample(seq, logits, finished);
    ++generated;
  }
  for (Sequence* seq : finished) {
    std::string id = seq->id();
    bool last = seq->group->samples_unfinished == 0;
    scheduler_->Remove(seq);
    if (last) {
      absl::MutexLock lock(&mu_);
      active_ids_.erase(id);
      ++counters_.requests_finished;
    }
  }
  counters_.generated_tokens += generated;
  ++counters_.steps;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (secs > 0 && generated > 0) {
    double tps = generated / secs;
    tokens_per_second_ = tokens_per_second_ == 0 ? tps : 0.9 * tokens_per_second_ + 0.1 * tps;
  }
  // Steps with enough prompt tokens to say something about prefill speed
  // (used by the scheduler to weigh a prefix pull against recomputing).
  if (const int64_t prompt = counters_.prompt_tokens_computed - prompt_computed_before; secs > 0 && prompt >= 16) {
    const double pps = static_cast<double>(prompt) / secs;
    prefill_tokens_per_second_ =
        prefill_tokens_per_second_ == 0 ? pps : 0.8 * prefill_tokens_per_second_ + 0.2 * pps;
  }
  (void)num_seqs;
}

void Engine::ForkSamples(Sequence& parent, std::span<const float> logits,
                         std::vector<Sequence*>& finished) {
  RequestGroup& g = *parent.group;
  std::vector<float> row;
  while (g.samples_pending > 0) {
    int index = g.input.params.n - g.samples_pending;
    --g.samples_pending;
    auto child = std::make_unique<Sequence>(parent.group, index, parent.table.Fork(),
                                            g.input.params.seed.value() + index, model_->tokenizer());
    child->num_computed = parent.num_computed;
    child->num_cached_prompt = parent.num_cached_prompt;
    row.assign(logits.begin(), logits.end());
    ProcessSample(*child, row, finished);
    scheduler_->AddRunning(std::move(child));
  }
}

bool Engine::PlanBackendSampling(const StepPlan& plan, std::vector<ForwardBackend::RowSampling>& rows) {
  if (!options_.device_sampling || !backend_->samples_on_device()) return false;
  for (const ScheduledSequence& s : plan.scheduled) {
    if (!s.samples) continue;
    const Sequence& seq = *s.seq;
    if (ForksNow(seq) || seq.remote_kv() != nullptr || seq.num_drafted > 0 ||
        !seq.sampler.PicksOnly(seq.num_output_tokens()))
      return false;
  }
  rows.clear();
  for (const ScheduledSequence& s : plan.scheduled) {
    if (!s.samples) continue;
    Sequence& seq = *s.seq;
    const SamplingParams& p = seq.group->input.params;
    ForwardBackend::RowSampling r;
    r.uniform = seq.sampler.DrawForBackend();
    const bool greedy = p.temperature <= 0.0f || p.top_k == 1;
    r.temperature = greedy ? 0.0f : p.temperature;
    r.top_k = p.top_k;
    r.top_p = p.top_p;
    rows.push_back(r);
  }
  return true;
}

int Engine::DraftLimit(const Sequence& seq) const {
  return seq.draft_limit > 0 ? seq.draft_limit : options_.speculative_ngram_tokens;
}

void Engine::ProposeDrafts() {
  const int block = options_.block_size;
  drafted_.clear();
  int64_t rows_left = max_draft_rows_;
  for (const std::unique_ptr<Sequence>& owned : scheduler_->running()) {
    if (rows_left <= 0) break;
    Sequence& seq = *owned;
    // Decoding one token, with nothing that needs the tokens one by one.
    if (seq.finished || seq.in_prefill() || seq.num_computed != seq.num_tokens() - 1 ||
        seq.matcher || seq.reasoning || seq.remote_kv() != nullptr) {
      continue;
    }
    // The drafts stay inside the block of the last token, without filling
    // it: no block is allocated for them and none holding them enters the
    // prefix cache before they are checked.
    const int used = (seq.num_computed + 1) % block;
    if (used == 0) continue;
    const SamplingParams& p = seq.group->input.params;
    const int k = std::min(
        {DraftLimit(seq), block - 1 - used, static_cast<int>(std::min<int64_t>(rows_left, block)),
         p.max_tokens - seq.num_output_tokens() - 1, max_model_len_ - seq.num_tokens() - 1});
    if (k <= 0) continue;
    const std::vector<int32_t> draft = NgramDraft(seq.tokens, k);
    if (draft.empty()) continue;
    seq.tokens.insert(seq.tokens.end(), draft.begin(), draft.end());
    seq.num_drafted = static_cast<int>(draft.size());
    rows_left -= seq.num_drafted;
    drafted_.push_back(&seq);
  }
}

void Engine::TrimDrafts(StepPlan& plan) {
  if (drafted_.empty()) return;
  for (ScheduledSequence& s : plan.scheduled) {
    Sequence& seq = *s.seq;
    if (seq.num_drafted == 0 || s.samples) continue;  // run whole: checked after the forward
    // The step's token budget ran out inside the drafts: the last token alone.
    seq.TakeDrafts();
    plan.num_tokens -= s.num_new_tokens - 1;
    s.num_new_tokens = 1;
    s.samples = true;
    seq.table.set_num_tokens(seq.LocalTokens(seq.num_computed + 1));
  }
  for (Sequence* seq : drafted_) {
    if (seq->num_drafted == 0) continue;
    const bool runs = std::any_of(plan.scheduled.begin(), plan.scheduled.end(),
                                  [&](const ScheduledSequence& s) { return s.seq == seq; });
    if (!runs) seq->TakeDrafts();  // not scheduled, or preempted
  }
  drafted_.clear();
}

int Engine::VerifyDrafts(Sequence& seq, float* rows, std::vector<Sequence*>& finished) {
  const int k = seq.num_drafted;
  const size_t vocab = static_cast<size_t>(model_->config().vocab_size);
  const std::vector<int32_t> draft = seq.TakeDrafts();
  counters_.draft_tokens += k;
  // Each row is sampled as a step without drafts would have: the token is
  // the model's, and the draft only saves passes while they agree (for a
  // proposed token, sampling and comparing is exactly speculative
  // sampling's accept-or-resample rule).
  int emitted = 0, accepted = 0;
  for (int i = 0; i <= k && !seq.finished; ++i) {
    ProcessSample(seq, std::span<float>(rows + static_cast<size_t>(i) * vocab, vocab), finished);
    ++emitted;
    if (i == k || seq.tokens.back() != draft[static_cast<size_t>(i)]) break;
    ++accepted;
  }
  counters_.accepted_draft_tokens += accepted;
  seq.draft_limit = accepted == k ? std::min(options_.speculative_ngram_tokens, DraftLimit(seq) + 1)
                                  : accepted + 1;
  // The keys and values past the last accepted token are the rejected
  // drafts': those positions are computed again.
  seq.num_computed = seq.num_tokens() - 1;
  seq.table.set_num_tokens(seq.LocalTokens(seq.num_computed));
  return emitted;
}

void Engine::ProcessSample(Sequence& seq, std::span<float> logits, std::vector<Sequence*>& finished) {
  const std::vector<int32_t>& eos = model_->eos_ids();
  int32_t forced = -1, opening = -1;
  bool thinking = false;
  if (seq.reasoning) {
    SyncReasoning(seq);
    forced = seq.reasoning->Forced();
    opening = seq.reasoning->OpeningToken();
    thinking = seq.reasoning->phase() != ReasoningTracker::Phase::kAnswer;
  }
  TokenMask mask;
  mask.allowed = &allowed_tokens_;
  if (forced >= 0) {
    // The thinking's budget is spent (or its opening begun): its end (or
    // the rest of its start) is written whatever the model would say.
    allowed_tokens_.clear();
    AllowToken(forced, logits.size(), allowed_tokens_);
    mask.end_allowed = false;
    ProcessToken(seq, seq.sampler.Sample(logits, seq.prompt(), seq.output(), eos, &mask), finished);
    return;
  }
  if (!seq.matcher || (thinking && opening < 0)) {
    // Free text: no grammar, or the thinking it does not reach.
    ProcessToken(seq, seq.sampler.Sample(logits, seq.prompt(), seq.output(), eos), finished);
    return;
  }
  if (SyncMatcher(seq)) {
    seq.matcher->FillAllowed(token_trie(), &allowed_tokens_);
    mask.end_allowed = seq.matcher->CanEnd();
    // The first token may instead open the thinking.
    if (opening >= 0) AllowToken(opening, logits.size(), allowed_tokens_);
  } else {
    allowed_tokens_.clear();  // a resumed output that breaks the grammar: end it
  }
  ProcessToken(seq, seq.sampler.Sample(logits, seq.prompt(), seq.output(), eos, &mask), finished);
}

void Engine::ProcessToken(Sequence& seq, SampledToken t, std::vector<Sequence*>& finished) {
  const SamplingParams& p = seq.group->input.params;
  const std::vector<int32_t>& eos = model_->eos_ids();
  seq.tokens.push_back(t.id);
  EngineEvent ev;
  ev.token_ids.push_back(t.id);
  if (p.logprobs >= 0) ev.logprobs.push_back(std::move(t));
  if (p.prompt_logprobs >= 0 && !seq.prompt_logprobs_sent && !seq.group->input.resume) {
    ev.prompt_logprobs = seq.group->prompt_logprobs;
    seq.prompt_logprobs_sent = true;
  }
  FinishReason reason = FinishReason::kNone;
  const int32_t id = seq.tokens.back();
  // Under a grammar, end of sequence ends it (ignore_eos or not), and so
  // does a complete match that nothing may follow.
  const bool grammar_done =
      seq.matcher && (Contains(eos, id) || !SyncMatcher(seq) || seq.matcher->Done());
  if ((!p.ignore_eos || seq.matcher) && Contains(eos, id)) {
    reason = FinishReason::kStop;
  } else if (Contains(p.stop_token_ids, id)) {
    reason = FinishReason::kStop;
    ev.stop_token = id;
  }
  // A stop token's text is left out, unless include_stop_str_in_output asks
  // for it (empty for a special token unless skip_special_tokens is off), as
  // vLLM does.
  const bool stop_token = reason == FinishReason::kStop;
  if (!stop_token || p.include_stop_str_in_output) {
    StopChecker::Result r = seq.stop.Add(seq.detokenizer.Add(id));
    ev.text = std::move(r.emit);
    if (r.stopped && !stop_token) {
      reason = FinishReason::kStop;
      ev.stop_reason = r.matched;
    }
  }
  if (reason == FinishReason::kNone && grammar_done) reason = FinishReason::kStop;
  if (reason == FinishReason::kNone &&
      (seq.num_output_tokens() >= p.max_tokens || seq.num_tokens() >= max_model_len_)) {
    reason = FinishReason::kLength;
  }
  if (reason != FinishReason::kNone) {
    if (ev.stop_reason.empty()) {
      // Bytes held back for UTF-8 or a possible stop string are due now.
      StopChecker::Result r = seq.stop.Add(seq.detokenizer.Flush());
      ev.text += r.emit;
      if (r.stopped) {
        ev.stop_reason = r.matched;
        reason = FinishReason::kStop;
      } else {
        ev.text += seq.stop.Flush();
      }
    }
    seq.emitted_bytes += static_cast<int64_t>(ev.text.size());
    Finish(seq, reason, ev);
    finished.push_back(&seq);
  } else {
    seq.emitted_bytes += static_cast<int64_t>(ev.text.size());
    ev.request_id = seq.id();
    ev.sample_index = seq.sample_index;
  }
  seq.group->sink(std::move(ev));
}

void Engine::Finish(Sequence& seq, FinishReason reason, EngineEvent& ev) {
  ev.request_id = seq.id();
  ev.sample_index = seq.sample_index;
  ev.finish = reason;
  ev.prompt_tokens = seq.num_prompt_tokens;
  ev.completion_tokens = seq.num_output_tokens();
  ev.cached_prompt_tokens = seq.num_cached_prompt;
  counters_.prompt_tokens_cached += seq.sample_index == 0 ? seq.num_cached_prompt : 0;
  seq.finished = true;
  --seq.group->samples_unfinished;
}

void Engine::FailAll(const std::string& error) {
  std::vector<Sequence*> all;
  for (const auto& s : scheduler_->running()) all.push_back(s.get());
  // Waiting sequences are found through their request ids.
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&mu_);
    ids.assign(active_ids_.begin(), active_ids_.end());
    for (auto& g : new_requests_) {
      EngineEvent ev;
      ev.request_id = g->input.request_id;
      ev.finish = error.empty() ? FinishReason::kAbort : FinishReason::kError;
      ev.error = error;
      g->sink(std::move(ev));
    }
    new_requests_.clear();
  }
  for (const std::string& id : ids) {
    for (Sequence* s : scheduler_->Find(id)) {
      EngineEvent ev;
      Finish(*s, error.empty() ? FinishReason::kAbort : FinishReason::kError, ev);
      ev.error = error;
      s->group->sink(std::move(ev));
      scheduler_->Remove(s);
    }
  }
  absl::MutexLock lock(&mu_);
  active_ids_.clear();
  (void)all;
}

void Engine::PublishStats() {
  BlockPoolStats b = blocks_->stats();
  EngineStats s = counters_;
  s.blocks_free = b.num_free;
  s.blocks_used = b.num_used;
  s.blocks_cached = b.num_cached;
  s.running = scheduler_->num_running();
  for (const auto& seq : scheduler_->running()) s.running_with_borrowed_kv += seq->remote_kv() != nullptr ? 1 : 0;
  s.waiting = scheduler_->num_waiting();
  s.blocks_needed_waiting = scheduler_->BlocksNeededByWaiting();
  s.tokens_per_second = tokens_per_second_;
  s.prefill_tokens_per_second = prefill_tokens_per_second_;
  s.kv_bytes_per_block = backend_->kv_bytes_per_block();
  s.prefix_cache_hit_rate =
      b.prefix_query_tokens > 0 ? double(b.prefix_hit_tokens) / b.prefix_query_tokens : 0;
  s.preemptions = scheduler_->num_preemptions();
  s.prefix_hit_blocks_host = b.prefix_hit_blocks_host;
  s.prefix_hit_tokens_host = b.prefix_hit_tokens_host;
  s.prefix_hit_blocks_device = b.prefix_hit_blocks - b.prefix_hit_blocks_host;
  s.prefix_hit_tokens_device = b.prefix_hit_tokens - b.prefix_hit_tokens_host;
  if (host_tier_ != nullptr) {
    HostTierStats h = host_tier_->stats();
    s.host_blocks_total = h.num_blocks;
    s.host_blocks_used = h.num_used;
    s.host_swap_out_blocks = h.swap_out_blocks;
    s.host_swap_in_blocks = h.swap_in_blocks;
    s.host_swap_out_bytes = h.swap_out_bytes();
    s.host_swap_in_bytes = h.swap_in_bytes();
    s.host_evictions = h.num_evictions;
  }
  BlockHashEvents events = blocks_->DrainEvents();
  absl::MutexLock lock(&mu_);
  stats_ = s;
  // Keep a bounded backlog for a consumer that stopped draining. When events
  // are lost (here or in the pool), the backlog becomes a snapshot of every
  // cached hash marked `reset`, so the consumer (the scheduler's prefix
  // index) rebuilds its view instead of drifting. The bound leaves room for
  // a snapshot (at most every device and host block) plus
  // max_block_hash_events.
  const size_t bound = static_cast<size_t>(std::max<int64_t>(options_.max_block_hash_events, 0) +
                                           b.num_blocks + s.host_blocks_total);
  if (events.overflowed || hash_events_.events.size() + events.events.size() > bound) {
    hash_events_.events.clear();
    for (uint64_t h : blocks_->CachedHashes()) {
      hash_events_.events.push_back({BlockHashEvent::Kind::kStored, h});
    }
    hash_events_.reset = true;
    return;
  }
  hash_events_.events.insert(hash_events_.events.end(), events.events.begin(), events.events.end());
}

BlockHashEvents Engine::TakeBlockHashEvents() {
  absl::MutexLock lock(&mu_);
  BlockHashEvents out;
  std::swap(out, hash_events_);
  return out;
}

}  // namespace ferry
