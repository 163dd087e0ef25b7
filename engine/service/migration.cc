#include "engine/service/migration.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>
#include <chrono>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_credentials.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/service/worker_service.h"

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
  const int64_t bytes_per_block = std::max<int64_t>(snap.blocks->bytes_per_block(), 1);
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
      absl::StatusOr<std::string> data = s.blocks->EncodeChunk(first, n);
      if (!data.ok()) return data.status();
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
      v1::KvChunk chunk = ToChunk(id, std::move(header), std::move(*data), first, num_kv_tokens);
      if (last && final_piece) {
        chunk.set_last(true);
        if (s.state) *chunk.mutable_state() = ToRequestState(*s.state);
      }
      result.blocks_sent += n;
      result.bytes_sent += static_cast<int64_t>(chunk.data().size());
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
    snap = std::move(*next);
    if (snap.total_blocks - sent <= options.final_stage_blocks || result.rounds >= options.max_rounds) break;
  }

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
  // The blocks go back before the sample can run here again.
  last->blocks.reset();
  snap.blocks.reset();
  if (!wrote.ok() && !absl::IsUnavailable(wrote)) ctx.TryCancel();
  writer->WritesDone();
  absl::Status status = FromGrpcStatus(writer->Finish());
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
  Logger("worker")->info("req={} migrated to {}: {} rounds, {} blocks, {} bytes, downtime {}", id,
                         destination, result.rounds, result.blocks_sent, result.bytes_sent,
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

ReceiveKvReactor::ReceiveKvReactor(grpc::CallbackServerContext* context, Engine* engine, AttachRegistry* attach,
                                   v1::ReceiveKvResponse* response, bool writes_on_loop)
    : engine_(engine), attach_(attach), response_(response), import_tried_(writes_on_loop) {
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find(kTransferRequestIdKey); it != metadata.end()) {
    request_id_.assign(it->second.data(), it->second.size());
  }
  StartRead(&chunk_);
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
    response_->set_blocks_written(response_->blocks_written() + 1);
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
  absl::Status direct = absl::OutOfRangeError("no import");
  if (import_ != nullptr) direct = import_->WriteChunk(chunk_.header(), chunk_.data(), chunk_.first_block());
  if (!absl::IsOutOfRange(direct)) {
    if (!direct.ok()) return Fail(direct);
    response_->set_blocks_written(response_->blocks_written() + 1);
  } else {
    std::future<absl::Status> write = engine_->ReceiveMigratedBlocks(
        request_id_, std::move(*chunk_.mutable_header()), std::move(*chunk_.mutable_data()), chunk_.first_block());
    if (!chunk_.last()) {
      pending_write_ = std::move(write);
      StartRead(&chunk_);
      return;
    }
    absl::Status s = write.get();
    if (!s.ok()) return Fail(s);
    response_->set_blocks_written(response_->blocks_written() + 1);
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

void ReceiveKvReactor::OnDone() { delete this; }

}  // namespace ferry
