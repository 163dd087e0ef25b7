#include "kvcache/kv_cache_memory.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace ferry {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Multiplier for a unit name, or 0 when unknown.
double UnitMultiplier(std::string_view unit) {
  std::string u = absl::AsciiStrToLower(Sv(unit));
  if (u == "b") return 1.0;
  if (u == "kb") return 1e3;
  if (u == "mb") return 1e6;
  if (u == "gb") return 1e9;
  if (u == "tb") return 1e12;
  if (u == "kib") return 1024.0;
  if (u == "mib") return 1024.0 * 1024;
  if (u == "gib") return 1024.0 * 1024 * 1024;
  if (u == "tib") return 1024.0 * 1024 * 1024 * 1024;
  return 0.0;
}

std::optional<int64_t> ReadInt64File(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text)) return std::nullopt;
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

}  // namespace

absl::StatusOr<int64_t> ParseKvCacheMemory(std::string_view spec, int64_t available_bytes) {
  const std::string_view s = Trim(spec);
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad KV cache memory \"", Sv(spec), "\": ", Sv(why),
                     " (use bytes like 2GiB, 512MiB, 1e9, or a fraction of free memory like 0.5)"));
  };
  if (s.empty()) return bad("empty");
  double value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr == s.data()) return bad("not a number");
  if (!std::isfinite(value)) return bad("not finite");
  if (value <= 0) return bad("must be positive");
  const std::string_view unit = Trim(s.substr(static_cast<size_t>(ptr - s.data())));
  double bytes;
  if (unit.empty()) {
    if (value <= 1.0) {
      if (available_bytes <= 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "KV cache memory \"", Sv(spec),
            "\" is a fraction of available memory, which is unknown here; give bytes instead"));
      }
      const double share = std::floor(value * static_cast<double>(available_bytes));
      if (share < 1) return bad("less than one byte of available memory");
      return static_cast<int64_t>(share);
    }
    if (value != std::floor(value)) {
      return bad("a plain number above 1 is a byte count and must be whole");
    }
    bytes = value;
  } else {
    const double multiplier = UnitMultiplier(unit);
    if (multiplier == 0) return bad(absl::StrCat("unknown unit \"", Sv(unit), "\""));
    bytes = std::floor(value * multiplier);
  }
  // 2^63 is exactly representable; anything at or above it overflows int64.
  if (bytes >= 9223372036854775808.0) return bad("too large");
  if (bytes < 1) return bad("less than one byte");
  return static_cast<int64_t>(bytes);
}

std::optional<int64_t> ParseMemAvailable(std::string_view meminfo) {
  constexpr std::string_view kKey = "MemAvailable:";
  size_t pos = 0;
  while (pos < meminfo.size()) {
    size_t end = meminfo.find('\n', pos);
    if (end == std::string_view::npos) end = meminfo.size();
    std::string_view line = meminfo.substr(pos, end - pos);
    pos = end + 1;
    if (line.substr(0, kKey.size()) != kKey) continue;
    std::string_view rest = Trim(line.substr(kKey.size()));
    int64_t kib = 0;
    auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), kib);
    if (ec != std::errc() || kib < 0) return std::nullopt;
    std::string_view unit = Trim(rest.substr(static_cast<size_t>(ptr - rest.data())));
    if (unit != "kB") return std::nullopt;
    return kib * 1024;
  }
  return std::nullopt;
}

int64_t AvailableMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  std::stringstream text;
  text << in.rdbuf();
  int64_t available = ParseMemAvailable(text.str()).value_or(0);
  // cgroup v2: memory.max is "max" (no limit, which ReadInt64File rejects) or
  // a byte count.
  std::optional<int64_t> limit = ReadInt64File("/sys/fs/cgroup/memory.max");
  std::optional<int64_t> usage = ReadInt64File("/sys/fs/cgroup/memory.current");
  if (limit && usage) {
    // Inactive file pages (e.g. a model file read once) count as usage but
    // are reclaimed under pressure, so they do not reduce the room.
    std::ifstream stat_in("/sys/fs/cgroup/memory.stat");
    std::string key;
    int64_t value = 0;
    while (stat_in >> key >> value) {
      if (key == "inactive_file") {
        *usage = std::max<int64_t>(0, *usage - value);
        break;
      }
    }
    int64_t room = *limit > *usage ? *limit - *usage : 0;
    available = available > 0 ? std::min(available, room) : room;
  }
  return available;
}

}  // namespace ferry
