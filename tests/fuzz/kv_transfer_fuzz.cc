// libFuzzer entry for the KV transfer decoder: arbitrary bytes must never
// crash it or make it read or write out of bounds.
//
// Input: first byte selects the mode.
//   even: [u16 header length][header bytes][chunk bytes]; the header is
//         decoded from the input too.
//   odd:  [chunk bytes] checked against a valid header for the small cache, so
//         the fuzzer reaches the block checks without first forging a header
//         checksum.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <numeric>
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
  return 0;
}
