#include "kvcache/kv_transfer.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/checksum.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace ferry {
namespace {

// Block bytes are sent as they lie in memory; both ends must agree on the
// byte order of floats and integers.
static_assert(std::endian::native == std::endian::little,
              "the KV transfer format assumes little-endian hosts");

constexpr char kHeaderMagic[4] = {'F', 'K', 'V', 'H'};
constexpr char kChunkMagic[4] = {'F', 'K', 'V', 'B'};
constexpr size_t kMaxDtypeBytes = 16;
// magic, version, reserved, first index, count, reserved, bytes per block.
constexpr int64_t kChunkHeaderBytes = 4 + 2 + 2 + 8 + 4 + 4 + 8;
constexpr int64_t kBlockChecksumBytes = 8;

void PutU16(std::string& out, uint16_t v) {
  for (int i = 0; i < 2; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void PutString(std::string& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

// Bounds-checked reads from untrusted bytes. Every read fails, instead of
// reading past the end, once fewer bytes are left than asked for.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }

  bool Bytes(size_t n, std::string_view* out) {
    if (n > remaining()) return false;
    *out = data_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool U16(uint16_t* v) { return Le(v); }
  bool U32(uint32_t* v) { return Le(v); }
  bool U64(uint64_t* v) { return Le(v); }
  bool I32(int32_t* v) {
    uint32_t u;
    if (!Le(&u)) return false;
    *v = static_cast<int32_t>(u);
    return true;
  }
  bool I64(int64_t* v) {
    uint64_t u;
    if (!Le(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool String(size_t max_size, std::string* out) {
    uint32_t n;
    std::string_view s;
    if (!U32(&n) || n > max_size || !Bytes(n, &s)) return false;
    out->assign(s);
    return true;
  }

 private:
  template <typename T>
  bool Le(T* v) {
    if (sizeof(T) > remaining()) return false;
    T x = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      x |= static_cast<T>(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i);
    }
    pos_ += sizeof(T);
    *v = x;
    return true;
  }

  std::string_view data_;
  size_t pos_ = 0;
};

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("KV transfer: ", Sv(what)));
}

uint64_t BlockChecksum(const void* data, size_t size, int64_t index) {
  // Seeding with the block's position catches blocks sent out of order.
  return Checksum64(data, size, static_cast<uint64_t>(index));
}

}  // namespace

KvTransferHeader MakeKvTransferHeader(const KvCacheShape& shape, std::string_view model_id,
                                      int64_t num_blocks, int64_t num_tokens) {
  KvTransferHeader h;
  h.model_id = std::string(model_id);
  h.num_layers = shape.num_layers;
  h.num_kv_heads = shape.num_kv_heads;
  h.head_dim = shape.head_dim;
  h.block_size = shape.block_size;
  h.num_blocks = num_blocks;
  h.num_tokens = num_tokens;
  return h;
}

std::string EncodeHeader(const KvTransferHeader& header) {
  std::string out;
  out.append(kHeaderMagic, sizeof(kHeaderMagic));
  PutU16(out, kKvTransferVersion);
  PutU16(out, 0);
  PutU32(out, static_cast<uint32_t>(header.num_layers));
  PutU32(out, static_cast<uint32_t>(header.num_kv_heads));
  PutU32(out, static_cast<uint32_t>(header.head_dim));
  PutU32(out, static_cast<uint32_t>(header.block_size));
  PutU64(out, static_cast<uint64_t>(header.num_blocks));
  PutU64(out, static_cast<uint64_t>(header.num_tokens));
  PutString(out, header.model_id);
  PutString(out, header.dtype);
  PutU64(out, Checksum64(out));
  return out;
}

absl::StatusOr<KvTransferHeader> DecodeHeader(std::string_view bytes) {
  Reader r(bytes);
  std::string_view magic;
  uint16_t version = 0, reserved = 0;
  if (!r.Bytes(sizeof(kHeaderMagic), &magic) ||
      std::memcmp(magic.data(), kHeaderMagic, sizeof(kHeaderMagic)) != 0) {
    return Malformed("not a KV transfer header (bad magic)");
  }
  if (!r.U16(&version) || !r.U16(&reserved)) return Malformed("truncated header");
  if (reserved != 0) return Malformed("reserved header field is set");
  if (version != kKvTransferVersion) {
    return Malformed(absl::StrCat("unsupported format version ", version, " (this build reads ",
                                  kKvTransferVersion, ")"));
  }
  KvTransferHeader h;
  if (!r.I32(&h.num_layers) || !r.I32(&h.num_kv_heads) || !r.I32(&h.head_dim) ||
      !r.I32(&h.block_size) || !r.I64(&h.num_blocks) || !r.I64(&h.num_tokens) ||
      !r.String(kKvTransferMaxModelIdBytes, &h.model_id) || !r.String(kMaxDtypeBytes, &h.dtype)) {
    return Malformed("truncated or oversized header");
  }
  const size_t checked = r.position();
  uint64_t checksum = 0;
  if (!r.U64(&checksum)) return Malformed("truncated header");
  if (r.remaining() != 0) return Malformed("trailing bytes after the header");
  if (checksum != Checksum64(bytes.substr(0, checked))) {
    return absl::DataLossError("KV transfer: header checksum mismatch");
  }
  if (h.num_layers <= 0 || h.num_kv_heads <= 0 || h.head_dim <= 0 || h.block_size <= 0) {
    return Malformed("header dimensions must be positive");
  }
  if (h.num_blocks < 0 || h.num_tokens < 0) return Malformed("negative block or token count");
  // ceil(num_tokens / block_size) without overflow.
  const int64_t blocks_for_tokens =
      h.num_tokens / h.block_size + (h.num_tokens % h.block_size != 0 ? 1 : 0);
  if (blocks_for_tokens != h.num_blocks) {
    return Malformed(absl::StrCat(h.num_tokens, " tokens need ", blocks_for_tokens, " blocks of ",
                                  h.block_size, ", header says ", h.num_blocks));
  }
  return h;
}

absl::Status CheckKvTransferLayout(const KvTransferHeader& header, const KvCacheShape& shape,
                                   std::string_view model_id) {
  auto mismatch = [](std::string_view what, auto got, auto want) {
    return absl::InvalidArgumentError(absl::StrCat("KV transfer layout mismatch: ", Sv(what),
                                                   " is ", got, " in the stream but ", want,
                                                   " here"));
  };
  if (header.model_id != model_id) {
    return mismatch("model id", Sv(header.model_id), Sv(model_id));
  }
  if (header.dtype != "f32") return mismatch("dtype", Sv(header.dtype), "f32");
  if (header.num_layers != shape.num_layers) {
    return mismatch("num_layers", header.num_layers, shape.num_layers);
  }
  if (header.num_kv_heads != shape.num_kv_heads) {
    return mismatch("num_kv_heads", header.num_kv_heads, shape.num_kv_heads);
  }
  if (header.head_dim != shape.head_dim) {
    return mismatch("head_dim", header.head_dim, shape.head_dim);
  }
  if (header.block_size != shape.block_size) {
    return mismatch("block_size", header.block_size, shape.block_size);
  }
  return absl::OkStatus();
}

int64_t EncodedBlocksSize(int64_t bytes_per_block, int64_t num_blocks) {
  return kChunkHeaderBytes + num_blocks * (kBlockChecksumBytes + bytes_per_block);
}

absl::StatusOr<std::string> EncodeBlocks(const KvCacheShape& shape, KvBlockReader read,
                                         std::span<const int32_t> blocks,
                                         int64_t first_block_index) {
  const int64_t bytes_per_block = shape.bytes_per_block();
  std::string out;
  out.reserve(static_cast<size_t>(EncodedBlocksSize(bytes_per_block, blocks.size())));
  out.append(kChunkMagic, sizeof(kChunkMagic));
  PutU16(out, kKvTransferVersion);
  PutU16(out, 0);
  PutU64(out, static_cast<uint64_t>(first_block_index));
  PutU32(out, static_cast<uint32_t>(blocks.size()));
  PutU32(out, 0);
  PutU64(out, static_cast<uint64_t>(bytes_per_block));
  // Each block goes through a scratch block that stays in the core's cache
  // for the checksum and the append (reading straight into the chunk was
  // measured slower: resizing the string first writes every byte once more).
  std::vector<float> block(static_cast<size_t>(shape.floats_per_block()));
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (absl::Status s = read(blocks[i], block); !s.ok()) return s;
    const auto* data = reinterpret_cast<const char*>(block.data());
    PutU64(out, BlockChecksum(data, static_cast<size_t>(bytes_per_block),
                              first_block_index + static_cast<int64_t>(i)));
    out.append(data, static_cast<size_t>(bytes_per_block));
  }
  return out;
}

std::string EncodeBlocks(const KvCache& cache, std::span<const int32_t> blocks,
                         int64_t first_block_index) {
  auto read = [&cache](int32_t block, std::span<float> out) {
    std::memcpy(out.data(), cache.Block(block), out.size_bytes());
    return absl::OkStatus();
  };
  // Reading a host cache cannot fail.
  return *EncodeBlocks(cache.shape(), read, blocks, first_block_index);
}

absl::StatusOr<std::vector<std::string>> SplitBlocks(std::string_view chunk, int64_t max_blocks) {
  if (max_blocks < 1) return absl::InvalidArgumentError("KV transfer: max_blocks must be at least 1");
  Reader r(chunk);
  std::string_view magic;
  uint16_t version = 0, reserved16 = 0;
  uint32_t count = 0, reserved32 = 0;
  int64_t first = 0, bytes_per_block = 0;
  if (!r.Bytes(sizeof(kChunkMagic), &magic) ||
      std::memcmp(magic.data(), kChunkMagic, sizeof(kChunkMagic)) != 0 || !r.U16(&version) ||
      !r.U16(&reserved16) || !r.I64(&first) || !r.U32(&count) || !r.U32(&reserved32) ||
      !r.I64(&bytes_per_block) || version != kKvTransferVersion || first < 0 || bytes_per_block <= 0) {
    return Malformed("not a KV block chunk");
  }
  const size_t per_block = kBlockChecksumBytes + static_cast<size_t>(bytes_per_block);
  if (per_block == 0 || r.remaining() / per_block != count || r.remaining() % per_block != 0) {
    return Malformed("chunk body does not match its block count");
  }
  std::vector<std::string> out;
  for (int64_t done = 0; done < int64_t{count}; done += max_blocks) {
    const int64_t n = std::min<int64_t>(max_blocks, int64_t{count} - done);
    std::string piece;
    piece.reserve(static_cast<size_t>(kChunkHeaderBytes) + static_cast<size_t>(n) * per_block);
    piece.append(kChunkMagic, sizeof(kChunkMagic));
    PutU16(piece, kKvTransferVersion);
    PutU16(piece, 0);
    PutU64(piece, static_cast<uint64_t>(first + done));
    PutU32(piece, static_cast<uint32_t>(n));
    PutU32(piece, 0);
    PutU64(piece, static_cast<uint64_t>(bytes_per_block));
    std::string_view body;
    r.Bytes(static_cast<size_t>(n) * per_block, &body);
    piece.append(body);
    out.push_back(std::move(piece));
  }
  return out;
}

absl::Status DecodeAndWriteBlocks(std::string_view payload, const KvTransferHeader& header,
                                  std::string_view model_id, KvCache& cache,
                                  std::span<const int32_t> dst_blocks, int64_t first_block_index) {
  auto write = [&cache](int32_t block, std::span<const float> in) {
    std::memcpy(cache.Block(block), in.data(), in.size_bytes());
    return absl::OkStatus();
  };
  return DecodeAndWriteBlocks(payload, header, model_id, cache.shape(), write, dst_blocks,
                              first_block_index);
}

namespace {

absl::Status CheckDestinationBlocks(const KvCacheShape& shape, std::span<const int32_t> dst_blocks) {
  absl::flat_hash_set<int32_t> seen;
  for (int32_t b : dst_blocks) {
    if (b < 0 || b >= shape.num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("KV transfer: destination block ", b,
                                                     " is outside the cache (", shape.num_blocks,
                                                     " blocks)"));
    }
    if (!seen.insert(b).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV transfer: destination block ", b, " given twice"));
    }
  }
  return absl::OkStatus();
}

// The checks CopyPoolBlocks and EncodePoolBlocks share, less the
// destination's.
absl::Status CheckPoolChunk(std::span<const std::byte> pool, std::span<const int32_t> pool_blocks,
                            std::span<const uint64_t> checksums, const KvTransferHeader& header,
                            std::string_view model_id, const KvCacheShape& shape, int64_t first) {
  if (absl::Status s = CheckKvTransferLayout(header, shape, model_id); !s.ok()) return s;
  const auto count = static_cast<int64_t>(pool_blocks.size());
  if (checksums.size() != pool_blocks.size()) {
    return Malformed(absl::StrCat("chunk names ", count, " pool blocks with ", checksums.size(), " checksums"));
  }
  if (first < 0 || first > header.num_blocks || count > header.num_blocks - first) {
    // (No first + count here: a hostile first would overflow it.)
    return Malformed(absl::StrCat("chunk of ", count, " blocks from block ", first, " exceeds the sequence's ",
                                  header.num_blocks, " blocks"));
  }
  const int64_t in_pool = static_cast<int64_t>(pool.size()) / shape.bytes_per_block();
  for (int32_t b : pool_blocks) {
    if (b < 0 || b >= in_pool) {
      return Malformed(absl::StrCat("pool block ", b, " is outside the peer's pool (", in_pool, " blocks)"));
    }
  }
  return absl::OkStatus();
}

// Copies pool block `id` into `out` and checks it against `checksum`.
absl::Status ReadPoolBlock(std::span<const std::byte> pool, int32_t id, uint64_t checksum, int64_t index,
                           std::span<float> out) {
  const auto bytes = out.size_bytes();
  std::memcpy(out.data(), pool.data() + static_cast<size_t>(id) * bytes, bytes);
  if (BlockChecksum(out.data(), bytes, index) != checksum) {
    return absl::DataLossError(absl::StrCat("KV transfer: pool block ", id, " (block ", index,
                                            " of the sequence) does not match its checksum"));
  }
  return absl::OkStatus();
}

}  // namespace

uint64_t KvBlockChecksum(std::span<const std::byte> block, int64_t index) {
  return BlockChecksum(block.data(), block.size(), index);
}

absl::Status CopyPoolBlocks(std::span<const std::byte> pool, std::span<const int32_t> pool_blocks,
                            std::span<const uint64_t> checksums, const KvTransferHeader& header,
                            std::string_view model_id, const KvCacheShape& shape, KvBlockWriter write,
                            std::span<const int32_t> dst_blocks, int64_t first_block_index) {
  FERRY_RETURN_IF_ERROR(CheckPoolChunk(pool, pool_blocks, checksums, header, model_id, shape, first_block_index));
  if (dst_blocks.size() != pool_blocks.size()) {
    return Malformed(absl::StrCat("chunk names ", pool_blocks.size(), " pool blocks but ", dst_blocks.size(),
                                  " destination blocks were given"));
  }
  FERRY_RETURN_IF_ERROR(CheckDestinationBlocks(shape, dst_blocks));
  // One copy out of the shared pool into a block that stays in this core's
  // cache; the checksum is taken on that copy, so a block the owner
  // changes meanwhile is caught, never half written.
  std::vector<float> block(static_cast<size_t>(shape.floats_per_block()));
  for (size_t i = 0; i < pool_blocks.size(); ++i) {
    const int64_t index = first_block_index + static_cast<int64_t>(i);
    FERRY_RETURN_IF_ERROR(ReadPoolBlock(pool, pool_blocks[i], checksums[i], index, block));
    FERRY_RETURN_IF_ERROR(write(dst_blocks[i], block));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> EncodePoolBlocks(std::span<const std::byte> pool, std::span<const int32_t> pool_blocks,
                                             std::span<const uint64_t> checksums, const KvTransferHeader& header,
                                             std::string_view model_id, const KvCacheShape& shape,
                                             int64_t first_block_index) {
  FERRY_RETURN_IF_ERROR(CheckPoolChunk(pool, pool_blocks, checksums, header, model_id, shape, first_block_index));
  size_t next = 0;
  auto read = [&](int32_t id, std::span<float> out) {
    const size_t i = next++;
    return ReadPoolBlock(pool, id, checksums[i], first_block_index + static_cast<int64_t>(i), out);
  };
  return EncodeBlocks(shape, read, pool_blocks, first_block_index);
}

absl::Status DecodeAndWriteBlocks(std::string_view payload, const KvTransferHeader& header,
                                  std::string_view model_id, const KvCacheShape& shape,
                                  KvBlockWriter write, std::span<const int32_t> dst_blocks,
                                  int64_t first_block_index) {
  if (absl::Status s = CheckKvTransferLayout(header, shape, model_id); !s.ok()) return s;
  FERRY_RETURN_IF_ERROR(CheckDestinationBlocks(shape, dst_blocks));

  Reader r(payload);
  std::string_view magic;
  uint16_t version = 0, reserved16 = 0;
  uint32_t count = 0, reserved32 = 0;
  int64_t first = 0, bytes_per_block = 0;
  if (!r.Bytes(sizeof(kChunkMagic), &magic) ||
      std::memcmp(magic.data(), kChunkMagic, sizeof(kChunkMagic)) != 0) {
    return Malformed("not a KV block chunk (bad magic)");
  }
  if (!r.U16(&version) || !r.U16(&reserved16) || !r.I64(&first) || !r.U32(&count) ||
      !r.U32(&reserved32) || !r.I64(&bytes_per_block)) {
    return Malformed("truncated chunk header");
  }
  if (version != kKvTransferVersion) {
    return Malformed(absl::StrCat("unsupported chunk version ", version));
  }
  // Reserved for later versions; insisting on zero also means no byte of the
  // chunk header can change unnoticed.
  if (reserved16 != 0 || reserved32 != 0) return Malformed("reserved chunk fields are set");
  if (first != first_block_index) {
    return Malformed(
        absl::StrCat("chunk starts at block ", first, ", expected ", first_block_index));
  }
  if (count != dst_blocks.size()) {
    return Malformed(absl::StrCat("chunk holds ", count, " blocks but ", dst_blocks.size(),
                                  " destination blocks were given"));
  }
  if (first < 0 || first > header.num_blocks || int64_t{count} > header.num_blocks - first) {
    return Malformed(absl::StrCat("chunk of ", count, " blocks from block ", first, " exceeds the sequence's ",
                                  header.num_blocks, " blocks"));
  }
  if (bytes_per_block != shape.bytes_per_block()) {
    return Malformed(absl::StrCat("chunk has ", bytes_per_block, " bytes per block, expected ",
                                  shape.bytes_per_block()));
  }
  // Sizes are now known to be sane (count fits the cache, block size matches
  // it), so the product cannot overflow.
  const size_t block_bytes = static_cast<size_t>(bytes_per_block);
  const size_t expected = static_cast<size_t>(count) * (kBlockChecksumBytes + block_bytes);
  if (r.remaining() != expected) {
    return Malformed(absl::StrCat("chunk body has ", r.remaining(), " bytes, expected ", expected,
                                  r.remaining() < expected ? " (truncated)" : ""));
  }
  // Verify every block before writing any, so a bad chunk leaves the cache
  // untouched.
  std::vector<const char*> sources(count);
  for (uint32_t i = 0; i < count; ++i) {
    uint64_t checksum = 0;
    std::string_view data;
    if (!r.U64(&checksum) || !r.Bytes(block_bytes, &data)) return Malformed("truncated chunk");
    if (checksum != BlockChecksum(data.data(), data.size(), first + i)) {
      return absl::DataLossError(
          absl::StrCat("KV transfer: checksum mismatch in block ", first + i));
    }
    sources[i] = data.data();
  }
  // A float-aligned block is written from the payload itself; the payload
  // need not be aligned, and an unaligned block goes through an aligned copy.
  std::vector<float> scratch;
  for (uint32_t i = 0; i < count; ++i) {
    std::span<const float> block;
    if (reinterpret_cast<uintptr_t>(sources[i]) % alignof(float) == 0) {
      block = std::span<const float>(reinterpret_cast<const float*>(sources[i]), block_bytes / sizeof(float));
    } else {
      scratch.resize(block_bytes / sizeof(float));
      std::memcpy(scratch.data(), sources[i], block_bytes);
      block = scratch;
    }
    if (absl::Status s = write(dst_blocks[i], block); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace ferry
