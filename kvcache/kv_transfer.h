// A sequence's KV blocks as a self-describing byte stream, for moving a
// sequence to another worker (migration, prefill/decode split). The stream is
// one header message followed by any number of block chunks, so it can be
// sent as a gRPC stream of a few blocks per message:
//
//   header: magic "FKVH", format version, layout (model id, num_layers,
//           num_kv_heads, head_dim, block_size, dtype "f32"), number of blocks
//           and tokens, then a checksum of the header bytes.
//   chunk:  magic "FKVB", format version, index of its first block in the
//           sequence, block count, bytes per block; then per block a 64-bit
//           checksum and the block's bytes: fp32 in the canonical block
//           layout [layer][k|v][slot][kv_head][head_dim] (KvCache::Block),
//           whatever dtype and memory the sending backend keeps KV in.
//
// All integers are little-endian. Decoding treats the bytes as untrusted: it
// never reads out of bounds and checks everything before writing anything.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvcache/kv_cache.h"

namespace ferry {

inline constexpr uint16_t kKvTransferVersion = 1;
inline constexpr size_t kKvTransferMaxModelIdBytes = 4096;

struct KvTransferHeader {
  std::string model_id;
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 0;
  std::string dtype = "f32";
  int64_t num_blocks = 0;  // blocks in the whole sequence
  int64_t num_tokens = 0;  // tokens they hold: ceil(num_tokens / block_size) == num_blocks
};

// The header for sending `num_blocks` blocks holding `num_tokens` tokens of a
// cache with `shape`.
KvTransferHeader MakeKvTransferHeader(const KvCacheShape& shape, std::string_view model_id,
                                      int64_t num_blocks, int64_t num_tokens);

std::string EncodeHeader(const KvTransferHeader& header);
// Parses exactly one encoded header. InvalidArgument for malformed, truncated
// or oversized input, trailing bytes, an unknown version, non-positive
// dimensions or a token count that does not match the block count; DataLoss
// when the header checksum does not match.
absl::StatusOr<KvTransferHeader> DecodeHeader(std::string_view bytes);

// OK when blocks described by `header` can be written into `cache` of a
// server running `model_id`; InvalidArgument naming the first difference
// otherwise (model id, dtype, layers, heads, head_dim, block size).
absl::Status CheckKvTransferLayout(const KvTransferHeader& header, const KvCacheShape& shape,
                                   std::string_view model_id);

// Bytes of a chunk of `num_blocks` blocks of `bytes_per_block` each (for
// sizing messages).
int64_t EncodedBlocksSize(int64_t bytes_per_block, int64_t num_blocks);

// Where encoding reads blocks from and decoding writes them to: one block
// (shape.floats_per_block() floats, canonical layout) at a time, so a backend
// that keeps KV on a device or in another dtype converts one block per call.
// An error ends the encode or decode with it.
using KvBlockReader = absl::FunctionRef<absl::Status(int32_t block, std::span<float> out)>;
using KvBlockWriter = absl::FunctionRef<absl::Status(int32_t block, std::span<const float> in)>;

// One chunk holding `blocks` of a cache of `shape`, which are blocks
// [first_block_index, first_block_index + blocks.size()) of the sequence,
// read through `read`. Fails with the first error `read` returns.
absl::StatusOr<std::string> EncodeBlocks(const KvCacheShape& shape, KvBlockReader read,
                                         std::span<const int32_t> blocks,
                                         int64_t first_block_index = 0);
// The same from a host cache. Block ids must be valid in `cache`.
std::string EncodeBlocks(const KvCache& cache, std::span<const int32_t> blocks,
                         int64_t first_block_index = 0);

// Splits one chunk (as EncodeBlocks wrote it) into chunks of at most
// `max_blocks` blocks, in order: each is byte for byte what EncodeBlocks gives
// for its range, checksums included, so a sender can keep messages small.
// InvalidArgument for max_blocks < 1 or a malformed chunk.
absl::StatusOr<std::vector<std::string>> SplitBlocks(std::string_view chunk, int64_t max_blocks);

// Checks one chunk completely, then writes its blocks into `dst_blocks` of
// `cache`. Checked first: the header's layout against `cache` and `model_id`
// (CheckKvTransferLayout), that `dst_blocks` are distinct valid ids as many as
// the chunk holds, that the chunk starts at `first_block_index` and stays
// within header.num_blocks, its size, and every block checksum. On any error
// nothing is written. InvalidArgument for mismatches and malformed or
// truncated input; DataLoss for a checksum mismatch.
absl::Status DecodeAndWriteBlocks(std::string_view payload, const KvTransferHeader& header,
                                  std::string_view model_id, KvCache& cache,
                                  std::span<const int32_t> dst_blocks,
                                  int64_t first_block_index = 0);
// The same into a cache of `shape` (its num_blocks bounds `dst_blocks`)
// through `write`, called once per block in order after every check passed.
// An error from `write` is returned as is; blocks written before it stay
// written.
absl::Status DecodeAndWriteBlocks(std::string_view payload, const KvTransferHeader& header,
                                  std::string_view model_id, const KvCacheShape& shape,
                                  KvBlockWriter write, std::span<const int32_t> dst_blocks,
                                  int64_t first_block_index = 0);

// ---- Same-host transfers (kvcache/shared_pool.h) ----
// A chunk can name its blocks by their ids in the sender's shared pool
// (fp32 blocks in the canonical layout, block b at byte b * bytes per block)
// with one checksum each instead of carrying their bytes; the receiver
// copies them out of its mapping of that pool.

// The checksum a chunk carries for the block at `index` of its sequence.
uint64_t KvBlockChecksum(std::span<const std::byte> block, int64_t index);

// Copies blocks [first_block_index, first_block_index + pool_blocks.size())
// of a sequence out of a mapped peer pool (`pool`, its bytes) into
// `dst_blocks` of a cache of `shape` through `write`. Checked first: the
// header's layout (CheckKvTransferLayout), that pool_blocks, checksums and
// dst_blocks have one entry per block, that the range lies within
// header.num_blocks, every pool block lies within `pool`, and every
// destination block is valid and distinct (InvalidArgument otherwise). Each
// block is copied once, then its checksum checked on the copy (DataLoss on
// a mismatch: the block is not what the sender described) before it is
// written. Blocks written before an error stay written.
absl::Status CopyPoolBlocks(std::span<const std::byte> pool, std::span<const int32_t> pool_blocks,
                            std::span<const uint64_t> checksums, const KvTransferHeader& header,
                            std::string_view model_id, const KvCacheShape& shape, KvBlockWriter write,
                            std::span<const int32_t> dst_blocks, int64_t first_block_index);

// The same blocks as one encoded chunk (EncodeBlocks), for a receiver that
// passes them on as bytes; the same checks, less the destination's.
absl::StatusOr<std::string> EncodePoolBlocks(std::span<const std::byte> pool, std::span<const int32_t> pool_blocks,
                                             std::span<const uint64_t> checksums, const KvTransferHeader& header,
                                             std::string_view model_id, const KvCacheShape& shape,
                                             int64_t first_block_index);

}  // namespace ferry
