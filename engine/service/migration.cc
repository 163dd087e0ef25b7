#include "engine/service/migration.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <span>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_credentials.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/service/request_convert.h"
#include "engine/service/worker_service.h"
#include "kvcache/kv_transfer.h"

namespace ferry {
namespace {

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMicroseconds(d);
}

v1::KvChunk ToChunk(const std::string& id, std::string header, std::string data, int64_t first_block,
                    int64_t num_kv_tokens) {
  v1::KvChunk c;
  c.set_request_id(id);
  c.set_header(std::move(header));
  c.set_data(std::move(data));
  c.set_first_block(first_block);
  c.set_num_tokens(static_cast<int32_t>(num_kv_tokens));
  return c;
}

}  // namespace

namespace {

// Drops whatever the destination holds of `id` (a reservation, or a request
// it resumed) after a migration that did not commit.
void AbortOnDestination(v1::Worker::Stub& stub, const std::string& id, absl::Duration timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(timeout));
  v1::AbortRequest request;
  request.set_request_id(id);
  v1::AbortResponse response;
  grpc::Status s = stub.Abort(&ctx, request, &response);
  if (!s.ok()) {
    Logger("worker")->warn("req={} migration failed; releasing it on the destination failed too: {}", id,
                           s.error_message());
  }
}

// Waits until the destination has written blocks [0, blocks) of `id`, up
// to `timeout`; a destination that does not answer is not waited for.
void WaitForCatchUp(v1::Worker::Stub& stub, const std::string& id, int64_t blocks, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  v1::KvTransferProgressRequest request;
  request.set_request_id(id);
  absl::Duration pause = absl::Microseconds(200);
  bool seen = false;
  while (absl::Now() < give_up) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(absl::Seconds(1)));
    v1::KvTransferProgressResponse progress;
    if (!stub.KvTransferProgress(&ctx, request, &progress).ok()) return;
    // Gone after it was seen: the transfer ended there (the stream says why).
    if (progress.blocks_written() >= blocks || (seen && !progress.found())) return;
    seen = seen || progress.found();
    absl::SleepFor(pause);
    pause = std::min(pause * 2, absl::Milliseconds(5));
  }
}

absl::StatusOr<MigrationResult> CopyOut(Engine& engine, const std::string& id, const std::string& destination,
                                        const LiveMigrationOptions& options, OutboundMigrations* outbound) {
  MigrationResult result;
  FERRY_ASSIGN_OR_RETURN(Engine::MigrationSnapshot snap, engine.SnapshotForMigration(id, 0, false).get());
  FERRY_ASSIGN_OR_RETURN(KvTransferHeader layout, DecodeHeader(snap.header));
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_interval)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  // A stalled stream sends no data: keep pinging anyway.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  auto channel = grpc::CreateCustomChannel(destination, ChannelCredentialsOrInsecure(options.channel_credentials),
                                           args);
  auto stub = v1::Worker::NewStub(channel);

  // 1. Handshake: the destination reserves blocks for the current length.
  v1::ReserveKvRequest reserve;
  reserve.set_request_id(id);
  v1::KvLayout* l = reserve.mutable_layout();
  l->set_model_id(layout.model_id);
  l->set_num_layers(layout.num_layers);
  l->set_num_kv_heads(layout.num_kv_heads);
  l->set_head_dim(layout.head_dim);
  l->set_block_size(layout.block_size);
  l->set_dtype(layout.dtype);
  reserve.set_num_tokens(static_cast<int32_t>(std::max<int64_t>(snap.num_kv_tokens, 1) + layout.block_size));
  const int64_t bytes_per_block = std::max<int64_t>(snap.blocks->bytes_per_block(), 1);
  // On the same host, the destination may copy the blocks straight out of
  // this engine's shared pool: then chunks name blocks instead of carrying
  // them.
  std::optional<SharedPoolRef> pool = options.shared_pool ? engine.shared_kv_pool() : std::nullopt;
  if (pool) *reserve.mutable_source_pool() = ToSharedKvPool(*pool, bytes_per_block);
  // Likewise a device pool (CUDA IPC): copied device to device.
  std::optional<ForwardBackend::DeviceKvPool> device_pool =
      options.shared_pool ? engine.device_kv_pool() : std::nullopt;
  if (device_pool) *reserve.mutable_device_pool() = ToDeviceKvPool(*device_pool);
  v1::ReserveKvResponse reserved;
  grpc::ClientContext reserve_ctx;
  reserve_ctx.set_deadline(Deadline(options.rpc_timeout));
  FERRY_RETURN_IF_ERROR(FromGrpcStatus(stub->ReserveKv(&reserve_ctx, reserve, &reserved)));
  if (!reserved.accepted()) {
    return absl::ResourceExhaustedError(absl::StrCat("destination refused: ", reserved.reason()));
  }
  // From here on, a failure must leave nothing of the request there: a
  // reservation whose transfer stream was cancelled before the destination
  // saw it, or a request it resumed just before the failure. (Aborting an id
  // also drops its reservation.)
  auto release = absl::MakeCleanup([&] { AbortOnDestination(*stub, id, absl::Seconds(2)); });
  result.device_pool = device_pool.has_value() && reserved.opens_device_pool();
  result.shared_pool = !result.device_pool && pool.has_value() && reserved.maps_source_pool();
  const bool by_id = result.shared_pool || result.device_pool;
  // The pool chunks name their blocks in (FillPoolChunk).
  const std::optional<v1::DeviceKvPool> device_named =
      result.device_pool ? std::optional(reserve.device_pool()) : std::nullopt;
  const std::optional<v1::SharedKvPool> shared_named =
      result.shared_pool ? std::optional(reserve.source_pool()) : std::nullopt;
  // The destination reads pool blocks when their chunk reaches it, perhaps
  // after this side moved on: every snapshot's blocks stay held until the
  // destination answered.
  std::vector<std::unique_ptr<Engine::KvExport>> read_by_destination;
  bool pool_named = false;

  // 2. Rounds: completed blocks, while the request keeps decoding here.
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(options.rpc_timeout));
  ctx.AddMetadata(kTransferRequestIdKey, id);
  v1::ReceiveKvResponse received;
  std::unique_ptr<grpc::ClientWriter<v1::KvChunk>> writer = stub->ReceiveKv(&ctx, &received);
  auto broken = [&](absl::string_view what) {
    writer->WritesDone();
    absl::Status s = FromGrpcStatus(writer->Finish());
    return s.ok() ? absl::UnavailableError(absl::StrCat("destination stream broke during ", what)) : s;
  };
  int64_t sent = 0;
  const int64_t max_blocks = std::max<int64_t>(1, options.max_message_bytes / bytes_per_block);
  // Sends a snapshot's blocks as messages of at most max_blocks blocks,
  // each encoded just before it goes out (so the sender holds one message,
  // not the snapshot), and the state with the last one when `last`. Every
  // message but the snapshot's final one stands for the sequence up to its
  // own end.
  auto send = [&](Engine::MigrationSnapshot& s, bool last) {
    const int64_t end = s.first_block + s.num_blocks;
    int64_t first = s.first_block;
    do {
      const int64_t n = std::min(max_blocks, end - first);
      const bool final_piece = first + n == end;
      std::string header = s.header;
      int64_t num_kv_tokens = s.num_kv_tokens;
      if (!final_piece) {
        KvTransferHeader h = layout;
        h.num_blocks = first + n;
        h.num_tokens = h.num_blocks * layout.block_size;
        header = EncodeHeader(h);
        num_kv_tokens = h.num_tokens;
      }
      v1::KvChunk chunk = ToChunk(id, std::move(header), std::string(), first, num_kv_tokens);
      if (by_id && n > 0) {
        absl::StatusOr<int64_t> named = FillPoolChunk(*s.blocks, first, n, device_named ? &*device_named : nullptr,
                                                      shared_named ? &*shared_named : nullptr, !pool_named, &chunk);
        if (!named.ok()) return named.status();
        pool_named = true;
      } else {
        absl::StatusOr<std::string> encoded = s.blocks->EncodeChunk(first, n);
        if (!encoded.ok()) return encoded.status();
        chunk.set_data(std::move(*encoded));
      }
      if (last && final_piece) {
        chunk.set_last(true);
        if (s.state) *chunk.mutable_state() = ToRequestState(*s.state);
      }
      result.blocks_sent += n;
      result.bytes_sent += chunk.pool_blocks_size() == 0 ? static_cast<int64_t>(chunk.data().size())
                                                         : int64_t{chunk.pool_blocks_size()} * bytes_per_block;
      if (!writer->Write(chunk)) return absl::UnavailableError("the stream to the destination broke");
      first += n;
    } while (first < end);
    return absl::OkStatus();
  };
  while (!options.stop_and_copy) {
    if (snap.num_blocks > 0) {
      absl::Status round = send(snap, false);
      if (!round.ok()) {
        if (!absl::IsUnavailable(round)) {
          writer->WritesDone();
          ctx.TryCancel();
          writer->Finish();
          return round;
        }
        return broken("a copy round");
      }
      sent = snap.first_block + snap.num_blocks;
    }
    ++result.rounds;
    auto next = engine.SnapshotForMigration(id, sent, false).get();
    if (!next.ok()) {
      writer->WritesDone();
      ctx.TryCancel();
      writer->Finish();
      return next.status();
    }
    if (by_id) read_by_destination.push_back(std::move(snap.blocks));
    snap = std::move(*next);
    if (snap.total_blocks - sent <= options.final_stage_blocks || result.rounds >= options.max_rounds) break;
  }

  // Chunks that name pool blocks are tiny, so flow control does not hold
  // this side to the destination's pace: let it copy what was sent before
  // pausing, or its backlog would be downtime.
  if (by_id && sent > 0) WaitForCatchUp(*stub, id, sent, options.catch_up_timeout);

  // 3. Last stage: pause, send the rest and the state, resume there.
  absl::Time paused_at = absl::Now();
  auto last = engine.SnapshotForMigration(id, sent, true).get();
  if (!last.ok()) {
    writer->WritesDone();
    ctx.TryCancel();
    writer->Finish();
    return last.status();
  }
  if (options.on_last_stage) options.on_last_stage(id);
  absl::Status wrote = send(*last, true);
  if (!wrote.ok() && !absl::IsUnavailable(wrote)) ctx.TryCancel();
  writer->WritesDone();
  absl::Status status = FromGrpcStatus(writer->Finish());
  // The blocks go back before the sample can run here again (and, from a
  // shared pool, once the destination has read them).
  last->blocks.reset();
  snap.blocks.reset();
  read_by_destination.clear();
  if (!wrote.ok() || !status.ok() || !received.accepted()) {
    engine.AbortMigration(id);
    if (!wrote.ok() && !absl::IsUnavailable(wrote)) return wrote;
    if (status.ok()) status = absl::UnavailableError(absl::StrCat("destination did not take the request: ",
                                                                   received.error()));
    return status;
  }
  if (outbound != nullptr && !outbound->HandOver(id)) {
    // Aborted here while paused: the destination already runs the request
    // and nobody will attach to it. `release` stops it there now rather
    // than at its attach timeout. If the abort has not reached the engine
    // yet, the request resumes here and that abort ends it.
    engine.AbortMigration(id);
    return absl::CancelledError("the request was aborted during the last migration stage");
  }
  std::move(release).Cancel();
  engine.CommitMigration(id, destination);
  result.downtime = absl::Now() - paused_at;
  Logger("worker")->info("req={} migrated to {}: {} rounds, {} blocks, {} bytes{}, downtime {}", id,
                         destination, result.rounds, result.blocks_sent, result.bytes_sent,
                         result.device_pool   ? absl::StrCat(" device to device (", device_pool->kind, ")")
                         : result.shared_pool ? std::string(" through shared memory")
                                              : std::string(),
                         absl::FormatDuration(result.downtime));
  return result;
}

}  // namespace

absl::StatusOr<MigrationResult> MigrateOut(Engine& engine, const std::string& id,
                                           const std::string& destination,
                                           const LiveMigrationOptions& options, OutboundMigrations* outbound) {
  if (outbound != nullptr) outbound->Begin(id, destination);
  absl::StatusOr<MigrationResult> result = CopyOut(engine, id, destination, options, outbound);
  // A committed hand-over stays registered (until it expires) so that a late
  // abort here still reaches the destination.
  if (outbound != nullptr && !result.ok()) outbound->End(id);
  return result;
}

void AllowMigrationKeepalive(grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);  // 0: no limit
}

void TransferProgress::Set(const std::string& request_id, int64_t blocks_written) {
  absl::MutexLock lock(&mu_);
  blocks_[request_id] = blocks_written;
}

void TransferProgress::Erase(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  blocks_.erase(request_id);
}

std::optional<int64_t> TransferProgress::Get(const std::string& request_id) const {
  absl::MutexLock lock(&mu_);
  auto it = blocks_.find(request_id);
  if (it == blocks_.end()) return std::nullopt;
  return it->second;
}

ReceiveKvReactor::ReceiveKvReactor(grpc::CallbackServerContext* context, Engine* engine, AttachRegistry* attach,
                                   v1::ReceiveKvResponse* response, MappedPoolCache* pools,
                                   TransferProgress* progress, bool writes_on_loop)
    : engine_(engine),
      attach_(attach),
      response_(response),
      pools_(pools),
      progress_(progress),
      import_tried_(writes_on_loop) {
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find(kTransferRequestIdKey); it != metadata.end()) {
    request_id_.assign(it->second.data(), it->second.size());
  }
  StartRead(&chunk_);
}

void ReceiveKvReactor::Written(int64_t end_block) {
  response_->set_blocks_written(response_->blocks_written() + 1);
  if (progress_ != nullptr && !request_id_.empty()) progress_->Set(request_id_, end_block);
}

void ReceiveKvReactor::Fail(const absl::Status& status) {
  import_.reset();
  if (!request_id_.empty() && !resumed_) engine_->CancelReservation(request_id_);
  response_->set_accepted(false);
  response_->set_error(std::string(status.message()));
  finished_ = true;
  Finish(ToGrpcStatus(status));
}

void ReceiveKvReactor::OnReadDone(bool ok) {
  if (finished_) return;
  // The previous chunk was written while this one was read.
  if (pending_write_.valid()) {
    absl::Status s = pending_write_.get();
    if (!s.ok()) return Fail(s);
    Written(pending_end_);
  }
  if (!ok) {
    // The sender is done writing (or gone).
    if (!resumed_) return Fail(absl::AbortedError("the transfer ended before its last chunk"));
    finished_ = true;
    Finish(grpc::Status::OK);
    return;
  }
  if (request_id_.empty()) request_id_ = chunk_.request_id();
  if (chunk_.request_id() != request_id_ || resumed_) {
    return Fail(absl::InvalidArgumentError("chunks of one transfer must name one request"));
  }
  // Blocks the reservation held when the transfer began are written from
  // this thread, without waiting for the engine's step in flight. The rest
  // (the sample grew meanwhile) go through the engine, which grows the
  // reservation between steps; such a chunk before the last one is not
  // waited for here: the next read starts at once, so the network and the
  // engine work side by side, with at most one chunk in each.
  if (!import_tried_) {
    import_tried_ = true;
    absl::StatusOr<std::unique_ptr<Engine::KvImport>> opened = engine_->OpenMigrationImport(request_id_).get();
    if (opened.ok()) import_ = std::move(*opened);
  }
  const bool on_device = chunk_.pool_blocks_size() > 0 && chunk_.device_blocks();
  const bool pooled = chunk_.pool_blocks_size() > 0 && !on_device;
  if (on_device) {
    if (chunk_.has_device_pool()) device_pool_ = FromDeviceKvPool(chunk_.device_pool());
    if (!device_pool_) return Fail(absl::InvalidArgumentError("a chunk names device blocks but no device pool"));
  }
  if (pooled) {
    if (chunk_.has_source_pool()) {
      absl::StatusOr<std::shared_ptr<const MappedPool>> mapped =
          pools_ == nullptr ? absl::FailedPreconditionError("this worker maps no peer's KV pool")
                            : pools_->Get(FromSharedKvPool(chunk_.source_pool()));
      if (!mapped.ok()) return Fail(mapped.status());
      pool_ = std::move(*mapped);
    }
    if (pool_ == nullptr) return Fail(absl::InvalidArgumentError("a chunk names pool blocks but no pool"));
  }
  const std::span<const std::byte> pool_bytes =
      pool_ == nullptr ? std::span<const std::byte>() : std::span<const std::byte>(pool_->data(), pool_->size());
  const std::span<const int32_t> pool_blocks(chunk_.pool_blocks().data(), chunk_.pool_blocks().size());
  const std::span<const uint64_t> checksums(chunk_.checksums().data(), chunk_.checksums().size());
  // The chunk's end: its header stands for blocks [0, end).
  int64_t chunk_end = chunk_.first_block();
  if (absl::StatusOr<KvTransferHeader> h = DecodeHeader(chunk_.header()); h.ok()) chunk_end = h->num_blocks;
  absl::Status direct = absl::OutOfRangeError("no import");
  if (import_ != nullptr) {
    direct = on_device ? import_->CopyDevicePoolChunk(chunk_.header(), *device_pool_, pool_blocks, chunk_.first_block())
             : pooled  ? import_->WritePoolChunk(chunk_.header(), pool_bytes, pool_blocks, checksums,
                                                 chunk_.first_block())
                       : import_->WriteChunk(chunk_.header(), chunk_.data(), chunk_.first_block());
  }
  if (!absl::IsOutOfRange(direct)) {
    if (!direct.ok()) return Fail(direct);
    Written(chunk_end);
  } else {
    if (pooled) {
      // Past the reservation: the blocks go through the engine as bytes.
      absl::StatusOr<KvTransferHeader> header = DecodeHeader(chunk_.header());
      if (!header.ok()) return Fail(header.status());
      absl::StatusOr<std::string> bytes = EncodePoolBlocks(pool_bytes, pool_blocks, checksums, *header,
                                                           engine_->kv_model_key(), engine_->kv_shape(),
                                                           chunk_.first_block());
      if (!bytes.ok()) return Fail(bytes.status());
      chunk_.set_data(std::move(*bytes));
    }
    std::future<absl::Status> write =
        on_device ? engine_->ReceiveDevicePoolBlocks(request_id_, std::move(*chunk_.mutable_header()), *device_pool_,
                                                     std::vector<int32_t>(pool_blocks.begin(), pool_blocks.end()),
                                                     chunk_.first_block())
                  : engine_->ReceiveMigratedBlocks(request_id_, std::move(*chunk_.mutable_header()),
                                                   std::move(*chunk_.mutable_data()), chunk_.first_block());
    // (A chunk naming pool blocks is waited for: its sender waits for the
    // progress it reports before pausing the request, and reading the next
    // tiny message gains nothing.)
    if (!chunk_.last() && !pooled && !on_device) {
      pending_write_ = std::move(write);
      pending_end_ = chunk_end;
      StartRead(&chunk_);
      return;
    }
    absl::Status s = write.get();
    if (!s.ok()) return Fail(s);
    Written(chunk_end);
  }
  if (!chunk_.last()) {
    StartRead(&chunk_);
    return;
  }
  // The sample's blocks go back to the reservation alone before it resumes.
  import_.reset();
  GenerateInput input = FromRequestState(chunk_.state());
  input.request_id = request_id_;
  EventSink sink = attach_->Create(request_id_);
  absl::Status s = engine_->ResumeMigrated(std::move(input), chunk_.num_tokens(), std::move(sink)).get();
  if (!s.ok()) {
    attach_->DropUnattached(request_id_);
    return Fail(s);
  }
  resumed_ = true;
  response_->set_accepted(true);
  StartRead(&chunk_);
}

void ReceiveKvReactor::OnDone() {
  if (progress_ != nullptr && !request_id_.empty()) progress_->Erase(request_id_);
  delete this;
}

}  // namespace ferry
