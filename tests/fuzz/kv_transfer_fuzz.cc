// libFuzzer entry for the KV transfer decoder: arbitrary bytes must never
// crash it or make it read or write out of bounds.
//
// Input: first byte selects the mode.
//   even: [u16 header length][header bytes][chunk bytes]; the header is
//         decoded from the input too.
//   odd:  [chunk bytes] checked against a valid header for the small cache, so
//         the fuzzer reaches the block checks without first forging a header
//         checksum.
// With bit 1 of the first byte set, the rest (after the header in the even
// mode) is also read as a same-host chunk copied out of a pool:
//   [u8 count][i64 first block][count x i32 pool block][count x u64 checksum]
// over the small cache's own memory as the pool.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <cstring>
#include <numeric>
#include <span>
#include <string_view>
#include <vector>

#include "kvcache/kv_cache.h"
#include "kvcache/kv_transfer.h"

namespace {

constexpr std::string_view kModelId = "fuzz-model";

ferry::KvCache& SmallCache() {
  static ferry::KvCache* cache = [] {
    ferry::KvCacheShape shape;
    shape.num_layers = 1;
    shape.num_kv_heads = 1;
    shape.head_dim = 2;
    shape.block_size = 2;
    shape.num_blocks = 4;
    return ferry::KvCache::Create(shape).value().release();
  }();
  return *cache;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  ferry::KvCache& cache = SmallCache();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const bool forge_header = (in[0] & 1) == 0;
  const bool pool_chunk = (in[0] & 2) != 0;
  in.remove_prefix(1);

  ferry::KvTransferHeader header;
  if (forge_header) {
    if (in.size() < 2) return 0;
    size_t header_len = static_cast<unsigned char>(in[0]) |
                        (static_cast<size_t>(static_cast<unsigned char>(in[1])) << 8);
    in.remove_prefix(2);
    if (header_len > in.size()) return 0;
    auto decoded = ferry::DecodeHeader(in.substr(0, header_len));
    if (!decoded.ok()) return 0;
    header = *decoded;
    in.remove_prefix(header_len);
  } else {
    header = ferry::MakeKvTransferHeader(cache.shape(), kModelId, cache.num_blocks(),
                                         cache.num_blocks() * cache.shape().block_size);
  }
  // Try the chunk as the start of the sequence with as many destination
  // blocks as the cache has, and with fewer.
  for (int64_t n = 0; n <= cache.num_blocks(); ++n) {
    std::vector<int32_t> dst(static_cast<size_t>(n));
    std::iota(dst.begin(), dst.end(), 0);
    (void)ferry::DecodeAndWriteBlocks(in, header, kModelId, cache, dst, 0);
  }
  if (pool_chunk && !in.empty()) {
    auto take = [&in](auto* v) {
      if (in.size() < sizeof(*v)) return false;
      std::memcpy(v, in.data(), sizeof(*v));
      in.remove_prefix(sizeof(*v));
      return true;
    };
    uint8_t count = 0;
    int64_t first = 0;
    if (!take(&count) || !take(&first)) return 0;
    std::vector<int32_t> ids(count);
    std::vector<uint64_t> sums(count);
    for (int32_t& id : ids) {
      if (!take(&id)) return 0;
    }
    for (uint64_t& sum : sums) {
      if (!take(&sum)) return 0;
    }
    const auto pool = std::span<const std::byte>(reinterpret_cast<const std::byte*>(cache.Block(0)),
                                                 static_cast<size_t>(cache.shape().bytes_per_block() *
                                                                     cache.num_blocks()));
    static ferry::KvCache* dst_cache = ferry::KvCache::Create(cache.shape()).value().release();
    std::vector<int32_t> dst(ids.size());
    std::iota(dst.begin(), dst.end(), 0);
    auto write = [](int32_t block, std::span<const float> in_block) {
      std::memcpy(dst_cache->Block(block), in_block.data(), in_block.size_bytes());
      return absl::OkStatus();
    };
    (void)ferry::CopyPoolBlocks(pool, ids, sums, header, kModelId, cache.shape(), write, dst, first);
    (void)ferry::EncodePoolBlocks(pool, ids, sums, header, kModelId, cache.shape(), first);
  }
  return 0;
}
