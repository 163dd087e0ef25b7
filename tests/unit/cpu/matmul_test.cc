// MatMul on every level and dtype against a double-precision reference.
#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/cpu/isa.h"
#include "engine/cpu/kernel_table.h"
#include "engine/cpu/kernels.h"
#include "gtest/gtest.h"
#include "tests/unit/cpu/test_weights.h"

namespace ferry::cpu {
namespace {

using testing::MakeWeights;
using testing::RandomVector;
using testing::WeightRow;

// fp32 accumulation over n terms errs by about sqrt(n)·eps·Σ|w·x| in
// practice; allow a wide margin over that but far below any indexing bug.
constexpr double kRelTol = 2e-5;

// Checks y against the reference, scaled by Σ|w·x| of each output.
void ExpectMatMulNear(const WeightMatrix& w, const std::vector<float>& x, int64_t m,
                      const float* bias, const std::vector<float>& y, const std::string& what) {
  for (int64_t r = 0; r < w.rows; ++r) {
    const std::vector<double> row = WeightRow(w, r);
    for (int64_t i = 0; i < m; ++i) {
      double ref = bias != nullptr ? bias[r] : 0.0;
      double mag = bias != nullptr ? std::fabs(bias[r]) : 0.0;
      for (int64_t k = 0; k < w.cols; ++k) {
        const double p = row[k] * x[i * w.cols + k];
        ref += p;
        mag += std::fabs(p);
      }
      const double got = y[i * w.rows + r];
      ASSERT_NEAR(got, ref, kRelTol * mag + 1e-30) << what << " at m=" << i << " row=" << r;
    }
  }
}

class MatMulTest : public ::testing::TestWithParam<std::tuple<Isa, DType>> {
 protected:
  void SetUp() override {
    if (!IsaAvailable(isa())) GTEST_SKIP() << IsaName(isa()) << " not available here";
  }
  Isa isa() const { return std::get<0>(GetParam()); }
  DType dtype() const { return std::get<1>(GetParam()); }

  void Check(ThreadPool& pool, int64_t rows, int64_t cols, int64_t m, bool with_bias,
             std::mt19937& rng) {
    const testing::TestWeights w = MakeWeights(dtype(), rows, cols, rng);
    const std::vector<float> x = RandomVector(m * cols, rng);
    const std::vector<float> bias = RandomVector(rows, rng);
    // NaN sentinels catch outputs the kernel forgot to write.
    std::vector<float> y(static_cast<size_t>(m * rows), std::nanf(""));
    MatMulWithIsa(isa(), w.matrix, x.data(), m, y.data(), with_bias ? bias.data() : nullptr, pool);
    const std::string what = std::string(IsaName(isa())) + " " + std::string(DTypeName(dtype())) +
                             " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                             " m=" + std::to_string(m) + " bias=" + std::to_string(with_bias) +
                             " threads=" + std::to_string(pool.num_threads());
    ExpectMatMulNear(w.matrix, x, m, with_bias ? bias.data() : nullptr, y, what);
  }
};

std::vector<int64_t> ColsFor(DType dtype) {
  if (BlockingOf(dtype).values == 32) return {32, 64, 96, 160, 800};
  if (BlockingOf(dtype).values == kQKValues) return {256, 512, 768};
  return {1, 7, 16, 33, 100, 160, 771};
}

TEST_P(MatMulTest, OddShapesMatchReference) {
  ThreadPool pool(2);
  std::mt19937 rng(1234);
  int variant = 0;
  for (int64_t rows : {1, 3, 5, 17, 64, 257}) {
    for (int64_t cols : ColsFor(dtype())) {
      for (int64_t m : {1, 2, 7, 8, 37}) {
        Check(pool, rows, cols, m, (variant++ & 1) != 0, rng);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_P(MatMulTest, ThreadCountsAgree) {
  std::mt19937 rng(99);
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    for (int64_t m : {1, 3, 16}) {
      Check(pool, 200, BlockingOf(dtype()).values == kQKValues ? 512 : 320, m, true, rng);
      if (HasFatalFailure()) return;
    }
  }
}

// Shapes of the 110M model, where the parallel split and GEMM tiling engage.
TEST_P(MatMulTest, ModelShapes) {
  ThreadPool pool(2);
  std::mt19937 rng(7);
  Check(pool, 2048, 768, 1, false, rng);
  Check(pool, 768, 2048, 1, true, rng);
  Check(pool, 768, 768, 12, false, rng);
}

INSTANTIATE_TEST_SUITE_P(
    AllLevels, MatMulTest,
    ::testing::Combine(::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512),
                       ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                         DType::kQ4_0, DType::kQ5_0, DType::kQ4_K, DType::kQ5_K,
                                         DType::kQ6_K)),
    [](const ::testing::TestParamInfo<MatMulTest::ParamType>& info) {
      return std::string(IsaName(std::get<0>(info.param))) + "_" +
             std::string(DTypeName(std::get<1>(info.param)));
    });

TEST(MatMulPublicTest, EmptyBatchWritesNothing) {
  ThreadPool pool(2);
  std::mt19937 rng(5);
  const testing::TestWeights w = MakeWeights(DType::kF32, 4, 8, rng);
  float y = 42.0f;
  MatMul(w.matrix, nullptr, 0, &y, nullptr, pool);
  EXPECT_EQ(y, 42.0f);
}

TEST(MatMulPublicTest, BestLevelMatchesScalar) {
  ThreadPool pool(2);
  std::mt19937 rng(11);
  const testing::TestWeights w = MakeWeights(DType::kF16, 300, 200, rng);
  const std::vector<float> x = RandomVector(3 * 200, rng);
  std::vector<float> best(3 * 300), scalar(3 * 300);
  MatMul(w.matrix, x.data(), 3, best.data(), nullptr, pool);
  MatMulWithIsa(Isa::kScalar, w.matrix, x.data(), 3, scalar.data(), nullptr, pool);
  for (size_t i = 0; i < best.size(); ++i) EXPECT_NEAR(best[i], scalar[i], 1e-4) << i;
}

// A row's result must not depend on how many other rows share the call (the
// engine's batch invariance): bit-for-bit equal to computing it alone.
TEST(MatMulPublicTest, BatchInvariantRowsMatchSingleRowsExactly) {
  // Every batch size from 1 to 9 and 37 (the multi-row kernels take up to
  // four x rows), with and without a ragged column tail, odd row counts.
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0,
                      DType::kQ5_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    for (int64_t cols : {256, 200}) {
      if (cols % BlockingOf(dtype).values != 0) continue;
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        std::mt19937 rng(17);
        const testing::TestWeights w = MakeWeights(dtype, 301, cols, rng);
        for (int64_t m : {1, 2, 3, 4, 5, 6, 7, 9, 37}) {
          const std::vector<float> x = RandomVector(m * cols, rng);
          std::vector<float> batched(m * 301), single(301);
          MatMul(w.matrix, x.data(), m, batched.data(), nullptr, pool, /*batch_invariant=*/true);
          for (int64_t i = 0; i < m; ++i) {
            ThreadPool one(1);
            MatMul(w.matrix, x.data() + i * cols, 1, single.data(), nullptr, i % 2 ? one : pool, true);
            for (int64_t r = 0; r < 301; ++r) {
              ASSERT_EQ(batched[i * 301 + r], single[r])
                  << "dtype " << static_cast<int>(dtype) << " cols " << cols << " m " << m << " row " << i;
            }
          }
        }
      }
    }
  }
}

// MatMulMany shares rows of several matrices out in one pass of the pool;
// each product must equal its own MatMul exactly, GEMM path included.
TEST(MatMulPublicTest, ManyEqualsOneCallPerMatrix) {
  for (DType dtype : {DType::kF32, DType::kF16}) {
    for (bool invariant : {true, false}) {
      for (int64_t m : {1, 3, 16, 40}) {
        ThreadPool pool(2);
        std::mt19937 rng(23);
        const testing::TestWeights a = MakeWeights(dtype, 301, 96, rng);
        const testing::TestWeights b = MakeWeights(dtype, 7, 96, rng);
        const testing::TestWeights c = MakeWeights(dtype, 130, 96, rng);
        const std::vector<float> x = RandomVector(m * 96, rng);
        const std::vector<float> bias = RandomVector(130, rng);
        std::vector<float> ya(m * 301), yb(m * 7), yc(m * 130);
        const MatMulOut outs[] = {{&a.matrix, ya.data(), nullptr}, {&b.matrix, yb.data(), nullptr},
                                  {&c.matrix, yc.data(), bias.data()}};
        MatMulMany(outs, 3, x.data(), m, pool, invariant);
        std::vector<float> want(m * 301);
        MatMul(a.matrix, x.data(), m, want.data(), nullptr, pool, invariant);
        EXPECT_EQ(ya, want);
        want.assign(m * 7, 0.0f);
        MatMul(b.matrix, x.data(), m, want.data(), nullptr, pool, invariant);
        EXPECT_EQ(yb, want);
        want.assign(m * 130, 0.0f);
        MatMul(c.matrix, x.data(), m, want.data(), bias.data(), pool, invariant);
        EXPECT_EQ(yc, want) << "m " << m << " invariant " << invariant;
      }
    }
  }
}

TEST(MatMulDeathTest, RejectsQ8WithRaggedBlocks) {
  ThreadPool pool(1);
  std::vector<uint8_t> bytes(64);
  const WeightMatrix w{DType::kQ8_0, 1, 40, bytes.data()};
  std::vector<float> x(40), y(1);
  EXPECT_DEATH(MatMul(w, x.data(), 1, y.data(), nullptr, pool), "unsupported");
}

TEST(MatMulDeathTest, RejectsKQuantsWithRaggedBlocks) {
  ThreadPool pool(1);
  std::vector<uint8_t> bytes(512);
  const WeightMatrix w{DType::kQ4_K, 1, 128, bytes.data()};
  std::vector<float> x(128), y(1);
  EXPECT_DEATH(MatMul(w, x.data(), 1, y.data(), nullptr, pool), "unsupported");
}

}  // namespace
}  // namespace ferry::cpu
