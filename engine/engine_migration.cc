// Engine: sequences built from requests (fresh or resumed), and the engine's
// half of live migration. Every function here that touches engine state runs
// on the loop thread, through Post().
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/engine.h"

namespace ferry {

void Engine::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

absl::StatusOr<std::unique_ptr<Sequence>> Engine::MakeSequence(const std::shared_ptr<RequestGroup>& g) {
  SamplingParams& p = g->input.params;
  const uint64_t seed = p.seed.value_or(seed_rng_.Next());
  p.seed = seed;
  if (!g->input.resume) {
    return std::make_unique<Sequence>(g, 0, blocks_->NewTable(), seed, model_->tokenizer());
  }
  const ResumeState& r = *g->input.resume;
  auto seq = std::make_unique<Sequence>(g, r.sample_index, blocks_->NewTable(), seed + r.sample_index,
                                        model_->tokenizer());
  seq->tokens.insert(seq->tokens.end(), r.output_ids.begin(), r.output_ids.end());
  seq->num_cached_prompt = r.cached_prompt_tokens;
  if (!r.rng_state.empty()) {
    FERRY_RETURN_IF_ERROR(seq->sampler.rng().LoadState(r.rng_state));
  } else if (p.temperature > 0 && p.top_k != 1) {
    // Each sampled (non-greedy) token drew one number: replay those draws.
    for (size_t i = 0; i < r.output_ids.size(); ++i) seq->sampler.rng().Uniform();
  }
  // Rebuild the text state: what the outputs decode to beyond what the client
  // already has is held back, as it was where the sample came from.
  std::string text;
  for (int32_t id : r.output_ids) text += seq->detokenizer.Add(id);
  const size_t emitted = std::min<size_t>(text.size(), static_cast<size_t>(r.emitted_text_bytes));
  seq->stop.set_pending(text.substr(emitted));
  seq->emitted_bytes = r.emitted_text_bytes;
  return seq;
}

std::future<absl::StatusOr<Engine::MigrationSnapshot>> Engine::SnapshotForMigration(
    const std::string& id, int64_t from_block, bool final) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<MigrationSnapshot>>>();
  auto future = promise->get_future();
  Post([this, id, from_block, final, promise] {
    auto fail = [&](std::string why) {
      promise->set_value(absl::FailedPreconditionError(absl::StrCat("request ", id, ": ", why)));
    };
    std::vector<Sequence*> seqs = scheduler_->Find(id);
    if (seqs.empty()) return fail("not running on this worker");
    if (seqs.size() != 1 || seqs[0]->group->input.params.n != 1) {
      return fail("only requests with n = 1 migrate");
    }
    Sequence& seq = *seqs[0];
    if (seq.remote_kv() != nullptr) return fail("requests with borrowed KV blocks do not migrate");
    const auto& running = scheduler_->running();
    bool is_running = std::any_of(running.begin(), running.end(),
                                  [&](const auto& s) { return s.get() == &seq; });
    const int bs = options_.block_size;
    const int64_t kv_tokens = seq.num_computed;
    const int64_t full_blocks = kv_tokens / bs;
    if (!is_running || kv_tokens == 0) return fail("not running (waiting or preempted)");
    if (from_block > full_blocks) return fail("preempted while being copied");
    if (!kv_io_status_.ok()) {
      return fail(absl::StrCat("KV blocks do not migrate: ", kv_io_status_.message()));
    }
    MigrationSnapshot snap;
    snap.first_block = from_block;
    const int64_t end_block = final ? NumBlocksForTokens(kv_tokens, bs) : full_blocks;
    snap.num_blocks = end_block - from_block;
    snap.total_blocks = seq.table.num_blocks();
    snap.num_kv_tokens = final ? kv_tokens : end_block * bs;
    // Referenced until the sender drops the snapshot: it encodes them off
    // this thread, and a step that writes into a shared block copies it
    // first, so they stay as they are now.
    BlockTable pinned = blocks_->NewTable();
    for (int64_t b = 0; b < end_block; ++b) pinned.Append(seq.table.blocks()[b].Share());
    snap.blocks = MakeExportOnLoop(std::move(pinned), from_block, end_block, snap.num_kv_tokens);
    snap.header = snap.blocks->header();
    if (final) {
      GenerateInput state;
      state.request_id = id;
      state.prompt_ids.assign(seq.tokens.begin(), seq.tokens.begin() + seq.num_prompt_tokens);
      state.params = seq.group->input.params;
      state.priority = seq.priority();
      ResumeState r;
      r.output_ids.assign(seq.tokens.begin() + seq.num_prompt_tokens, seq.tokens.end());
      r.rng_state = seq.sampler.rng().SaveState();
      r.emitted_text_bytes = seq.emitted_bytes;
      r.sample_index = seq.sample_index;
      r.cached_prompt_tokens = seq.num_cached_prompt;
      state.resume = std::move(r);
      snap.state = std::move(state);
      // Paused: out of the schedule, blocks kept until commit or abort.
      paused_[id] = scheduler_->Remove(&seq);
    }
    promise->set_value(std::move(snap));
  });
  return future;
}

void Engine::CommitMigration(const std::string& id, const std::string& destination) {
  Post([this, id, destination] {
    auto it = paused_.find(id);
    if (it == paused_.end()) return;  // aborted by its client meanwhile
    Sequence& seq = *it->second;
    EngineEvent ev;
    Finish(seq, FinishReason::kMigrated, ev);
    ev.migrated_to = destination;
    seq.group->sink(std::move(ev));
    paused_.erase(it);  // frees the blocks
    absl::MutexLock lock(&mu_);
    active_ids_.erase(id);
  });
}

void Engine::AbortMigration(const std::string& id) {
  Post([this, id] {
    auto it = paused_.find(id);
    if (it == paused_.end()) return;
    scheduler_->AddRunning(std::move(it->second));
    paused_.erase(it);
  });
}

std::future<absl::Status> Engine::ReserveForMigration(const std::string& id,
                                                      const KvTransferHeader& layout,
                                                      int64_t num_tokens, absl::Duration ttl) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  auto future = promise->get_future();
  Post([this, id, layout, num_tokens, ttl, promise] {
    if (!kv_io_status_.ok()) {
      return promise->set_value(absl::UnimplementedError(
          absl::StrCat("KV blocks do not migrate: ", kv_io_status_.message())));
    }
    absl::Status s = CheckKvTransferLayout(layout, backend_->kv_shape(), kv_model_key_);
    if (!s.ok()) return promise->set_value(s);
    if (num_tokens <= 0 || num_tokens > max_model_len_) {
      return promise->set_value(absl::InvalidArgumentError("bad token count to reserve"));
    }
    {
      absl::MutexLock lock(&mu_);
      if (active_ids_.contains(id) || reservations_.contains(id)) {
        return promise->set_value(absl::AlreadyExistsError(absl::StrCat("request ", id, " is already here")));
      }
    }
    auto blocks = blocks_->Allocate(NumBlocksForTokens(num_tokens, options_.block_size));
    if (!blocks) {
      return promise->set_value(absl::ResourceExhaustedError(absl::StrCat(
          "not enough free KV blocks for ", num_tokens, " tokens (", blocks_->num_free(), " free)")));
    }
    Reservation r{blocks_->NewTable(), absl::Now() + ttl};
    r.table.Append(std::move(*blocks));
    reservations_.emplace(id, std::move(r));
    promise->set_value(absl::OkStatus());
  });
  return future;
}

absl::StatusOr<std::vector<int32_t>> Engine::GrowReservationOnLoop(const std::string& id,
                                                                    const KvTransferHeader& header,
                                                                    int64_t first_block) {
  auto it = reservations_.find(id);
  if (it == reservations_.end()) return absl::NotFoundError(absl::StrCat("no KV reservation for ", id));
  BlockTable& table = it->second.table;
  if (header.num_blocks > table.num_blocks()) {
    auto more = blocks_->Allocate(header.num_blocks - table.num_blocks());
    if (!more) return absl::ResourceExhaustedError("not enough free KV blocks");
    table.Append(std::move(*more));
  }
  if (first_block < 0 || first_block > header.num_blocks) return absl::InvalidArgumentError("chunk outside the sequence");
  if (!kv_io_status_.ok()) {
    return absl::UnimplementedError(absl::StrCat("KV blocks do not migrate: ", kv_io_status_.message()));
  }
  std::vector<int32_t> ids = table.BlockIds();
  return std::vector<int32_t>(ids.begin() + first_block, ids.begin() + header.num_blocks);
}

std::future<absl::Status> Engine::ReceiveMigratedBlocks(const std::string& id, std::string header,
                                                        std::string payload, int64_t first_block) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  auto future = promise->get_future();
  Post([this, id, header = std::move(header), payload = std::move(payload), first_block, promise] {
    auto hdr = DecodeHeader(header);
    if (!hdr.ok()) return promise->set_value(hdr.status());
    absl::StatusOr<std::vector<int32_t>> dst = GrowReservationOnLoop(id, *hdr, first_block);
    if (!dst.ok()) return promise->set_value(dst.status());
    promise->set_value(DecodeAndWriteBlocks(payload, *hdr, kv_model_key_, backend_->kv_shape(),
                                            BlockWriter(backend_.get()), *dst, first_block));
  });
  return future;
}

std::future<absl::Status> Engine::ReceiveDevicePoolBlocks(const std::string& id, std::string header,
                                                          ForwardBackend::DeviceKvPool peer,
                                                          std::vector<int32_t> peer_blocks, int64_t first_block) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  auto future = promise->get_future();
  Post([this, id, header = std::move(header), peer = std::move(peer), peer_blocks = std::move(peer_blocks),
        first_block, promise] {
    auto hdr = DecodeHeader(header);
    if (!hdr.ok()) return promise->set_value(hdr.status());
    if (absl::Status s = CheckKvTransferLayout(*hdr, backend_->kv_shape(), kv_model_key_); !s.ok()) {
      return promise->set_value(s);
    }
    absl::StatusOr<std::vector<int32_t>> dst = GrowReservationOnLoop(id, *hdr, first_block);
    if (!dst.ok()) return promise->set_value(dst.status());
    if (dst->size() != peer_blocks.size()) {
      return promise->set_value(absl::InvalidArgumentError("chunk names a block count its header does not"));
    }
    promise->set_value(backend_->CopyFromDeviceKvPool(peer, peer_blocks, *dst));
  });
  return future;
}

absl::StatusOr<std::pair<KvTransferHeader, std::span<const int32_t>>> Engine::KvImport::Destination(
    std::string_view header, int64_t first_block) const {
  FERRY_ASSIGN_OR_RETURN(KvTransferHeader hdr, DecodeHeader(header));
  if (first_block < 0 || first_block > hdr.num_blocks) {
    return absl::InvalidArgumentError("chunk outside the sequence");
  }
  if (hdr.num_blocks > num_blocks()) {
    return absl::OutOfRangeError(absl::StrCat("chunk reaches block ", hdr.num_blocks, "; ", num_blocks(),
                                              " are open here"));
  }
  const auto dst = std::span<const int32_t>(block_ids_).subspan(static_cast<size_t>(first_block),
                                                                 static_cast<size_t>(hdr.num_blocks - first_block));
  return std::make_pair(std::move(hdr), dst);
}

absl::Status Engine::KvImport::WriteChunk(std::string_view header, std::string_view payload,
                                          int64_t first_block) const {
  FERRY_ASSIGN_OR_RETURN(auto to, Destination(header, first_block));
  // From the calling thread: the backend's fp32 writes allow it for blocks
  // no step reads or writes, which a reserved block is. A block at a time,
  // each written while still in cache after its checksum (a failed block
  // fails the migration, so earlier ones need not stay unwritten).
  FERRY_ASSIGN_OR_RETURN(const std::vector<std::string> pieces, SplitBlocks(payload, 1));
  if (pieces.size() != to.second.size()) {
    return absl::InvalidArgumentError(absl::StrCat("chunk holds ", pieces.size(), " blocks but its header says ",
                                                   to.second.size()));
  }
  for (size_t i = 0; i < pieces.size(); ++i) {
    FERRY_RETURN_IF_ERROR(DecodeAndWriteBlocks(pieces[i], to.first, model_key_, shape_, BlockWriter(backend_),
                                               to.second.subspan(i, 1), first_block + static_cast<int64_t>(i)));
  }
  return absl::OkStatus();
}

absl::Status Engine::KvImport::WritePoolChunk(std::string_view header, std::span<const std::byte> pool,
                                              std::span<const int32_t> pool_blocks,
                                              std::span<const uint64_t> checksums, int64_t first_block) const {
  FERRY_ASSIGN_OR_RETURN(auto to, Destination(header, first_block));
  return CopyPoolBlocks(pool, pool_blocks, checksums, to.first, model_key_, shape_, BlockWriter(backend_), to.second,
                        first_block);
}

absl::Status Engine::KvImport::CopyDevicePoolChunk(std::string_view header, const ForwardBackend::DeviceKvPool& peer,
                                                   std::span<const int32_t> peer_blocks, int64_t first_block) const {
  FERRY_ASSIGN_OR_RETURN(auto to, Destination(header, first_block));
  FERRY_RETURN_IF_ERROR(CheckKvTransferLayout(to.first, shape_, model_key_));
  if (to.second.size() != peer_blocks.size()) {
    return absl::InvalidArgumentError(absl::StrCat("chunk names ", peer_blocks.size(), " blocks; its header says ",
                                                   to.second.size()));
  }
  return backend_->CopyFromDeviceKvPool(peer, peer_blocks, to.second);
}

std::future<absl::StatusOr<std::unique_ptr<Engine::KvImport>>> Engine::OpenMigrationImport(const std::string& id) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::unique_ptr<KvImport>>>>();
  auto future = promise->get_future();
  Post([this, id, promise] {
    if (!kv_io_status_.ok()) {
      return promise->set_value(absl::UnimplementedError(
          absl::StrCat("KV blocks do not migrate: ", kv_io_status_.message())));
    }
    auto it = reservations_.find(id);
    if (it == reservations_.end()) {
      return promise->set_value(absl::NotFoundError(absl::StrCat("no KV reservation for ", id)));
    }
    BlockTable pinned = blocks_->NewTable();
    for (const BlockRef& b : it->second.table.blocks()) pinned.Append(b.Share());
    auto out = std::unique_ptr<KvImport>(new KvImport(this, next_hold_id_++));
    out->backend_ = backend_.get();
    out->shape_ = backend_->kv_shape();
    out->model_key_ = kv_model_key_;
    out->block_ids_ = pinned.BlockIds();
    held_.emplace(out->id_, std::move(pinned));
    promise->set_value(std::move(out));
  });
  return future;
}

std::future<absl::Status> Engine::ResumeMigrated(GenerateInput input, int64_t num_kv_tokens,
                                                 EventSink sink) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  auto future = promise->get_future();
  absl::Status valid = ValidateInput(input);
  if (valid.ok()) valid = CompileGrammar(input);
  if (!valid.ok() || !input.resume) {
    promise->set_value(valid.ok() ? absl::InvalidArgumentError("no resume state") : valid);
    return future;
  }
  auto group = std::make_shared<RequestGroup>();
  group->input = std::move(input);
  group->sink = std::move(sink);
  group->samples_unfinished = 1;
  Post([this, group, num_kv_tokens, promise] {
    const std::string& id = group->input.request_id;
    auto it = reservations_.find(id);
    if (it == reservations_.end()) {
      return promise->set_value(absl::NotFoundError(absl::StrCat("no KV reservation for ", id)));
    }
    auto seq = MakeSequence(group);
    if (!seq.ok()) return promise->set_value(seq.status());
    Sequence& s = **seq;
    if (num_kv_tokens <= 0 || num_kv_tokens >= s.num_tokens() + 1 ||
        num_kv_tokens > it->second.table.capacity_tokens()) {
      return promise->set_value(absl::InvalidArgumentError("KV token count does not fit the state"));
    }
    {
      absl::MutexLock lock(&mu_);
      if (!active_ids_.insert(id).second) {
        return promise->set_value(absl::AlreadyExistsError(absl::StrCat("request ", id, " is already here")));
      }
      group->arrival = next_arrival_++;
    }
    s.table = std::move(it->second.table);
    reservations_.erase(it);
    // Drop blocks beyond what the received tokens need.
    s.num_computed = static_cast<int>(num_kv_tokens);
    s.table.set_num_tokens(num_kv_tokens);
    scheduler_->AddRunning(std::move(*seq));
    promise->set_value(absl::OkStatus());
  });
  return future;
}

void Engine::CancelReservation(const std::string& id) {
  Post([this, id] { reservations_.erase(id); });
}

void Engine::ExpireReservations() {
  if (reservations_.empty()) return;
  absl::Time now = absl::Now();
  for (auto it = reservations_.begin(); it != reservations_.end();) {
    if (it->second.deadline <= now) {
      Logger("engine")->warn("req={} KV reservation expired", it->first);
      reservations_.erase(it++);
    } else {
      ++it;
    }
  }
}

}  // namespace ferry
