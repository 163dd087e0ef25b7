#include "server/api_keys.h"

#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

TEST(ApiKeysTest, MatchesOnlyExactKeys) {
  ApiKeys keys({"alpha-key", "beta"});
  EXPECT_TRUE(keys.enabled());
  EXPECT_EQ(keys.Match("alpha-key"), 0u);
  EXPECT_EQ(keys.Match("beta"), 1u);
  EXPECT_FALSE(keys.Match("alpha-ke"));
  EXPECT_FALSE(keys.Match("alpha-key2"));
  EXPECT_FALSE(keys.Match(""));
  EXPECT_FALSE(keys.Match("betabeta"));
  EXPECT_FALSE(ApiKeys().enabled());
}

TEST(ApiKeysTest, KeepsOnlySha256Digests) {
  // FIPS 180-2's test vector: SHA-256("abc").
  const ApiKeys::Digest abc = ApiKeys::Hash("abc");
  std::string hex;
  for (unsigned char b : abc) {
    char two[3];
    std::snprintf(two, sizeof(two), "%02x", b);
    hex += two;
  }
  EXPECT_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  ApiKeys keys({"abc", "", "sk-secret"});
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys.digests()[0], abc);
  EXPECT_EQ(keys.digests()[1], ApiKeys::Hash("sk-secret"));
  // The plaintext is nowhere in what the object holds.
  const std::string held(reinterpret_cast<const char*>(keys.digests().data()),
                         keys.digests().size() * sizeof(ApiKeys::Digest));
  EXPECT_EQ(held.find("sk-secret"), std::string::npos);
  EXPECT_EQ(keys.Match("sk-secret"), 1u);
  EXPECT_EQ(keys.Match("abc"), 0u);
}

TEST(ApiKeysTest, DuplicateKeysMatchTheFirst) {
  ApiKeys keys({"same", "same"});
  EXPECT_EQ(keys.Match("same"), 0u);
}

TEST(ApiKeysTest, ConstantTimeEqualsHandlesLengths) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abcabc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("a", ""));
}

TEST(ApiKeysTest, ParsesBearerHeadersListsAndFiles) {
  EXPECT_EQ(ApiKeys::BearerToken("Bearer sk-1"), "sk-1");
  EXPECT_EQ(ApiKeys::BearerToken("bearer   sk-1  "), "sk-1");
  EXPECT_FALSE(ApiKeys::BearerToken("Basic abc"));
  EXPECT_FALSE(ApiKeys::BearerToken("Bearer "));
  EXPECT_EQ(ApiKeys::SplitList(" a, ,b ,"), (std::vector<std::string>{"a", "b"}));
  std::string path = ferry::testing::UniqueTempPath("keys.txt");
  std::ofstream(path) << "# comment\nk1\n\n  k2  \n";
  auto keys = ApiKeys::ReadFile(path);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(*keys, (std::vector<std::string>{"k1", "k2"}));
  EXPECT_FALSE(ApiKeys::ReadFile("/nonexistent/keys").ok());
}

}  // namespace
}  // namespace ferry
