#include "server/api_keys.h"

#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"

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
  std::string path = ::testing::TempDir() + "/keys.txt";
  std::ofstream(path) << "# comment\nk1\n\n  k2  \n";
  auto keys = ApiKeys::ReadFile(path);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(*keys, (std::vector<std::string>{"k1", "k2"}));
  EXPECT_FALSE(ApiKeys::ReadFile("/nonexistent/keys").ok());
}

}  // namespace
}  // namespace ferry
