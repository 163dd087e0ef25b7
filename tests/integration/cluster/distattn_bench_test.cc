// ferry-distattn-bench end to end on a tiny cluster (built-in model, KV
// caches of 8 blocks): two workers serve 15 blocks where one serves 8, the
// longest contexts give the tokens of one big worker, and the remote
// attention table has a row per split with its lenders. Skipped when the
// benchmarks are not built.
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/process_util.h"

namespace ferry {
namespace {

TEST(DistAttentionBenchTest, SmallRunReportsLongerContextsAndCorrectTokens) {
  const std::string bench = std::string(FERRY_BINARY_DIR) + "/bin/ferry-distattn-bench";
  if (!std::filesystem::exists(bench)) GTEST_SKIP() << "not built: " << bench;
  testing::CommandResult r = testing::RunCommand(
      bench + " --ferry " + testing::FerryBinary() +
          " --workers 1,2 --kv-blocks 8 --tpot-context 192 --decode-tokens 8 --repeats 1 --probe-timeout-s 60",
      /*merge_stderr=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // 8 blocks of 16 tokens; a lender keeps one of its 8.
  EXPECT_NE(r.out.find("| 1 | 128 | 128 | 1.00x | 128 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 2 | 256 | 240 | 1.88x | 240 |"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("| NO |"), std::string::npos) << r.out;
  // 12 blocks: here + borrowed for one, two and three workers.
  EXPECT_NE(r.out.find("| 12 + 0 (0 lenders) |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 7 + 5 (1 lenders) | 4 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 5 + 7 (2 lenders) | 8 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gRPC round trip on loopback"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ferry
