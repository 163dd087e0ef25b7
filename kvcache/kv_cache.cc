#include "kvcache/kv_cache.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const KvCacheShape& shape, bool shared) {
  if (shape.num_layers <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0 ||
      shape.block_size <= 0 || shape.num_blocks <= 0) {
    return absl::InvalidArgumentError("KV cache shape must be positive in every dimension");
  }
  int64_t bytes = shape.bytes_per_block() * shape.num_blocks;
  if (bytes / shape.num_blocks != shape.bytes_per_block()) {
    return absl::InvalidArgumentError("KV cache size overflows");
  }
  size_t rounded = (static_cast<size_t>(bytes) + 63) / 64 * 64;
  if (shared) {
    // A fresh memfd is zero-filled and page-aligned.
    absl::StatusOr<std::unique_ptr<SharedMemory>> mem = SharedMemory::Create("ferry-kv", rounded);
    if (mem.ok()) {
      float* data = static_cast<float*>((*mem)->data());
      return std::unique_ptr<KvCache>(new KvCache(shape, data, std::move(*mem)));
    }
    Logger("kvcache")->warn("KV cache in private memory (peers on this host will not map it): {}",
                            std::string(mem.status().message()));
  }
  // 64-byte alignment for SIMD loads; calloc-like zeroing so unused slots are
  // finite.
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", bytes, " bytes for ", shape.num_blocks, " KV blocks"));
  }
  std::memset(p, 0, rounded);
  return std::unique_ptr<KvCache>(new KvCache(shape, static_cast<float*>(p), nullptr));
}

KvCache::~KvCache() {
  if (shared_ == nullptr) std::free(data_);
}

}  // namespace ferry
