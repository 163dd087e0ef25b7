#include "common/checksum.h"

#include <string>

#include "gtest/gtest.h"

namespace ferry {
namespace {

// Published XXH64 values, so hashes stay interchangeable with other
// implementations (and across Ferry releases).
TEST(Checksum64Test, MatchesXxh64ReferenceValues) {
  EXPECT_EQ(Checksum64(""), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(Checksum64("a"), 0xD24EC4F1A98C6E5BULL);
  EXPECT_EQ(Checksum64("abc"), 0x44BC2CF5AD770999ULL);
  // Longer than one 32-byte stripe.
  EXPECT_EQ(Checksum64("Nobody inspects the spammish repetition"), 0xFBCEA83C8A378BF1ULL);
}

TEST(Checksum64Test, SeedAndEveryByteMatter) {
  std::string data(100, 'x');
  const uint64_t base = Checksum64(data);
  EXPECT_NE(Checksum64(data, 1), base);
  for (size_t i = 0; i < data.size(); ++i) {
    std::string changed = data;
    changed[i] ^= 1;
    EXPECT_NE(Checksum64(changed), base) << i;
  }
  for (size_t n = 0; n < data.size(); ++n) {
    EXPECT_NE(Checksum64(std::string_view(data).substr(0, n)), base) << n;
  }
}

}  // namespace
}  // namespace ferry
