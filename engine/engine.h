// The serving engine of one worker: one thread owns the model, the KV cache
// and the block pool and runs the step loop; other threads only post
// requests and aborts to it and read a snapshot of its statistics.
//
// Each step mixes decode tokens and prefill chunks in one ragged batch
// (continuous batching with chunked prefill), reuses cached prefixes, and
// preempts by recompute when KV blocks run out.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <future>
#include <optional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_pool.h"
#include "engine/engine_types.h"
#include "engine/llama_forward.h"
#include "engine/model.h"
#include "engine/step_scheduler.h"
#include "kvcache/block_pool.h"
#include "kvcache/host_tier.h"
#include "engine/backend.h"
#include "kvcache/kv_cache.h"
#include "kvcache/kv_transfer.h"

namespace ferry {

class Engine {
 public:
  // Allocates the KV cache and starts the step loop. InvalidArgument for bad
  // options; ResourceExhausted when the KV memory cannot be had.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::shared_ptr<const Model> model,
                                                        const EngineOptions& options);
  // Create on a backend the caller makes (an embedding application's own,
  // or one that wraps a built-in backend): `make` runs once, with the model,
  // the engine's thread pool and the options; options.device is then only
  // reported. Its errors are returned as they are.
  using BackendFactory = std::function<absl::StatusOr<std::unique_ptr<ForwardBackend>>(
      const Model& model, ThreadPool& pool, const EngineOptions& options)>;
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::shared_ptr<const Model> model,
                                                        const EngineOptions& options, const BackendFactory& make);
  // Aborts what is still running and joins the loop.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues a request; events then arrive on `sink` from the
  // engine thread, the last one of each sample with a finish reason.
  // InvalidArgument (empty prompt, token ids outside the vocabulary, prompt
  // plus max_tokens beyond the context or the KV cache, bad sampling
  // parameters); AlreadyExists for a request id in use; Unavailable after
  // shutdown.
  absl::Status Submit(GenerateInput input, EventSink sink);
  // Aborts a request: its blocks are freed in the next loop iteration and its
  // samples end with FinishReason::kAbort. Unknown ids are ignored.
  void Abort(const std::string& request_id);

  EngineStats Stats() const;
  // Prefix-cache changes since the last call (block content hashes stored
  // and evicted), for the scheduler's cluster-wide prefix index.
  BlockHashEvents TakeBlockHashEvents();
  // Parent hash of every sequence's first block (hash chains start here).
  uint64_t block_hash_root() const { return block_hash_root_; }

  // What the block handles below (KvExport, KvImport, PrefixInstall) share:
  // the blocks they hold stay referenced in the engine (under id_) until the
  // handle is destroyed, which releases them on the engine thread; blocks
  // are copied through the backend from the handle's own thread.
  class BlockHold {
   public:
    BlockHold(const BlockHold&) = delete;
    BlockHold& operator=(const BlockHold&) = delete;

   protected:
    BlockHold(Engine* engine, uint64_t id) : engine_(engine), id_(id) {}
    ~BlockHold();
    Engine* engine_;
    uint64_t id_;
    ForwardBackend* backend_ = nullptr;
    KvCacheShape shape_;
  };

  // ---- KV blocks out to other workers (engine_prefix.cc) ----
  // An open export of blocks [first_block(), end_block()) of a sequence or a
  // cached prompt, for a migration or a prefix pull. The blocks stay
  // referenced, so neither freed, evicted nor written, until the export is
  // destroyed (a sample that ends or is preempted meanwhile leaves them
  // here); destroying it releases them on the engine thread. It must not
  // outlive the engine.
  class KvExport : private BlockHold {
   public:
    // EncodeHeader for blocks [0, end_block()): the chunks' sequence.
    const std::string& header() const { return header_; }
    int64_t first_block() const { return first_block_; }
    int64_t end_block() const { return end_block_; }
    int64_t num_blocks() const { return end_block_ - first_block_; }
    int64_t bytes_per_block() const { return bytes_per_block_; }
    // One chunk (EncodeBlocks) of blocks [first, first + count), clipped to
    // end_block(). Copies from the calling thread: the engine never writes
    // a block an export references, so this needs no trip through its loop.
    // One thread at a time. A count of 0 at end_block() gives a chunk of no
    // blocks; InvalidArgument for any other range outside
    // [first_block(), end_block()).
    absl::StatusOr<std::string> EncodeChunk(int64_t first, int64_t count) const;
    // For a receiver that maps this engine's shared pool (shared_kv_pool()):
    // the pool ids of blocks [first, first + count), clipped as EncodeChunk
    // clips, and each one's checksum (KvBlockChecksum with its index in the
    // sequence), taken now from the calling thread. FailedPrecondition
    // without a shared pool; InvalidArgument as EncodeChunk.
    absl::Status DescribePoolChunk(int64_t first, int64_t count, std::vector<int32_t>* ids,
                                   std::vector<uint64_t>* checksums) const;
    // For a receiver that opened this engine's device pool
    // (device_kv_pool()): the ids of blocks [first, first + count), clipped
    // as EncodeChunk clips. InvalidArgument as EncodeChunk.
    absl::StatusOr<std::vector<int32_t>> BlockIds(int64_t first, int64_t count) const;

   private:
    friend class Engine;
    KvExport(Engine* engine, uint64_t id) : BlockHold(engine, id) {}
    // The ids of blocks [first, first + count) clipped to end_block();
    // InvalidArgument for a range outside [first_block(), end_block()).
    absl::StatusOr<std::span<const int32_t>> Clip(int64_t first, int64_t count) const;
    std::string header_;
    std::vector<int32_t> block_ids_;  // of blocks [first_block_, end_block_)
    int64_t first_block_ = 0;
    int64_t end_block_ = 0;
    int64_t bytes_per_block_ = 0;
  };

  // ---- Live migration, source side (one n=1 request at a time per id) ----
  struct MigrationSnapshot {
    std::string header;          // EncodeHeader for blocks [0, first_block + num_blocks)
    // Blocks [first_block, first_block + num_blocks), held until the
    // snapshot is dropped; encoded chunk by chunk by the sender.
    std::unique_ptr<KvExport> blocks;
    int64_t first_block = 0;
    int64_t num_blocks = 0;      // in this payload
    int64_t total_blocks = 0;    // blocks the sample holds now
    int64_t num_kv_tokens = 0;   // tokens whose K/V the blocks up to here hold
    // Final stage only: the paused sample's state.
    std::optional<GenerateInput> state;
  };
  // Holds the sample's full blocks from `from_block` on while it keeps
  // running; with `final`, pauses it and holds every remaining block and
  // takes its state. The snapshot holds its blocks until it is dropped (a
  // sample that resumes meanwhile copies a held block before writing it). FailedPrecondition when the request is not running here (finished,
  // aborted, waiting, preempted since `from_block` was copied), has n > 1 or
  // runs on a backend that cannot copy KV blocks (sim); Internal when a
  // device copy fails.
  std::future<absl::StatusOr<MigrationSnapshot>> SnapshotForMigration(const std::string& id,
                                                                      int64_t from_block, bool final);
  // The destination took the paused sample: it ends here with kMigrated and
  // its blocks are freed.
  void CommitMigration(const std::string& id, const std::string& destination);
  // The destination failed: the paused sample carries on here.
  void AbortMigration(const std::string& id);

  // ---- Live migration, destination side ----
  // Reserves blocks for `num_tokens` tokens of a sample arriving with the
  // given layout. InvalidArgument for a layout this engine cannot take,
  // ResourceExhausted when blocks are short, AlreadyExists for an id in use,
  // Unimplemented where the backend cannot copy KV blocks (sim). An unused
  // reservation is dropped after `ttl`.
  std::future<absl::Status> ReserveForMigration(const std::string& id, const KvTransferHeader& layout,
                                                int64_t num_tokens, absl::Duration ttl);
  // Writes one chunk of blocks into the reservation (growing it if needed).
  std::future<absl::Status> ReceiveMigratedBlocks(const std::string& id, std::string header,
                                                  std::string payload, int64_t first_block);
  // The blocks a reservation holds now, open for writes from the calling
  // thread, so that chunks need no trip through the loop (which waits for
  // the step in flight): each stays referenced, so never handed to another
  // sequence, until the import is destroyed, which releases them on the
  // engine thread. Destroy it before ResumeMigrated (a resumed sample would
  // copy a block still held before writing into it). It must not outlive
  // the engine.
  class KvImport : private BlockHold {
   public:
    // Blocks [0, num_blocks()) of the sequence can be written here.
    int64_t num_blocks() const { return static_cast<int64_t>(block_ids_.size()); }
    // What ReceiveMigratedBlocks does, for a chunk whose blocks all lie in
    // [0, num_blocks()) (the header's num_blocks at most num_blocks()):
    // checks the header, the layout and every block, then writes. One
    // thread at a time. OutOfRange for a chunk reaching past the blocks held
    // (send it through ReceiveMigratedBlocks, which grows the reservation);
    // the errors of DecodeAndWriteBlocks otherwise.
    absl::Status WriteChunk(std::string_view header, std::string_view payload, int64_t first_block) const;
    // WriteChunk for a same-host chunk: blocks copied by id out of `pool`
    // (this process's mapping of the sender's shared pool), each checked
    // against its checksum (CopyPoolBlocks). OutOfRange as WriteChunk.
    absl::Status WritePoolChunk(std::string_view header, std::span<const std::byte> pool,
                                std::span<const int32_t> pool_blocks, std::span<const uint64_t> checksums,
                                int64_t first_block) const;
    // WriteChunk for blocks of the sender's device pool (CUDA IPC), copied
    // device to device by id. OutOfRange as WriteChunk; the backend's errors.
    absl::Status CopyDevicePoolChunk(std::string_view header, const ForwardBackend::DeviceKvPool& peer,
                                     std::span<const int32_t> peer_blocks, int64_t first_block) const;

   private:
    friend class Engine;
    KvImport(Engine* engine, uint64_t id) : BlockHold(engine, id) {}
    // The header and the reserved blocks a chunk from `first_block` on
    // lands in; OutOfRange past them.
    absl::StatusOr<std::pair<KvTransferHeader, std::span<const int32_t>>> Destination(std::string_view header,
                                                                                     int64_t first_block) const;
    std::string model_key_;
    std::vector<int32_t> block_ids_;
  };
  // NotFound when `id` has no reservation; Unimplemented where the backend
  // cannot copy KV blocks (sim).
  std::future<absl::StatusOr<std::unique_ptr<KvImport>>> OpenMigrationImport(const std::string& id);
  // Starts the sample on its received blocks (`num_kv_tokens` of its tokens
  // have K/V there); events then flow to `sink`.
  std::future<absl::Status> ResumeMigrated(GenerateInput input, int64_t num_kv_tokens, EventSink sink);
  void CancelReservation(const std::string& id);
  // Where processes on this host can map this engine's KV blocks (a host
  // cache in shared memory: the cpu backend's, unless turned off); nullopt
  // otherwise.
  std::optional<SharedPoolRef> shared_kv_pool() const;
  // Where processes on this host can open this engine's KV blocks in device
  // memory (CUDA IPC); nullopt otherwise.
  std::optional<ForwardBackend::DeviceKvPool> device_kv_pool() const { return backend_->ExportDeviceKvPool(); }
  // OK when blocks of `peer` (another worker's device pool) can be copied
  // here (ForwardBackend::OpenDeviceKvPool).
  absl::Status OpenPeerDeviceKvPool(const ForwardBackend::DeviceKvPool& peer) const {
    return backend_->OpenDeviceKvPool(peer);
  }
  // ReceiveMigratedBlocks for blocks of a peer's device pool.
  std::future<absl::Status> ReceiveDevicePoolBlocks(const std::string& id, std::string header,
                                                    ForwardBackend::DeviceKvPool peer, std::vector<int32_t> peer_blocks,
                                                    int64_t first_block);
  // Identifies the model and KV layout in transfers.
  const std::string& kv_model_key() const { return kv_model_key_; }
  KvCacheShape kv_shape() const { return backend_->kv_shape(); }

  // ---- Cached prefixes between workers (engine_prefix.cc) ----
  // Opens an export of the cached blocks (either tier) holding the longest
  // cached prefix of `tokens` whose content hashes, from block 0, equal
  // `block_hashes` (at most that many blocks), to send blocks
  // [first_block, end) of it. The whole chain is checked, but only blocks
  // from first_block on are copied. Read-only for the cached content.
  // InvalidArgument for first_block outside the hashes given; NotFound when
  // this engine caches no block past first_block of that chain;
  // Unimplemented where the backend cannot copy KV blocks (sim).
  std::future<absl::StatusOr<std::unique_ptr<KvExport>>> OpenPrefixExport(
      std::vector<int32_t> tokens, std::vector<uint64_t> block_hashes, int64_t first_block = 0);
  // Writes blocks pulled from another worker into fresh blocks and caches
  // them: a header for blocks [0, end) of `tokens` and chunks holding
  // [first_block, end), each with the index of its first block. The
  // installed blocks chain after this engine's own cached blocks
  // [0, first_block), which stay referenced meanwhile; blocks a chunk holds
  // before first_block are skipped. Returns the number of leading blocks of
  // `tokens` cached here afterwards. Nothing is cached unless every chunk
  // checks out: InvalidArgument for a layout or chunk that does not fit,
  // DataLoss for a checksum mismatch or a missing block, FailedPrecondition
  // when blocks [0, first_block) are no longer cached here, ResourceExhausted
  // when blocks are short, Unimplemented where the backend cannot copy KV
  // blocks (sim).
  std::future<absl::StatusOr<int64_t>> InstallCachedPrefix(std::vector<int32_t> tokens, std::string header,
                                                           std::vector<std::pair<int64_t, std::string>> chunks,
                                                           int64_t first_block = 0);
  // InstallCachedPrefix a chunk at a time, as the chunks arrive: fresh
  // blocks for [first_block(), end_block()) are taken when it opens (and the
  // engine's own cached blocks before first_block pinned), each chunk is
  // checked and written from the calling thread (no step reads or writes
  // the fresh blocks, so this needs no trip through the loop and holds no
  // more than the chunk in hand), and Commit caches them once every block
  // is there. Destroyed without a commit, it gives the fresh blocks back
  // unhashed. One thread at a time; it must not outlive the engine.
  class PrefixInstall : private BlockHold {
   public:
    int64_t first_block() const { return first_block_; }
    int64_t end_block() const { return end_block_; }
    // Checks one chunk holding blocks from `chunk_first` on (each block with
    // its own index and checksum) and writes those from first_block() on;
    // blocks before it are skipped. InvalidArgument for a chunk outside the
    // prefix or that does not fit, DataLoss for a checksum mismatch.
    absl::Status WriteChunk(int64_t chunk_first, std::string_view payload);
    // WriteChunk for a same-host chunk: blocks from `chunk_first` on copied
    // by id out of `pool` (this process's mapping of the exporter's shared
    // pool), each checked against its checksum (CopyPoolBlocks).
    absl::Status WritePoolChunk(int64_t chunk_first, std::span<const std::byte> pool,
                                std::span<const int32_t> pool_blocks, std::span<const uint64_t> checksums);
    // WriteChunk for blocks of the exporter's device pool (CUDA IPC), copied
    // device to device by id (Engine::OpenPeerDeviceKvPool first). Nothing
    // checks their content: the exporter must hold them until the copies
    // are done. InvalidArgument for a chunk outside the prefix; the
    // backend's errors.
    absl::Status CopyDevicePoolChunk(int64_t chunk_first, const ForwardBackend::DeviceKvPool& peer,
                                     std::span<const int32_t> peer_blocks);
    // Caches the blocks: DataLoss when one was never written. Returns the
    // number of leading blocks of the prompt cached afterwards.
    std::future<absl::StatusOr<int64_t>> Commit();

   private:
    friend class Engine;
    PrefixInstall(Engine* engine, uint64_t id) : BlockHold(engine, id) {}
    // How many leading blocks of a chunk of `count` blocks from
    // `chunk_first` lie before first_block() (skipped, not written).
    // InvalidArgument for a chunk outside the prefix.
    absl::StatusOr<size_t> LeadingBlocksToSkip(int64_t chunk_first, size_t count) const;
    std::string model_key_;
    std::vector<int32_t> tokens_;  // the prompt, for the commit's hashes
    KvTransferHeader header_;
    std::vector<int32_t> block_ids_;  // of blocks [0, end_block_): the pinned ones, then the fresh ones
    std::vector<char> written_;
    int64_t first_block_ = 0;
    int64_t end_block_ = 0;
  };
  // InvalidArgument for a header or range that does not fit `tokens`,
  // FailedPrecondition when blocks [0, first_block) are no longer cached
  // here, ResourceExhausted when blocks are short, Unimplemented where the
  // backend cannot copy KV blocks (sim).
  std::future<absl::StatusOr<std::unique_ptr<PrefixInstall>>> OpenPrefixInstall(std::vector<int32_t> tokens,
                                                                                 std::string header,
                                                                                 int64_t first_block = 0);

  // ---- Borrowed KV blocks, lender side (CPU backend) ----
  // Reserves `num_blocks` blocks of this pool for lease `lease_id` (they
  // count as used from then on) and returns their ids in the host cache.
  // Unimplemented where KV lives on a device; InvalidArgument for
  // num_blocks <= 0; AlreadyExists for a lease id in use; ResourceExhausted
  // when fewer blocks are free.
  std::future<absl::StatusOr<std::vector<int32_t>>> LendBlocks(const std::string& lease_id, int64_t num_blocks);
  // Frees a lease's blocks; unknown ids are ignored. Whoever read or wrote
  // the blocks must have stopped.
  void ReturnLentBlocks(const std::string& lease_id);
  // The host cache lent blocks live in (null where KV is on a device).
  // Threading: the step loop never touches a lent block's memory, so the one
  // thread serving its lease may, until ReturnLentBlocks.
  KvCache* lending_kv() const { return kv_; }

  const Model& model() const { return *model_; }
  const EngineOptions& options() const { return options_; }
  int max_model_len() const { return max_model_len_; }
  int64_t num_kv_blocks() const { return backend_->kv_shape().num_blocks; }

 private:
  Engine(std::shared_ptr<const Model> model, const EngineOptions& options);
  // A KvBlockWriter into `backend`'s blocks (fp32, canonical layout).
  static auto BlockWriter(ForwardBackend* backend) {
    return [backend](int32_t block, std::span<const float> in) { return backend->WriteKvBlockF32(block, in); };
  }
  void Loop();
  void DrainInbox();
  void Step();
  void ProcessSample(Sequence& seq, std::span<float> logits, std::vector<Sequence*>& finished);
  // The rest of ProcessSample once the token is picked: stop checks, text,
  // the event.
  void ProcessToken(Sequence& seq, SampledToken t, std::vector<Sequence*>& finished);
  // For a step whose every sampled row the backend can pick itself: their
  // parameters and draws (in `rows`); false (nothing drawn) otherwise.
  bool PlanBackendSampling(const StepPlan& plan, std::vector<ForwardBackend::RowSampling>& rows);
  void ForkSamples(Sequence& parent, std::span<const float> logits, std::vector<Sequence*>& finished);
  void Finish(Sequence& seq, FinishReason reason, EngineEvent& event);
  void FailAll(const std::string& error);
  void PublishStats();
  // Runs `task` on the loop thread at its next iteration.
  void Post(std::function<void()> task);
  absl::StatusOr<std::unique_ptr<Sequence>> MakeSequence(const std::shared_ptr<RequestGroup>& group);
  absl::Status ValidateInput(const GenerateInput& input) const;
  // Compiles params.structured into input.grammar (InvalidArgument when the
  // schema, regex or choice list is bad or unsupported), and tokenizes
  // params.reasoning's tags.
  absl::Status CompileGrammar(GenerateInput& input) const;
  // Brings seq.matcher up to the sample's output; false when an output
  // token breaks the grammar.
  bool SyncMatcher(Sequence& seq);
  // Brings seq.reasoning up to the output's end.
  void SyncReasoning(Sequence& seq);
  // Speculative decoding: appends drafts to decoding sequences before the
  // step is planned; takes back those the plan does not run whole; after
  // the forward, samples a draft sequence's rows (`rows`: num_drafted + 1
  // of them) until a sample differs from its draft. Returns the tokens
  // emitted.
  void ProposeDrafts();
  // How many drafts `seq` may get now (Sequence::draft_limit).
  int DraftLimit(const Sequence& seq) const;
  void TrimDrafts(StepPlan& plan);
  int VerifyDrafts(Sequence& seq, float* rows, std::vector<Sequence*>& finished);
  const structured::TokenTrie& token_trie();
  void ExpireReservations();
  // Grows reservation `id` to header.num_blocks and returns the ids of its
  // blocks [first_block, header.num_blocks), for a chunk that reaches past
  // what the reservation holds.
  absl::StatusOr<std::vector<int32_t>> GrowReservationOnLoop(const std::string& id, const KvTransferHeader& header,
                                                             int64_t first_block);
  absl::Status ValidateRemoteKv(const GenerateInput& input, int64_t total) const;
  // Ends the scheduled sequences whose lender failed during the step.
  void FailBrokenRemoteKv(const StepPlan& plan, std::vector<Sequence*>& finished);
  // An export of blocks [first_block, end_block) of `pinned` (which holds a
  // reference to each), whose header says `num_tokens` tokens.
  std::unique_ptr<KvExport> MakeExportOnLoop(BlockTable pinned, int64_t first_block, int64_t end_block,
                                             int64_t num_tokens);
  // The loop-thread halves of OpenPrefixExport and InstallCachedPrefix.
  absl::StatusOr<std::unique_ptr<KvExport>> OpenPrefixExportOnLoop(const std::vector<int32_t>& tokens,
                                                                       const std::vector<uint64_t>& block_hashes,
                                                                       int64_t first_block);
  absl::StatusOr<int64_t> InstallCachedPrefixOnLoop(const std::vector<int32_t>& tokens, const std::string& header,
                                                    const std::vector<std::pair<int64_t, std::string>>& chunks,
                                                    int64_t first_block);
  absl::StatusOr<std::unique_ptr<PrefixInstall>> OpenPrefixInstallOnLoop(const std::vector<int32_t>& tokens,
                                                                         const std::string& header,
                                                                         int64_t first_block);
  absl::StatusOr<int64_t> CommitPrefixInstallOnLoop(uint64_t id, const std::vector<int32_t>& tokens,
                                                    int64_t first_block);

  struct Reservation {
    BlockTable table;
    absl::Time deadline;
  };

  std::shared_ptr<const Model> model_;
  EngineOptions options_;
  int max_model_len_ = 0;
  ThreadPool pool_;
  std::unique_ptr<ForwardBackend> backend_;
  KvCache* kv_ = nullptr;  // the backend's host cache, null where KV lives on a device
  // OK where the backend copies KV blocks in and out as fp32
  // (ReadKvBlockF32), which migration and prefix pulls need; else why not.
  absl::Status kv_io_status_;
  // Host tier of the prefix cache (null when off); used by blocks_.
  std::unique_ptr<KvBlockIo> host_io_;
  std::unique_ptr<HostTier> host_tier_;
  std::unique_ptr<BlockPool> blocks_;
  std::unique_ptr<StepScheduler> scheduler_;

  // Inbox, shared with posting threads.
  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<RequestGroup>> new_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> aborts_ ABSL_GUARDED_BY(mu_);
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> active_ids_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_arrival_ ABSL_GUARDED_BY(mu_) = 0;
  EngineStats stats_ ABSL_GUARDED_BY(mu_);
  BlockHashEvents hash_events_ ABSL_GUARDED_BY(mu_);
  uint64_t block_hash_root_ = 0;

  // Loop-thread state.
  std::string kv_model_key_;
  absl::flat_hash_map<std::string, std::unique_ptr<Sequence>> paused_;  // mid-migration
  absl::flat_hash_map<std::string, Reservation> reservations_;
  absl::flat_hash_map<std::string, std::vector<BlockRef>> lent_;  // by lease id
  // The blocks of every open BlockHold (KvExport, KvImport, PrefixInstall), by id.
  absl::flat_hash_map<uint64_t, BlockTable> held_;
  uint64_t next_hold_id_ = 0;
  Rng seed_rng_;
  std::vector<float> logits_;
  std::unique_ptr<structured::TokenTrie> token_trie_;  // built on first use
  std::vector<uint64_t> allowed_tokens_;
  std::vector<Sequence*> drafted_;  // sequences given drafts this step
  int64_t max_draft_rows_ = 0;      // logits rows a step may spend on drafts
  std::vector<ForwardBackend::RowSampling> row_sampling_;
  std::vector<int32_t> sampled_;
  std::vector<int32_t> batch_tokens_, batch_positions_, query_start_, seq_lens_, logits_rows_;
  // This step's prompt-logprobs rows (after the sampling rows): the
  // sequence and the position whose logits score the next prompt token.
  std::vector<std::pair<Sequence*, int>> prompt_rows_;
  double tokens_per_second_ = 0;
  double prefill_tokens_per_second_ = 0;
  EngineStats counters_;
  std::thread thread_;
};

}  // namespace ferry
