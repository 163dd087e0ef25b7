// Engine: cached prefixes moving between workers. A worker about to run a
// request whose prefix another worker caches can pull those blocks instead
// of computing them: the holder opens an export (OpenPrefixExport) and
// streams it a chunk at a time, the puller installs the blocks as cached
// (InstallCachedPrefix), chained after the ones it caches itself, and then
// runs the request, which finds them as an ordinary prefix hit. Opening,
// closing and installing run on the loop thread, through Post().
#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/engine.h"

namespace ferry {

Engine::BlockHold::~BlockHold() {
  // An engine whose loop has stopped dropped every hold already.
  engine_->Post([engine = engine_, id = id_] { engine->held_.erase(id); });
}

absl::StatusOr<std::string> Engine::KvExport::EncodeChunk(int64_t first, int64_t count) const {
  if (count == 0 && first == end_block_) {
    auto none = [](int32_t, std::span<float>) { return absl::OkStatus(); };  // never called
    return EncodeBlocks(shape_, none, {}, first);
  }
  FERRY_ASSIGN_OR_RETURN(const std::span<const int32_t> ids, Clip(first, count));
  // Straight from the calling thread: the backend's fp32 reads allow it for
  // blocks no step writes, which a referenced block is (a step copies a
  // shared block before writing into it).
  auto read = [this](int32_t block, std::span<float> out) {
    return backend_->ReadKvBlockF32(block, out);
  };
  return EncodeBlocks(shape_, read, ids, first);
}

absl::Status Engine::KvExport::DescribePoolChunk(int64_t first, int64_t count, std::vector<int32_t>* ids,
                                                 std::vector<uint64_t>* checksums) const {
  const KvCache* kv = backend_->host_kv();
  if (kv == nullptr || kv->shared_memory() == nullptr) {
    return absl::FailedPreconditionError("this engine's KV blocks are not in shared memory");
  }
  FERRY_ASSIGN_OR_RETURN(const std::span<const int32_t> clipped, Clip(first, count));
  ids->assign(clipped.begin(), clipped.end());
  checksums->clear();
  const auto bytes = static_cast<size_t>(shape_.bytes_per_block());
  for (int64_t i = 0; i < static_cast<int64_t>(clipped.size()); ++i) {
    // No step writes a referenced block, so it reads as it will be copied.
    const auto* block = reinterpret_cast<const std::byte*>(kv->Block((*ids)[static_cast<size_t>(i)]));
    checksums->push_back(KvBlockChecksum(std::span<const std::byte>(block, bytes), first + i));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Engine::KvExport::BlockIds(int64_t first, int64_t count) const {
  FERRY_ASSIGN_OR_RETURN(const std::span<const int32_t> ids, Clip(first, count));
  return std::vector<int32_t>(ids.begin(), ids.end());
}

absl::StatusOr<std::span<const int32_t>> Engine::KvExport::Clip(int64_t first, int64_t count) const {
  if (first < first_block_ || first >= end_block_ || count < 1) {
    return absl::InvalidArgumentError(absl::StrCat("blocks [", first, ", +", count, ") are outside the export [",
                                                   first_block_, ", ", end_block_, ")"));
  }
  count = std::min(count, end_block_ - first);
  return std::span<const int32_t>(block_ids_).subspan(static_cast<size_t>(first - first_block_),
                                                      static_cast<size_t>(count));
}

std::optional<SharedPoolRef> Engine::shared_kv_pool() const {
  if (kv_ == nullptr || kv_->shared_memory() == nullptr) return std::nullopt;
  return kv_->shared_memory()->Ref();
}

std::unique_ptr<Engine::KvExport> Engine::MakeExportOnLoop(BlockTable pinned, int64_t first_block,
                                                          int64_t end_block, int64_t num_tokens) {
  auto out = std::unique_ptr<KvExport>(new KvExport(this, next_hold_id_++));
  out->backend_ = backend_.get();
  out->shape_ = backend_->kv_shape();
  out->header_ = EncodeHeader(MakeKvTransferHeader(out->shape_, kv_model_key_, end_block, num_tokens));
  const std::vector<int32_t> ids = pinned.BlockIds();
  out->block_ids_.assign(ids.begin() + first_block, ids.begin() + end_block);
  out->first_block_ = first_block;
  out->end_block_ = end_block;
  out->bytes_per_block_ = out->shape_.bytes_per_block();
  held_.emplace(out->id_, std::move(pinned));
  return out;
}

std::future<absl::StatusOr<std::unique_ptr<Engine::KvExport>>> Engine::OpenPrefixExport(
    std::vector<int32_t> tokens, std::vector<uint64_t> block_hashes, int64_t first_block) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::unique_ptr<KvExport>>>>();
  auto future = promise->get_future();
  Post(
      [this, tokens = std::move(tokens), block_hashes = std::move(block_hashes), first_block,
       promise] { promise->set_value(OpenPrefixExportOnLoop(tokens, block_hashes, first_block)); });
  return future;
}

absl::StatusOr<std::unique_ptr<Engine::KvExport>> Engine::OpenPrefixExportOnLoop(
    const std::vector<int32_t>& tokens, const std::vector<uint64_t>& block_hashes,
    int64_t first_block) {
  if (!kv_io_status_.ok()) {
    return absl::UnimplementedError(
        absl::StrCat("KV blocks cannot be exported: ", kv_io_status_.message()));
  }
  const int64_t max_blocks = std::min(static_cast<int64_t>(block_hashes.size()),
                                      static_cast<int64_t>(tokens.size()) / options_.block_size);
  if (first_block < 0 || first_block >= max_blocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("export from block ", first_block, " of a prefix of ", max_blocks, " blocks"));
  }
  // Matched from block 0, so the blocks sent follow exactly the ones the
  // puller named before first_block; all of them stay referenced, so none
  // can be evicted (or written) while the export is open.
  BlockTable table = blocks_->NewTable();
  FERRY_RETURN_IF_ERROR(
      blocks_
          ->PinCachedPrefix(
              std::span<const int32_t>(tokens.data(), max_blocks * options_.block_size), table)
          .status());
  int64_t end = 0;
  while (end < table.num_blocks() && table.block_hashes()[end] == block_hashes[end]) ++end;
  if (end <= first_block) {
    return absl::NotFoundError(
        end == 0
            ? std::string("none of the prefix is cached here")
            : absl::StrCat("only ", end, " blocks of the prefix are cached here, none from block ",
                           first_block));
  }
  counters_.prefix_blocks_exported += end - first_block;
  return MakeExportOnLoop(std::move(table), first_block, end, end * options_.block_size);
}

std::future<absl::StatusOr<int64_t>> Engine::InstallCachedPrefix(
    std::vector<int32_t> tokens, std::string header,
    std::vector<std::pair<int64_t, std::string>> chunks, int64_t first_block) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<int64_t>>>();
  auto future = promise->get_future();
  Post([this, tokens = std::move(tokens), header = std::move(header), chunks = std::move(chunks),
        first_block, promise] {
    promise->set_value(InstallCachedPrefixOnLoop(tokens, header, chunks, first_block));
  });
  return future;
}

absl::StatusOr<int64_t> Engine::InstallCachedPrefixOnLoop(
    const std::vector<int32_t>& tokens, const std::string& header,
    const std::vector<std::pair<int64_t, std::string>>& chunks, int64_t first_block) {
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<PrefixInstall> install, OpenPrefixInstallOnLoop(tokens, header, first_block));
  // On this thread the blocks can go back at once on an error (the
  // install's own release would wait for the next loop iteration).
  auto release = absl::MakeCleanup([&] { held_.erase(install->id_); });
  for (const auto& [chunk_first, payload] : chunks) FERRY_RETURN_IF_ERROR(install->WriteChunk(chunk_first, payload));
  if (std::find(install->written_.begin() + first_block, install->written_.end(), 0) != install->written_.end()) {
    return absl::DataLossError("pulled prefix is missing blocks");
  }
  return CommitPrefixInstallOnLoop(install->id_, tokens, first_block);
}

std::future<absl::StatusOr<std::unique_ptr<Engine::PrefixInstall>>> Engine::OpenPrefixInstall(
    std::vector<int32_t> tokens, std::string header, int64_t first_block) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::unique_ptr<PrefixInstall>>>>();
  auto future = promise->get_future();
  Post([this, tokens = std::move(tokens), header = std::move(header), first_block, promise] {
    promise->set_value(OpenPrefixInstallOnLoop(tokens, header, first_block));
  });
  return future;
}

absl::StatusOr<std::unique_ptr<Engine::PrefixInstall>> Engine::OpenPrefixInstallOnLoop(
    const std::vector<int32_t>& tokens, const std::string& header, int64_t first_block) {
  if (!kv_io_status_.ok()) {
    return absl::UnimplementedError(
        absl::StrCat("KV blocks cannot be imported: ", kv_io_status_.message()));
  }
  const KvCacheShape& shape = backend_->kv_shape();
  FERRY_ASSIGN_OR_RETURN(const KvTransferHeader hdr, DecodeHeader(header));
  FERRY_RETURN_IF_ERROR(CheckKvTransferLayout(hdr, shape, kv_model_key_));
  const int64_t end = hdr.num_blocks;
  if (hdr.num_tokens != end * options_.block_size ||
      end > static_cast<int64_t>(tokens.size()) / options_.block_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("pulled prefix of ", hdr.num_tokens, " tokens in ", end,
                     " blocks does not fit a prompt of ", tokens.size(), " tokens"));
  }
  if (first_block < 0 || first_block >= end) {
    return absl::InvalidArgumentError(
        absl::StrCat("pulled blocks from ", first_block, " of a prefix of ", end, " blocks"));
  }
  // The pulled blocks are hashed as the continuation of these: they must
  // still be cached, and stay referenced until the new ones are.
  BlockTable table = blocks_->NewTable();
  FERRY_RETURN_IF_ERROR(
      blocks_
          ->PinCachedPrefix(
              std::span<const int32_t>(tokens.data(), first_block * options_.block_size), table)
          .status());
  if (table.num_blocks() < first_block) {
    return absl::FailedPreconditionError(
        absl::StrCat("blocks [", table.num_blocks(), ", ", first_block,
                     ") the pulled blocks follow are no longer cached here"));
  }
  auto fresh = blocks_->Allocate(end - first_block);
  if (!fresh) {
    return absl::ResourceExhaustedError(
        absl::StrCat("not enough free KV blocks for ", end - first_block, " pulled blocks"));
  }
  table.Append(std::move(*fresh));
  auto out = std::unique_ptr<PrefixInstall>(new PrefixInstall(this, next_hold_id_++));
  out->backend_ = backend_.get();
  out->shape_ = shape;
  out->model_key_ = kv_model_key_;
  out->tokens_ = tokens;
  out->header_ = hdr;
  out->block_ids_ = table.BlockIds();
  out->written_.assign(static_cast<size_t>(end), 0);
  out->first_block_ = first_block;
  out->end_block_ = end;
  held_.emplace(out->id_, std::move(table));
  return out;
}

absl::StatusOr<int64_t> Engine::CommitPrefixInstallOnLoop(uint64_t id, const std::vector<int32_t>& tokens,
                                                          int64_t first_block) {
  auto it = held_.find(id);
  if (it == held_.end()) return absl::FailedPreconditionError("the prefix install was already closed");
  BlockTable table = std::move(it->second);
  held_.erase(it);
  const int64_t end = table.num_blocks();
  table.set_num_tokens(end * options_.block_size);
  FERRY_RETURN_IF_ERROR(blocks_->CommitFullBlocks(table, tokens));
  counters_.prefix_blocks_imported += end - first_block;
  // Released here: the blocks stay cached (and free) until a request takes
  // them, normally the one that asked for the pull, next step.
  table.Clear();
  return blocks_->CountCachedPrefixTokens(tokens, 0) / options_.block_size;
}

absl::Status Engine::PrefixInstall::WriteChunk(int64_t chunk_first, std::string_view payload) {
  const int64_t end = end_block_;
  if (chunk_first < 0 || chunk_first >= end) return absl::InvalidArgumentError("pulled chunk outside the prefix");
  // From the calling thread: the backend's fp32 writes allow it for blocks
  // no step reads or writes, which a fresh, unhashed block held here is.
  auto write = BlockWriter(backend_);
  // One block at a time: each piece carries its own index and checksum.
  // Faster than the whole chunk at once despite the copy: a block is still
  // in cache when it is written after its checksum (measured at 4096
  // tokens on the stream, 169 ms against 238 ms for 2 MiB chunks).
  FERRY_ASSIGN_OR_RETURN(const std::vector<std::string> pieces, SplitBlocks(payload, 1));
  int64_t at = chunk_first;
  for (const std::string& piece : pieces) {
    if (at >= end) return absl::InvalidArgumentError("pulled chunk past the prefix");
    // An exporter that ignores first_block sends the leading blocks too.
    if (at >= first_block_) {
      std::vector<int32_t> dst = {block_ids_[static_cast<size_t>(at)]};
      FERRY_RETURN_IF_ERROR(DecodeAndWriteBlocks(piece, header_, model_key_, shape_, write, dst, at));
      written_[static_cast<size_t>(at)] = 1;
    }
    ++at;
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> Engine::PrefixInstall::LeadingBlocksToSkip(int64_t chunk_first, size_t count) const {
  if (chunk_first < 0 || chunk_first >= end_block_ || static_cast<int64_t>(count) > end_block_ - chunk_first) {
    return absl::InvalidArgumentError("pulled chunk outside the prefix");
  }
  // An exporter that ignores first_block names the leading blocks too.
  return static_cast<size_t>(std::clamp<int64_t>(first_block_ - chunk_first, 0, static_cast<int64_t>(count)));
}

absl::Status Engine::PrefixInstall::WritePoolChunk(int64_t chunk_first, std::span<const std::byte> pool,
                                                   std::span<const int32_t> pool_blocks,
                                                   std::span<const uint64_t> checksums) {
  FERRY_ASSIGN_OR_RETURN(const size_t skip, LeadingBlocksToSkip(chunk_first, pool_blocks.size()));
  if (checksums.size() != pool_blocks.size()) {
    return absl::InvalidArgumentError("pulled chunk names its pool blocks with a checksum count that differs");
  }
  const int64_t from = chunk_first + static_cast<int64_t>(skip);
  const size_t n = pool_blocks.size() - skip;
  if (n == 0) return absl::OkStatus();
  const auto dst = std::span<const int32_t>(block_ids_).subspan(static_cast<size_t>(from), n);
  FERRY_RETURN_IF_ERROR(CopyPoolBlocks(pool, pool_blocks.subspan(skip), checksums.subspan(skip), header_,
                                       model_key_, shape_, BlockWriter(backend_), dst, from));
  std::fill(written_.begin() + from, written_.begin() + from + static_cast<int64_t>(n), 1);
  return absl::OkStatus();
}

absl::Status Engine::PrefixInstall::CopyDevicePoolChunk(int64_t chunk_first, const ForwardBackend::DeviceKvPool& peer,
                                                        std::span<const int32_t> peer_blocks) {
  FERRY_ASSIGN_OR_RETURN(const size_t skip, LeadingBlocksToSkip(chunk_first, peer_blocks.size()));
  const int64_t from = chunk_first + static_cast<int64_t>(skip);
  const size_t n = peer_blocks.size() - skip;
  if (n == 0) return absl::OkStatus();
  const auto dst = std::span<const int32_t>(block_ids_).subspan(static_cast<size_t>(from), n);
  FERRY_RETURN_IF_ERROR(backend_->CopyFromDeviceKvPool(peer, peer_blocks.subspan(skip), dst));
  std::fill(written_.begin() + from, written_.begin() + from + static_cast<int64_t>(n), 1);
  return absl::OkStatus();
}

std::future<absl::StatusOr<int64_t>> Engine::PrefixInstall::Commit() {
  if (std::find(written_.begin() + first_block_, written_.end(), 0) != written_.end()) {
    std::promise<absl::StatusOr<int64_t>> missing;
    missing.set_value(absl::DataLossError("pulled prefix is missing blocks"));
    return missing.get_future();
  }
  auto promise = std::make_shared<std::promise<absl::StatusOr<int64_t>>>();
  auto future = promise->get_future();
  engine_->Post([engine = engine_, id = id_, tokens = tokens_, first = first_block_, promise] {
    promise->set_value(engine->CommitPrefixInstallOnLoop(id, tokens, first));
  });
  return future;
}

}  // namespace ferry
