#include "kvcache/kv_cache_memory.h"

#include "gtest/gtest.h"

namespace ferry {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(ParseKvCacheMemoryTest, Bytes) {
  EXPECT_EQ(ParseKvCacheMemory("1073741824", 0).value(), kGiB);
  EXPECT_EQ(ParseKvCacheMemory("1e9", 0).value(), 1000000000);
  EXPECT_EQ(ParseKvCacheMemory("2GiB", 0).value(), 2 * kGiB);
  EXPECT_EQ(ParseKvCacheMemory("512MiB", 0).value(), 512 << 20);
  EXPECT_EQ(ParseKvCacheMemory(" 2 gib ", 0).value(), 2 * kGiB);
  EXPECT_EQ(ParseKvCacheMemory("1.5GB", 0).value(), 1500000000);
  EXPECT_EQ(ParseKvCacheMemory("64KiB", 0).value(), 65536);
  EXPECT_EQ(ParseKvCacheMemory("3kb", 0).value(), 3000);
  EXPECT_EQ(ParseKvCacheMemory("1TiB", 0).value(), kGiB * 1024);
  EXPECT_EQ(ParseKvCacheMemory("100B", 0).value(), 100);
  EXPECT_EQ(ParseKvCacheMemory("2", 0).value(), 2);
}

TEST(ParseKvCacheMemoryTest, Fraction) {
  EXPECT_EQ(ParseKvCacheMemory("0.5", 8 * kGiB).value(), 4 * kGiB);
  EXPECT_EQ(ParseKvCacheMemory("1", 1000).value(), 1000);
  EXPECT_EQ(ParseKvCacheMemory("0.25", 1000).value(), 250);
  EXPECT_EQ(ParseKvCacheMemory("0.5", 0).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ParseKvCacheMemoryTest, Errors) {
  for (const char* bad :
       {"", "  ", "abc", "GiB", "-1", "0", "0GiB", "-2GiB", "1.5", "2XB", "2 G i B", "inf", "nan",
        "1e30", "9e18GiB", "0x10", "1e", "0.1B", "0.000000001"}) {
    absl::StatusOr<int64_t> r = ParseKvCacheMemory(bad, 100);
    EXPECT_FALSE(r.ok()) << "\"" << bad << "\" gave " << *r;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
      EXPECT_NE(r.status().message().find("KV cache memory"), absl::string_view::npos);
    }
  }
}

TEST(AvailableMemoryTest, ParsesMeminfo) {
  EXPECT_EQ(ParseMemAvailable("MemTotal: 100 kB\nMemFree: 5 kB\nMemAvailable:   2048 kB\n"),
            2048 * 1024);
  EXPECT_FALSE(ParseMemAvailable("MemTotal: 100 kB\n").has_value());
  EXPECT_FALSE(ParseMemAvailable("MemAvailable: x kB\n").has_value());
  EXPECT_GT(AvailableMemoryBytes(), 0);
}

}  // namespace
}  // namespace ferry
