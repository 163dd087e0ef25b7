// FlagParser with --config and FERRY_* environment overrides: precedence
// (defaults < config < environment < command line) and errors naming the key.
#include <cstdlib>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/test_support.h"
#include "tools/flags.h"

namespace ferry {
namespace {

struct TestFlags {
  std::string listen = "127.0.0.1:1";
  std::string role = "mixed";
  int64_t threads = 0;
  double timeout = 1.5;
  bool no_prefix_caching = false;
};

class FlagsConfigTest : public ::testing::Test {
 protected:
  FlagsConfigTest() : parser_("worker", "test") {
    parser_.AddString("listen", &f_.listen, "");
    parser_.AddString("role", &f_.role, "");
    parser_.AddInt("threads", &f_.threads, "");
    parser_.AddDouble("timeout", &f_.timeout, "");
    parser_.AddBool("no-prefix-caching", &f_.no_prefix_caching, "");
  }
  ~FlagsConfigTest() override {
    for (const char* v : {"FERRY_LISTEN", "FERRY_ROLE", "FERRY_THREADS", "FERRY_TIMEOUT", "FERRY_NO_PREFIX_CACHING"}) {
      ::unsetenv(v);
    }
  }

  std::string WriteConfig(const std::string& name, const std::string& text) {
    const std::string path = ferry::testing::UniqueTempPath("flags_" + name);
    std::ofstream(path) << text;
    return path;
  }

  absl::Status Parse(std::vector<std::string> args) {
    args.insert(args.begin(), "worker");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return parser_.Parse(static_cast<int>(argv.size()), argv.data());
  }

  TestFlags f_;
  FlagParser parser_;
};

TEST_F(FlagsConfigTest, ConfigSetsFlags) {
  const std::string path = WriteConfig("a.yaml",
                                       "listen: 0.0.0.0:50051\nrole: decode\nthreads: 4\ntimeout: 2.5\n"
                                       "no_prefix_caching: true\n");
  ASSERT_TRUE(Parse({"--config", path}).ok());
  EXPECT_EQ(f_.listen, "0.0.0.0:50051");
  EXPECT_EQ(f_.role, "decode");
  EXPECT_EQ(f_.threads, 4);
  EXPECT_DOUBLE_EQ(f_.timeout, 2.5);
  EXPECT_TRUE(f_.no_prefix_caching);
}

TEST_F(FlagsConfigTest, JsonConfigWithEqualsForm) {
  const std::string path = WriteConfig("a.json", R"({"role": "prefill", "threads": 2})");
  ASSERT_TRUE(Parse({"--config=" + path}).ok());
  EXPECT_EQ(f_.role, "prefill");
  EXPECT_EQ(f_.threads, 2);
}

TEST_F(FlagsConfigTest, EnvironmentOverridesConfigAndFlagsOverrideBoth) {
  const std::string path = WriteConfig("b.yaml", "role: decode\nthreads: 4\nlisten: a:1\n");
  ::setenv("FERRY_THREADS", "8", 1);
  ::setenv("FERRY_LISTEN", "b:2", 1);
  ::setenv("FERRY_ROLE", "", 1);  // empty: ignored
  // --config may come after the flags it is overridden by.
  ASSERT_TRUE(Parse({"--listen", "c:3", "--config", path}).ok());
  EXPECT_EQ(f_.role, "decode");
  EXPECT_EQ(f_.threads, 8);
  EXPECT_EQ(f_.listen, "c:3");
}

TEST_F(FlagsConfigTest, EnvironmentWithoutConfig) {
  ::setenv("FERRY_NO_PREFIX_CACHING", "true", 1);
  ASSERT_TRUE(Parse({}).ok());
  EXPECT_TRUE(f_.no_prefix_caching);
}

TEST_F(FlagsConfigTest, UnknownKeyIsNamedWithFileAndLine) {
  const std::string path = WriteConfig("c.yaml", "role: decode\nthreds: 4\n");
  absl::Status s = Parse({"--config", path});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("unknown key 'threds'"), std::string::npos) << s;
  EXPECT_NE(s.message().find(path + " line 2"), std::string::npos) << s;
  EXPECT_NE(s.message().find("'worker'"), std::string::npos) << s;
}

TEST_F(FlagsConfigTest, BadValuesNameTheKeyAndWhereItCameFrom) {
  const std::string path = WriteConfig("d.yaml", "threads: many\n");
  absl::Status s = Parse({"--config", path});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("key 'threads' needs an integer, got 'many'"), std::string::npos) << s;

  const std::string bool_path = WriteConfig("e.json", R"({"no-prefix-caching": "perhaps"})");
  s = Parse({"--config", bool_path});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("key 'no-prefix-caching' needs true or false"), std::string::npos) << s;

  ::setenv("FERRY_TIMEOUT", "soon", 1);
  s = Parse({});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("$FERRY_TIMEOUT (--timeout) needs a number, got 'soon'"), std::string::npos) << s;
  ::unsetenv("FERRY_TIMEOUT");

  s = Parse({"--threads", "x"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--threads needs an integer, got 'x'"), std::string::npos) << s;
}

TEST_F(FlagsConfigTest, ConfigErrors) {
  EXPECT_EQ(Parse({"--config", "/nonexistent/x.yaml"}).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(Parse({"--config"}).ok());
  const std::string a = WriteConfig("f.yaml", "role: decode\n");
  EXPECT_NE(Parse({"--config", a, "--config", a}).message().find("twice"), std::string::npos);
  const std::string nested = WriteConfig("g.yaml", "config: other.yaml\n");
  EXPECT_NE(Parse({"--config", nested}).message().find("cannot name another"), std::string::npos);
  const std::string bad = WriteConfig("h.yaml", "role: [a\n");
  absl::Status s = Parse({"--config", bad});
  EXPECT_NE(s.message().find("line 1"), std::string::npos) << s;
}

TEST_F(FlagsConfigTest, NothingIsReadForHelp) {
  ASSERT_TRUE(Parse({"--config", "/nonexistent/x.yaml", "--help"}).ok());
  EXPECT_TRUE(parser_.help_requested());
  EXPECT_NE(parser_.Usage().find("--config FILE"), std::string::npos);
  EXPECT_NE(parser_.Usage().find("$FERRY_FLAG_NAME"), std::string::npos);
}

}  // namespace
}  // namespace ferry
