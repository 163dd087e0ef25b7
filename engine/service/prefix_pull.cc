#include "engine/service/prefix_pull.h"

#include <grpcpp/create_channel.h>

#include <chrono>
#include <future>
#include <optional>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/grpc_credentials.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/random_hex.h"
#include "absl/strings/match.h"
#include "engine/service/request_convert.h"
#include "kvcache/kv_transfer.h"

namespace ferry {
namespace {

constexpr int64_t kMaxChunkBytes = 2 << 20;  // as migration: keep messages small

template <typename T>
absl::StatusOr<T> WaitFor(std::future<absl::StatusOr<T>> future, absl::Time deadline, const char* what) {
  const absl::Duration left = std::max(deadline - absl::Now(), absl::ZeroDuration());
  if (future.wait_for(absl::ToChronoMilliseconds(left)) != std::future_status::ready) {
    return absl::DeadlineExceededError(absl::StrCat(what, " did not finish in time"));
  }
  try {
    return future.get();
  } catch (const std::future_error&) {  // the engine stopped before running it
    return absl::UnavailableError(absl::StrCat(what, ": the engine is shutting down"));
  }
}

}  // namespace

namespace {

// Marks the failure of a pull whose exporter offered its shared or device
// pool and the pool did not open here: the pull is tried again with bytes.
constexpr char kUnmappedPool[] = "the exporter's shared KV pool does not map here";
constexpr char kUnopenedDevicePool[] = "the exporter's device KV pool does not open here";

// `same_host`: offer to copy blocks out of the exporter's pools.
absl::StatusOr<PrefixPullResult> PullOnce(Engine& engine, const v1::PrefixPull& pull,
                                          const std::vector<int32_t>& prompt_ids,
                                          const PrefixPullOptions& options, bool same_host) {
  const bool shared_pool = same_host && options.pools != nullptr;
  const std::optional<ForwardBackend::DeviceKvPool> own_device_pool =
      same_host ? engine.device_kv_pool() : std::nullopt;
  if (pull.peer_address().empty() || pull.block_hashes().empty()) {
    return absl::InvalidArgumentError("prefix pull without a peer or blocks");
  }
  const absl::Time deadline = absl::Now() + options.timeout;
  auto channel = grpc::CreateChannel(pull.peer_address(), ChannelCredentialsOrInsecure(options.channel_credentials));
  auto stub = v1::Worker::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(deadline));
  v1::ExportPrefixRequest request;
  const size_t wanted = std::min<size_t>(static_cast<size_t>(pull.block_hashes_size()),
                                         prompt_ids.size() / static_cast<size_t>(engine.options().block_size));
  const int64_t first_block = pull.first_block();
  if (first_block < 0 || first_block >= static_cast<int64_t>(wanted)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt holds none of the blocks to pull (from block ", first_block, ")"));
  }
  request.mutable_token_ids()->Add(prompt_ids.begin(),
                                   prompt_ids.begin() + static_cast<ptrdiff_t>(wanted * engine.options().block_size));
  for (size_t i = 0; i < wanted; ++i) request.add_block_hashes(pull.block_hashes(static_cast<int>(i)));
  request.set_first_block(first_block);
  if (shared_pool) request.set_shared_pool_host(SharedPoolHostKey());
  if (own_device_pool) {
    request.set_device_pool_host(SharedPoolHostKey());
    request.set_device_pool_kind(own_device_pool->kind);
  }
  std::unique_ptr<grpc::ClientReader<v1::KvChunk>> reader = stub->ExportPrefix(&ctx, request);
  // What an honest peer can send: the prefix's blocks (the leading ones too,
  // should it ignore first_block), in any number of chunks. A peer that sends
  // more is cut off once it passes twice that.
  const int64_t max_bytes = 2 * EncodedBlocksSize(engine.kv_shape().bytes_per_block(), static_cast<int64_t>(wanted)) +
                            (int64_t{1} << 20);
  PrefixPullResult result;
  // Counts what a chunk sends or names: DataLoss past max_bytes.
  auto take = [&](int64_t bytes) {
    result.bytes_received += bytes;
    if (result.bytes_received <= max_bytes) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("the peer ", pull.peer_address(), " sent more than ", max_bytes,
                                            " bytes for a prefix of ", wanted, " blocks"));
  };
  // Each chunk is written into the install as it arrives (the engine's loop
  // is not involved and no more than one chunk is held here); the blocks
  // are cached only when every one of them has come.
  std::unique_ptr<Engine::PrefixInstall> install;
  auto stop = [&](absl::Status why) {
    ctx.TryCancel();
    reader->Finish();
    return why;
  };
  std::shared_ptr<const MappedPool> pool;  // the exporter's, once a chunk names it
  std::optional<ForwardBackend::DeviceKvPool> device_pool;  // likewise
  std::string transfer_id;  // of pool chunks, to release the export with
  v1::KvChunk chunk;
  while (reader->Read(&chunk)) {
    if (install == nullptr && !chunk.header().empty()) {
      auto opened = WaitFor(engine.OpenPrefixInstall(prompt_ids, chunk.header(), first_block), deadline,
                            "opening the prefix install");
      if (!opened.ok()) return stop(opened.status());
      install = std::move(*opened);
    }
    if (chunk.device_blocks()) {
      if (!own_device_pool) return stop(absl::DataLossError("prefix pull stream: device blocks not asked for"));
      if (chunk.has_device_pool() && !device_pool) {
        ForwardBackend::DeviceKvPool peer = FromDeviceKvPool(chunk.device_pool());
        if (absl::Status o = engine.OpenPeerDeviceKvPool(peer); !o.ok()) {
          return stop(absl::FailedPreconditionError(absl::StrCat(kUnopenedDevicePool, ": ", o.message())));
        }
        device_pool = std::move(peer);
        transfer_id = chunk.transfer_id();
      }
      if (!device_pool) return stop(absl::DataLossError("prefix pull stream: device blocks before the pool"));
      if (transfer_id.empty() || chunk.transfer_id() != transfer_id) {
        return stop(absl::DataLossError("prefix pull stream: device blocks of another transfer"));
      }
      if (absl::Status s = take(chunk.pool_blocks_size() * engine.kv_shape().bytes_per_block()); !s.ok()) {
        return stop(s);
      }
      if (install == nullptr) return stop(absl::DataLossError("prefix pull stream: blocks before the header"));
      absl::Status s = install->CopyDevicePoolChunk(
          chunk.first_block(), *device_pool,
          std::span<const int32_t>(chunk.pool_blocks().data(), chunk.pool_blocks().size()));
      if (!s.ok()) return stop(s);
      result.device_pool = true;
      continue;
    }
    if (chunk.pool_blocks_size() > 0) {
      if (!shared_pool) return stop(absl::DataLossError("prefix pull stream: pool blocks that were not asked for"));
      if (chunk.has_source_pool()) {
        auto mapped = options.pools->Get(FromSharedKvPool(chunk.source_pool()));
        if (!mapped.ok()) {
          return stop(absl::FailedPreconditionError(absl::StrCat(kUnmappedPool, ": ", mapped.status().message())));
        }
        pool = std::move(*mapped);
        transfer_id = chunk.transfer_id();  // empty from a holder that does not hold exports
      }
      if (pool == nullptr) return stop(absl::DataLossError("prefix pull stream: pool blocks before the pool"));
      if (absl::Status s = take(chunk.pool_blocks_size() * engine.kv_shape().bytes_per_block()); !s.ok()) {
        return stop(s);
      }
      if (install == nullptr) return stop(absl::DataLossError("prefix pull stream: blocks before the header"));
      absl::Status s = install->WritePoolChunk(
          chunk.first_block(), std::span<const std::byte>(pool->data(), pool->size()),
          std::span<const int32_t>(chunk.pool_blocks().data(), chunk.pool_blocks().size()),
          std::span<const uint64_t>(chunk.checksums().data(), chunk.checksums().size()));
      if (!s.ok()) return stop(s);
      result.shared_pool = true;
      continue;
    }
    if (chunk.data().empty()) continue;
    if (absl::Status s = take(static_cast<int64_t>(chunk.data().size())); !s.ok()) return stop(s);
    if (install == nullptr) return stop(absl::DataLossError("prefix pull stream: blocks before the header"));
    if (absl::Status s = install->WriteChunk(chunk.first_block(), chunk.data()); !s.ok()) return stop(s);
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return FromGrpcStatus(st);
  if (install == nullptr) return absl::DataLossError("prefix pull stream without a header");
  if ((result.device_pool || result.shared_pool) && !transfer_id.empty()) {
    // Copied by id: the exporter held the blocks until now. From a device
    // pool (no checksums) they are good only if it still held them when the
    // copies were done, i.e. now; from a shared pool every block's checksum
    // was checked, and this only lets the exporter go sooner.
    grpc::ClientContext release_ctx;
    release_ctx.set_deadline(absl::ToChronoTime(deadline));
    v1::ReleasePrefixExportRequest release;
    release.set_transfer_id(transfer_id);
    v1::ReleasePrefixExportResponse released;
    absl::Status s = FromGrpcStatus(stub->ReleasePrefixExport(&release_ctx, release, &released));
    if (result.device_pool && !s.ok()) return s;
    if (result.device_pool && !released.held()) {
      return absl::DataLossError("the exporter let go of the blocks before they were copied");
    }
  }
  auto installed = WaitFor(install->Commit(), deadline, "installing the pulled prefix");
  if (!installed.ok()) return installed.status();
  result.blocks_received = install->end_block() - first_block;
  result.blocks_cached = *installed;
  return result;
}

}  // namespace

absl::StatusOr<PrefixPullResult> PullPrefix(Engine& engine, const v1::PrefixPull& pull,
                                            const std::vector<int32_t>& prompt_ids,
                                            const PrefixPullOptions& options) {
  const bool same_host = options.shared_pool && !SharedPoolHostKey().empty();
  absl::StatusOr<PrefixPullResult> result = PullOnce(engine, pull, prompt_ids, options, same_host);
  if (same_host && absl::IsFailedPrecondition(result.status()) &&
      (absl::StartsWith(result.status().message(), kUnmappedPool) ||
       absl::StartsWith(result.status().message(), kUnopenedDevicePool))) {
    Logger("worker")->warn("prefix pull from {}: {}; pulling the bytes instead", pull.peer_address(),
                           std::string(result.status().message()));
    result = PullOnce(engine, pull, prompt_ids, options, false);
  }
  return result;
}

std::string HeldPrefixExports::NewId() { return absl::StrCat("prefix-", RandomHex(8)); }

void HeldPrefixExports::Hold(const std::string& id, std::unique_ptr<Engine::KvExport> blocks) {
  absl::MutexLock lock(&mu_);
  held_[id] = Held{std::move(blocks), absl::Now() + ttl_};
}

bool HeldPrefixExports::Release(const std::string& id) {
  std::unique_ptr<Engine::KvExport> blocks;
  absl::MutexLock lock(&mu_);
  auto it = held_.find(id);
  if (it == held_.end()) return false;
  blocks = std::move(it->second.blocks);
  held_.erase(it);
  return true;
}

int HeldPrefixExports::Expire() {
  std::vector<std::unique_ptr<Engine::KvExport>> expired;
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->second.until <= now) {
      expired.push_back(std::move(it->second.blocks));
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
  return static_cast<int>(expired.size());
}

void HeldPrefixExports::Clear() {
  absl::MutexLock lock(&mu_);
  held_.clear();
}

size_t HeldPrefixExports::size() const {
  absl::MutexLock lock(&mu_);
  return held_.size();
}

ExportPrefixStream::ExportPrefixStream(Engine* engine, const v1::ExportPrefixRequest& request,
                                       PrefixPullStats* stats, HeldPrefixExports* held)
    : stats_(stats), held_(held) {
  std::vector<int32_t> tokens(request.token_ids().begin(), request.token_ids().end());
  std::vector<uint64_t> hashes(request.block_hashes().begin(), request.block_hashes().end());
  absl::StatusOr<std::unique_ptr<Engine::KvExport>> opened =
      hashes.empty() ? absl::InvalidArgumentError("no blocks asked for")
                     : WaitFor(engine->OpenPrefixExport(std::move(tokens), std::move(hashes), request.first_block()),
                               absl::Now() + absl::Seconds(10), "exporting the prefix");
  if (!opened.ok()) {
    ++stats_->export_failures;
    Finish(ToGrpcStatus(opened.status()));
    return;
  }
  export_ = std::move(*opened);
  // A puller on this host may copy the blocks out of this engine's device
  // pool, or its shared pool: the chunks then name them.
  if (held_ != nullptr && !request.device_pool_host().empty() && request.device_pool_host() == SharedPoolHostKey()) {
    if (std::optional<ForwardBackend::DeviceKvPool> pool = engine->device_kv_pool();
        pool && pool->kind == request.device_pool_kind()) {
      device_pool_ = ToDeviceKvPool(*pool);
      transfer_id_ = held_->NewId();
    }
  }
  if (!device_pool_ && !request.shared_pool_host().empty() && request.shared_pool_host() == SharedPoolHostKey()) {
    if (std::optional<SharedPoolRef> pool = engine->shared_kv_pool()) {
      pool_ = ToSharedKvPool(*pool, export_->bytes_per_block());
      // Held after the stream too, so that the puller's copy of the last
      // chunk never finds a block moved (the checksum would catch it, and
      // the pull would fail).
      if (held_ != nullptr) transfer_id_ = held_->NewId();
    }
  }
  blocks_per_chunk_ = request.max_blocks_per_chunk();
  if (blocks_per_chunk_ <= 0) {
    blocks_per_chunk_ = std::max<int64_t>(1, kMaxChunkBytes / std::max<int64_t>(1, export_->bytes_per_block()));
  }
  next_block_ = export_->first_block();
  num_tokens_ = export_->end_block() * engine->options().block_size;
  WriteNext();
}

void ExportPrefixStream::WriteNext() {
  if (next_block_ >= export_->end_block()) {
    ++stats_->exports;
    // The puller copies the last chunk after this: it releases the blocks.
    if (!transfer_id_.empty()) held_->Hold(transfer_id_, std::move(export_));
    Finish(grpc::Status::OK);
    return;
  }
  current_.Clear();
  absl::StatusOr<std::string> data;
  if (device_pool_ || pool_) {
    absl::StatusOr<int64_t> named =
        FillPoolChunk(*export_, next_block_, blocks_per_chunk_, device_pool_ ? &*device_pool_ : nullptr,
                      pool_ ? &*pool_ : nullptr, next_block_ == export_->first_block(), &current_);
    current_.set_transfer_id(transfer_id_);
    data = named.ok() ? absl::StatusOr<std::string>(std::string()) : named.status();
  } else {
    data = export_->EncodeChunk(next_block_, blocks_per_chunk_);
  }
  if (!data.ok()) {
    ++stats_->export_failures;
    Finish(ToGrpcStatus(data.status()));
    return;
  }
  const int64_t count = std::min(blocks_per_chunk_, export_->end_block() - next_block_);
  if (next_block_ == export_->first_block()) current_.set_header(export_->header());
  current_.set_first_block(next_block_);
  current_.set_num_tokens(static_cast<int32_t>(num_tokens_));
  next_block_ += count;
  current_.set_last(next_block_ >= export_->end_block());
  stats_->export_blocks += count;
  stats_->export_bytes +=
      pool_ || device_pool_ ? count * export_->bytes_per_block() : static_cast<int64_t>(data->size());
  current_.set_data(std::move(*data));
  StartWrite(&current_);
}

void ExportPrefixStream::OnWriteDone(bool ok) {
  if (!ok) {
    ++stats_->export_failures;
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the puller went away"));
    return;
  }
  WriteNext();
}

}  // namespace ferry
