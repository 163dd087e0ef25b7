// How much memory the KV cache may use, from a user's setting.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"

namespace ferry {

// Parses a KV cache memory setting into bytes:
//  - bytes with an optional unit: "1073741824", "1e9", "512MiB", "2 GiB",
//    "1.5GB". Units (any case): B, KB/MB/GB/TB (powers of 1000),
//    KiB/MiB/GiB/TiB (powers of 1024). Fractions of a byte are dropped.
//  - a fraction of `available_bytes` in (0, 1] when the value is a plain
//    number no greater than 1: "0.5", "1".
// InvalidArgument for an empty, malformed, non-finite, non-positive or
// too-large value, an unknown unit, or a plain number above 1 that is not a
// whole number of bytes ("1.5"). FailedPrecondition for a fraction when
// `available_bytes` is not positive (unknown).
absl::StatusOr<int64_t> ParseKvCacheMemory(std::string_view spec, int64_t available_bytes);

// Memory this process can still use: MemAvailable from /proc/meminfo, capped by
// the cgroup (v2) limit minus current usage when one is set, since in a
// container MemAvailable describes the host. 0 when unknown.
int64_t AvailableMemoryBytes();

// MemAvailable in bytes from the text of /proc/meminfo, or nullopt.
std::optional<int64_t> ParseMemAvailable(std::string_view meminfo);

}  // namespace ferry
