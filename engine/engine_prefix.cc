// Engine: cached prefixes moving between workers. A worker about to run a
// request whose prefix another worker caches can pull those blocks instead
// of computing them: the holder exports them (ExportCachedPrefix), the puller
// installs them as cached blocks (InstallCachedPrefix) and then runs the
// request, which finds them as an ordinary prefix hit. Both run on the loop
// thread, through Post().
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "engine/engine.h"

namespace ferry {

std::future<absl::StatusOr<Engine::PrefixExport>> Engine::ExportCachedPrefix(
    std::vector<int32_t> tokens, std::vector<uint64_t> block_hashes) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<PrefixExport>>>();
  auto future = promise->get_future();
  Post([this, tokens = std::move(tokens), block_hashes = std::move(block_hashes), promise] {
    if (kv_ == nullptr) {
      return promise->set_value(
          absl::UnimplementedError("KV blocks of this backend cannot be exported yet (cpu only)"));
    }
    const size_t max_blocks =
        std::min(block_hashes.size(), tokens.size() / static_cast<size_t>(options_.block_size));
    std::span<const int32_t> prefix(tokens.data(), max_blocks * options_.block_size);
    // The references taken here keep the blocks from being evicted (or
    // written) while they are copied; they go when `table` does.
    BlockTable table = blocks_->NewTable();
    auto pinned = blocks_->PinCachedPrefix(prefix, table);
    if (!pinned.ok()) return promise->set_value(pinned.status());
    int64_t n = 0;
    while (n < table.num_blocks() && table.block_hashes()[n] == block_hashes[n]) ++n;
    if (n == 0) {
      return promise->set_value(absl::NotFoundError("none of the prefix is cached here"));
    }
    std::vector<int32_t> ids = table.BlockIds();
    ids.resize(static_cast<size_t>(n));
    PrefixExport out;
    out.num_blocks = n;
    out.header = EncodeHeader(MakeKvTransferHeader(kv_->shape(), kv_model_key_, n, n * options_.block_size));
    out.payload = EncodeBlocks(*kv_, ids, 0);
    counters_.prefix_blocks_exported += n;
    promise->set_value(std::move(out));
  });
  return future;
}

std::future<absl::StatusOr<int64_t>> Engine::InstallCachedPrefix(
    std::vector<int32_t> tokens, std::string header, std::vector<std::pair<int64_t, std::string>> chunks) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<int64_t>>>();
  auto future = promise->get_future();
  Post([this, tokens = std::move(tokens), header = std::move(header), chunks = std::move(chunks), promise] {
    if (kv_ == nullptr) {
      return promise->set_value(
          absl::UnimplementedError("KV blocks of this backend cannot be imported yet (cpu only)"));
    }
    auto hdr = DecodeHeader(header);
    if (!hdr.ok()) return promise->set_value(hdr.status());
    if (absl::Status s = CheckKvTransferLayout(*hdr, kv_->shape(), kv_model_key_); !s.ok()) {
      return promise->set_value(s);
    }
    const int64_t n = hdr->num_blocks;
    if (hdr->num_tokens != n * options_.block_size ||
        n > static_cast<int64_t>(tokens.size()) / options_.block_size) {
      return promise->set_value(absl::InvalidArgumentError(absl::StrCat(
          "pulled prefix of ", hdr->num_tokens, " tokens in ", n, " blocks does not fit a prompt of ",
          tokens.size(), " tokens")));
    }
    auto blocks = blocks_->Allocate(n);
    if (!blocks) {
      return promise->set_value(absl::ResourceExhaustedError(
          absl::StrCat("not enough free KV blocks for a pulled prefix of ", n, " blocks")));
    }
    BlockTable table = blocks_->NewTable();
    table.Append(std::move(*blocks));
    const std::vector<int32_t> ids = table.BlockIds();
    // Every chunk is checked and written before any block is cached: on an
    // error the fresh blocks go back to the pool unhashed.
    std::vector<char> written(static_cast<size_t>(n), 0);
    for (const auto& [first, payload] : chunks) {
      if (first < 0 || first >= n) {
        return promise->set_value(absl::InvalidArgumentError("pulled chunk outside the prefix"));
      }
      // One block at a time: each piece carries its own index and checksum.
      auto pieces = SplitBlocks(payload, 1);
      if (!pieces.ok()) return promise->set_value(pieces.status());
      int64_t at = first;
      for (const std::string& piece : *pieces) {
        if (at >= n) return promise->set_value(absl::InvalidArgumentError("pulled chunk past the prefix"));
        std::vector<int32_t> dst = {ids[static_cast<size_t>(at)]};
        if (absl::Status s = DecodeAndWriteBlocks(piece, *hdr, kv_model_key_, *kv_, dst, at); !s.ok()) {
          return promise->set_value(s);
        }
        written[static_cast<size_t>(at)] = 1;
        ++at;
      }
    }
    if (std::find(written.begin(), written.end(), 0) != written.end()) {
      return promise->set_value(absl::DataLossError("pulled prefix is missing blocks"));
    }
    table.set_num_tokens(n * options_.block_size);
    if (absl::Status s = blocks_->CommitFullBlocks(table, tokens); !s.ok()) return promise->set_value(s);
    counters_.prefix_blocks_imported += n;
    // Released here: the blocks stay cached (and free) until a request
    // takes them, normally the one that asked for the pull, next step.
    table.Clear();
    promise->set_value(blocks_->CountCachedPrefixTokens(tokens, 0) / options_.block_size);
  });
  return future;
}

}  // namespace ferry
