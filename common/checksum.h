// A fast, stable 64-bit hash of bytes: the XXH64 algorithm, so values match
// other xxHash64 implementations and stay the same across processes,
// machines and releases. Used for KV block checksums and for the prefix-cache
// content hashes that workers share with the scheduler, which is why it must
// never depend on std::hash or on pointer values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ferry {

// XXH64 of `size` bytes at `data` with `seed`.
uint64_t Checksum64(const void* data, size_t size, uint64_t seed = 0);

inline uint64_t Checksum64(std::string_view bytes, uint64_t seed = 0) {
  return Checksum64(bytes.data(), bytes.size(), seed);
}

}  // namespace ferry
