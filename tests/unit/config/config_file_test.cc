#include "tools/config_file.h"

#include <fstream>

#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

std::vector<ConfigEntry> MustParse(std::string_view text) {
  auto entries = ParseConfig(text);
  EXPECT_TRUE(entries.ok()) << entries.status() << "\n" << text;
  return entries.ok() ? *entries : std::vector<ConfigEntry>{};
}

std::string ErrorOf(std::string_view text) {
  auto entries = ParseConfig(text);
  EXPECT_FALSE(entries.ok()) << "parsed:\n" << text;
  return entries.ok() ? "" : std::string(entries.status().message());
}

TEST(ConfigFileTest, YamlScalarsQuotesCommentsAndLists) {
  auto e = MustParse(
      "# a comment\n"
      "---\n"
      "listen: 0.0.0.0:8000   # trailing comment\n"
      "max_num_seqs: 64\n"
      "migration: \"on\"\n"
      "served-model-name: 'it''s'\n"
      "chat-template: \"a \\\"b\\\" #c\\n\"\n"
      "api-key: [sk-1, \"sk-2\", 'sk 3']\n"
      "policy:\n"
      "  - x\n"
      "  - \"y\"   # item comment\n"
      "empty: \"\"\n"
      "url: http://host:80/a#b\n");
  ASSERT_EQ(e.size(), 9u);
  EXPECT_EQ(e[0].key, "listen");
  EXPECT_EQ(e[0].value, "0.0.0.0:8000");
  EXPECT_EQ(e[0].line, 3);
  EXPECT_EQ(e[1].key, "max-num-seqs");  // '_' is the same as '-'
  EXPECT_EQ(e[1].value, "64");
  EXPECT_EQ(e[2].value, "on");
  EXPECT_EQ(e[3].value, "it's");
  EXPECT_EQ(e[4].value, "a \"b\" #c\n");
  EXPECT_EQ(e[5].value, "sk-1,sk-2,sk 3");
  EXPECT_EQ(e[6].key, "policy");
  EXPECT_EQ(e[6].value, "x,y");
  EXPECT_EQ(e[6].line, 9);
  EXPECT_EQ(e[7].value, "");
  EXPECT_EQ(e[8].value, "http://host:80/a#b");
}

TEST(ConfigFileTest, EmptyAndCrlfFiles) {
  EXPECT_TRUE(MustParse("").empty());
  EXPECT_TRUE(MustParse("# only a comment\n\n").empty());
  auto e = MustParse("\xEF\xBB\xBFport: 8000\r\nhost: a\r\n");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].value, "8000");
  EXPECT_EQ(e[1].value, "a");
}

TEST(ConfigFileTest, JsonObject) {
  auto e = MustParse(R"({"port": 8000, "kv_cache_memory": 0.5, "no-prefix-caching": true,
                         "api-key": ["a", "b"], "host": "0.0.0.0"})");
  ASSERT_EQ(e.size(), 5u);
  std::map<std::string, std::string> m;
  for (const auto& x : e) m[x.key] = x.value;
  EXPECT_EQ(m["port"], "8000");
  EXPECT_EQ(m["kv-cache-memory"], "0.5");
  EXPECT_EQ(m["no-prefix-caching"], "true");
  EXPECT_EQ(m["api-key"], "a,b");
  EXPECT_EQ(m["host"], "0.0.0.0");
}

TEST(ConfigFileTest, RejectsWhatTheSubsetDoesNotRead) {
  EXPECT_NE(ErrorOf("a: 1\nb:\n  c: 2\n").find("line 3"), std::string::npos);
  EXPECT_NE(ErrorOf("a: &x 1\n").find("anchors"), std::string::npos);
  EXPECT_NE(ErrorOf("a: *x\n").find("aliases"), std::string::npos);
  EXPECT_NE(ErrorOf("a: !!str 1\n").find("tags"), std::string::npos);
  EXPECT_NE(ErrorOf("a: |\n  text\n").find("block scalars"), std::string::npos);
  EXPECT_NE(ErrorOf("a: {b: 1}\n").find("nested mappings"), std::string::npos);
  EXPECT_NE(ErrorOf("a: b: c\n").find("nested mappings"), std::string::npos);
  EXPECT_NE(ErrorOf("a: [1, [2]]\n").find("nested lists"), std::string::npos);
  EXPECT_NE(ErrorOf("a: [1, 2\n").find("not closed"), std::string::npos);
  EXPECT_NE(ErrorOf("a: \"open\n").find("not closed"), std::string::npos);
  EXPECT_NE(ErrorOf("a: \"x\" y\n").find("after a quoted"), std::string::npos);
  EXPECT_NE(ErrorOf("a: \"\\q\"\n").find("escape"), std::string::npos);
  EXPECT_NE(ErrorOf("a: 1\na: 2\n").find("key 'a' is given twice"), std::string::npos);
  EXPECT_NE(ErrorOf("a_b: 1\na-b: 2\n").find("given twice"), std::string::npos);
  EXPECT_NE(ErrorOf("a:\n").find("key 'a' has no value"), std::string::npos);
  EXPECT_NE(ErrorOf("a: ~\n").find("null"), std::string::npos);
  EXPECT_NE(ErrorOf("- a\n").find("belongs to no key"), std::string::npos);
  EXPECT_NE(ErrorOf("just text\n").find("expected 'key: value'"), std::string::npos);
  EXPECT_NE(ErrorOf("a:1\n").find("line 1"), std::string::npos);
  EXPECT_NE(ErrorOf("\ta: 1\n").find("tabs"), std::string::npos);
  EXPECT_NE(ErrorOf("a: 1\n---\nb: 2\n").find("one document"), std::string::npos);
  EXPECT_NE(ErrorOf("a: 1\n...\nb: 2\n").find("after the document end"), std::string::npos);
  EXPECT_NE(ErrorOf(std::string("a: 1\0", 5)).find("NUL"), std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMaxConfigBytes + 1, '#')).find("larger"), std::string::npos);
}

TEST(ConfigFileTest, RejectsBadJson) {
  EXPECT_NE(ErrorOf("{\"a\": 1,}").find("not valid JSON"), std::string::npos);
  EXPECT_NE(ErrorOf("{\"a\": {\"b\": 1}}").find("nested"), std::string::npos);
  EXPECT_NE(ErrorOf("{\"a\": [[1]]}").find("nested"), std::string::npos);
  EXPECT_NE(ErrorOf("{\"a\": null}").find("key 'a' is null"), std::string::npos);
  EXPECT_NE(ErrorOf("{\"\": 1}").find("not a flag name"), std::string::npos);
  EXPECT_NE(ErrorOf("{\"a b\": 1}").find("key 'a b' is not a flag name"), std::string::npos);
  EXPECT_NE(ErrorOf("{\"a\": 1, \"a\": 2}").find("key 'a' is given twice"), std::string::npos);
  EXPECT_NE(ErrorOf(std::string(100000, '[')).find("expected 'key: value'"), std::string::npos);
  EXPECT_FALSE(ParseConfig("{" + std::string(100000, '[')).ok());
}

TEST(ConfigFileTest, LoadConfigFileNamesThePath) {
  auto missing = LoadConfigFile("/nonexistent/ferry.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  const std::string path = ferry::testing::UniqueTempPath("config_test.yaml");
  std::ofstream(path) << "port: 1\nport: 2\n";
  auto bad = LoadConfigFile(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(path), std::string::npos);
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos);
}

TEST(ConfigFileTest, EnvVarForFlag) {
  EXPECT_EQ(EnvVarForFlag("max-num-seqs"), "FERRY_MAX_NUM_SEQS");
  EXPECT_EQ(EnvVarForFlag("port"), "FERRY_PORT");
}

}  // namespace
}  // namespace ferry
