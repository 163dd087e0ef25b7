#include "engine/service/prefix_pull.h"

#include <grpcpp/create_channel.h>

#include <chrono>
#include <future>

#include "absl/strings/str_cat.h"
#include "common/grpc_credentials.h"
#include "common/grpc_status.h"
#include "common/logging.h"
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
  return future.get();
}

}  // namespace

absl::StatusOr<PrefixPullResult> PullPrefix(Engine& engine, const v1::PrefixPull& pull,
                                            const std::vector<int32_t>& prompt_ids,
                                            const PrefixPullOptions& options) {
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
  if (wanted == 0) return absl::InvalidArgumentError("the prompt holds none of the blocks to pull");
  request.mutable_token_ids()->Add(prompt_ids.begin(),
                                   prompt_ids.begin() + static_cast<ptrdiff_t>(wanted * engine.options().block_size));
  for (size_t i = 0; i < wanted; ++i) request.add_block_hashes(pull.block_hashes(static_cast<int>(i)));
  std::unique_ptr<grpc::ClientReader<v1::KvChunk>> reader = stub->ExportPrefix(&ctx, request);
  PrefixPullResult result;
  std::string header;
  std::vector<std::pair<int64_t, std::string>> chunks;
  v1::KvChunk chunk;
  while (reader->Read(&chunk)) {
    if (!chunk.header().empty()) header = chunk.header();
    if (!chunk.data().empty()) {
      result.bytes_received += static_cast<int64_t>(chunk.data().size());
      chunks.emplace_back(chunk.first_block(), std::move(*chunk.mutable_data()));
    }
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return FromGrpcStatus(st);
  if (header.empty()) return absl::DataLossError("prefix pull stream without a header");
  auto hdr = DecodeHeader(header);
  if (!hdr.ok()) return hdr.status();
  result.blocks_received = hdr->num_blocks;
  auto installed = WaitFor(engine.InstallCachedPrefix(prompt_ids, std::move(header), std::move(chunks)), deadline,
                           "installing the pulled prefix");
  if (!installed.ok()) return installed.status();
  result.blocks_cached = *installed;
  return result;
}

ExportPrefixStream::ExportPrefixStream(Engine* engine, const v1::ExportPrefixRequest& request,
                                       PrefixPullStats* stats) {
  std::vector<int32_t> tokens(request.token_ids().begin(), request.token_ids().end());
  std::vector<uint64_t> hashes(request.block_hashes().begin(), request.block_hashes().end());
  absl::StatusOr<Engine::PrefixExport> exported =
      hashes.empty() ? absl::InvalidArgumentError("no blocks asked for")
                     : WaitFor(engine->ExportCachedPrefix(std::move(tokens), std::move(hashes)),
                               absl::Now() + absl::Seconds(10), "exporting the prefix");
  if (!exported.ok()) {
    ++stats->export_failures;
    Finish(ToGrpcStatus(exported.status()));
    return;
  }
  int64_t per_chunk = request.max_blocks_per_chunk();
  if (per_chunk <= 0) {
    const int64_t block_bytes = exported->num_blocks > 0
                                    ? static_cast<int64_t>(exported->payload.size()) / exported->num_blocks
                                    : 1;
    per_chunk = std::max<int64_t>(1, kMaxChunkBytes / std::max<int64_t>(1, block_bytes));
  }
  auto pieces = SplitBlocks(exported->payload, per_chunk);
  if (!pieces.ok()) {
    ++stats->export_failures;
    Finish(ToGrpcStatus(pieces.status()));
    return;
  }
  int64_t first = 0;
  for (std::string& piece : *pieces) {
    v1::KvChunk c;
    if (chunks_.empty()) c.set_header(exported->header);
    c.set_first_block(first);
    c.set_num_tokens(static_cast<int32_t>(exported->num_blocks * engine->options().block_size));
    first += std::min(per_chunk, exported->num_blocks - first);
    c.set_data(std::move(piece));
    chunks_.push_back(std::move(c));
  }
  if (!chunks_.empty()) chunks_.back().set_last(true);
  ++stats->exports;
  stats->export_blocks += exported->num_blocks;
  stats->export_bytes += static_cast<int64_t>(exported->payload.size());
  Next();
}

void ExportPrefixStream::Next() {
  if (chunks_.empty()) {
    Finish(grpc::Status::OK);
    return;
  }
  current_ = std::move(chunks_.front());
  chunks_.pop_front();
  StartWrite(&current_);
}

void ExportPrefixStream::OnWriteDone(bool ok) {
  if (!ok) {
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the puller went away"));
    return;
  }
  Next();
}

}  // namespace ferry
