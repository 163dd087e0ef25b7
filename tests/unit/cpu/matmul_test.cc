// MatMul on every level and dtype against a double-precision reference.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <utility>
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

// x as the kQ8Rows16 kernels multiply it: int8 blocks widened back.
std::vector<float> QuantizedX(const std::vector<float>& x, int64_t cols) {
  const int64_t m = static_cast<int64_t>(x.size()) / cols, blocks = cols / kQ8Rows16Block;
  std::vector<int8_t> q(x.size());
  std::vector<float> d(m * blocks), out(x.size());
  std::vector<int32_t> s(m * blocks);
  for (int64_t i = 0; i < m; ++i) {
    QuantizeActivationRow(x.data() + i * cols, cols, q.data() + i * cols, d.data() + i * blocks,
                          s.data() + i * blocks, nullptr);
  }
  for (size_t k = 0; k < x.size(); ++k) {
    out[k] = static_cast<float>(q[k]) * d[(k / cols) * blocks + (k % cols) / kQ8Rows16Block];
  }
  return out;
}

// A matrix of an integer-kernel dtype and its copy in the 16-row layout.
struct PackedPair {
  testing::TestWeights plain;
  std::vector<uint8_t> packed_bytes;
  WeightMatrix packed;
};

PackedPair MakePacked(int64_t rows, int64_t cols, std::mt19937& rng, DType dtype = DType::kQ8_0) {
  PackedPair p{MakeWeights(dtype, rows, cols, rng), {}, {}};
  p.packed_bytes = p.plain.bytes;
  const WeightLayout layout = Rows16LayoutOf(p.plain.matrix);
  EXPECT_NE(layout, WeightLayout::kRows) << DTypeName(dtype);
  PackRows16(layout, p.packed_bytes.data(), rows, cols);
  p.packed = {dtype, rows, cols, p.packed_bytes.data(), layout};
  return p;
}

// The dtypes with a 16-row layout, and the block each takes.
constexpr std::pair<DType, int64_t> kRows16DTypes[] = {{DType::kQ8_0, 32},  {DType::kQ4_K, 256},
                                                       {DType::kQ6_K, 256}, {DType::kQ5_K, 256},
                                                       {DType::kQ4_0, 32},  {DType::kQ5_0, 32}};

TEST(Q8Rows16Test, LayoutsFollowTheDTypeAndTheShape) {
  std::vector<uint8_t> bytes(1);
  EXPECT_EQ(Rows16LayoutOf({DType::kQ8_0, 32, 64, bytes.data()}), WeightLayout::kQ8Rows16);
  EXPECT_EQ(Rows16LayoutOf({DType::kQ4_K, 16, 256, bytes.data()}), WeightLayout::kQ4KRows16);
  EXPECT_EQ(Rows16LayoutOf({DType::kQ6_K, 16, 256, bytes.data()}), WeightLayout::kQ6KRows16);
  EXPECT_EQ(Rows16LayoutOf({DType::kQ5_K, 16, 256, bytes.data()}), WeightLayout::kQ5KRows16);
  EXPECT_EQ(Rows16LayoutOf({DType::kQ4_0, 16, 32, bytes.data()}), WeightLayout::kQ40Rows16);
  EXPECT_EQ(Rows16LayoutOf({DType::kQ5_0, 16, 32, bytes.data()}), WeightLayout::kQ50Rows16);
  EXPECT_EQ(Rows16LayoutOf({DType::kQ8_0, 24, 64, bytes.data()}), WeightLayout::kRows);
  EXPECT_EQ(Rows16LayoutOf({DType::kQ4_K, 16, 128, bytes.data()}), WeightLayout::kRows);
  EXPECT_EQ(Rows16LayoutOf({DType::kF16, 16, 256, bytes.data()}), WeightLayout::kRows);
  EXPECT_EQ(Rows16LayoutOf({DType::kQ8_0, 16, 64, bytes.data(), WeightLayout::kQ8Rows16}),
            WeightLayout::kRows);
}

TEST(Q8Rows16Test, QuantizerRoundsToTheNearestStepOfMaxOver127) {
  std::mt19937 rng(3);
  std::vector<float> x = RandomVector(4 * 32, rng, -3.0f, 3.0f);
  for (int i = 32; i < 64; ++i) x[i] = 0.0f;
  x[64 + 5] = -8.0f;
  x[64 + 6] = 4.0f;  // exactly -63.5 steps: ties go to even
  std::vector<int8_t> q(x.size());
  float d[4];
  int32_t s[4], s16[8];
  QuantizeActivationRow(x.data(), 128, q.data(), d, s, s16);
  EXPECT_EQ(d[1], 0.0f);
  EXPECT_EQ(s[1], 0);
  EXPECT_FLOAT_EQ(d[2], 8.0f / 127.0f);
  EXPECT_EQ(q[64 + 5], -127);
  EXPECT_EQ(q[64 + 6], 64);
  for (int b = 0; b < 4; ++b) {
    float amax = 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[32 * b + i]));
    EXPECT_EQ(d[b], amax / 127.0f);
    for (int i = 0; i < 32; ++i) {
      EXPECT_LE(std::fabs(q[32 * b + i] * d[b] - x[32 * b + i]), 0.5001f * d[b]);
      sum += q[32 * b + i];
    }
    EXPECT_EQ(s[b], sum);
    EXPECT_EQ(s16[2 * b] + s16[2 * b + 1], sum);
    int32_t first = 0;
    for (int i = 0; i < 16; ++i) first += q[32 * b + i];
    EXPECT_EQ(s16[2 * b], first);
  }
  // NaN and inf leave defined quants: NaN counts as 0, an inf block is all 0.
  x[3] = std::nanf("");
  x[96] = INFINITY;
  QuantizeActivationRow(x.data(), 128, q.data(), d, s, s16);
  EXPECT_EQ(q[3], 0);
  EXPECT_EQ(d[3], 0.0f);
  for (int i = 96; i < 128; ++i) EXPECT_EQ(q[i], 0);
}

TEST(Q8Rows16Test, PackingPlacesScalesAndQuantsOfEachRow) {
  std::mt19937 rng(4);
  const PackedPair p = MakePacked(32, 64, rng);
  const uint8_t* plain = p.plain.bytes.data();
  const uint8_t* packed = p.packed_bytes.data();
  const int64_t row_bytes = 2 * 34;
  for (int64_t row : {0, 5, 15, 16, 31}) {
    for (int64_t b = 0; b < 2; ++b) {
      const uint8_t* block = plain + row * row_bytes + b * 34;
      const uint8_t* run = packed + (row / 16) * 16 * row_bytes + b * 544;
      const int64_t r = row % 16;
      EXPECT_EQ(run[2 * r], block[0]);
      EXPECT_EQ(run[2 * r + 1], block[1]);
      for (int64_t k = 0; k < 32; ++k) {
        EXPECT_EQ(run[32 + 64 * (k / 4) + 4 * r + k % 4], block[2 + k] ^ 0x80) << row << " " << k;
      }
    }
  }
}

TEST(Q8Rows16Test, RowsDequantizeAsBeforePacking) {
  std::mt19937 rng(8);
  for (const auto& [dtype, block] : kRows16DTypes) {
    const int64_t cols = 2 * block + (block == 32 ? 32 : 0);
    const PackedPair p = MakePacked(48, cols, rng, dtype);
    std::vector<float> want(cols), got(cols);
    for (int64_t row = 0; row < 48; ++row) {
      DequantizeRow(p.plain.matrix, row, want.data());
      DequantizeRow(p.packed, row, got.data());
      ASSERT_EQ(got, want) << DTypeName(dtype) << " row " << row;
    }
  }
}

class Q8Rows16LevelTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!IsaAvailable(GetParam())) GTEST_SKIP() << IsaName(GetParam()) << " not available here";
  }
};

// Against a double reference over quantized x, on every level, GEMV and GEMM
// sizes; and bit for bit the scalar level's result.
TEST_P(Q8Rows16LevelTest, MatchesReferenceAndScalarExactly) {
  ThreadPool pool(2);
  std::mt19937 rng(5);
  for (const auto& [dtype, cols] :
       {std::pair{DType::kQ8_0, 32}, std::pair{DType::kQ8_0, 96}, std::pair{DType::kQ8_0, 800},
        std::pair{DType::kQ4_K, 256}, std::pair{DType::kQ4_K, 768}, std::pair{DType::kQ6_K, 256},
        std::pair{DType::kQ6_K, 768}, std::pair{DType::kQ5_K, 256}, std::pair{DType::kQ5_K, 768},
        std::pair{DType::kQ4_0, 32}, std::pair{DType::kQ4_0, 800}, std::pair{DType::kQ5_0, 32},
        std::pair{DType::kQ5_0, 800}}) {
    for (int64_t rows : {16, 48, 112, 272}) {
      const PackedPair p = MakePacked(rows, cols, rng, dtype);
      for (int64_t m : {1, 3, 4, 9, 37}) {
        const std::vector<float> x = RandomVector(m * cols, rng);
        std::vector<float> y(m * rows, std::nanf("")), scalar(m * rows);
        MatMulWithIsa(GetParam(), p.packed, x.data(), m, y.data(), nullptr, pool);
        MatMulWithIsa(Isa::kScalar, p.packed, x.data(), m, scalar.data(), nullptr, pool);
        const std::string what = std::string(IsaName(GetParam())) + " " +
                                 std::string(DTypeName(dtype)) + " rows=" + std::to_string(rows) +
                                 " cols=" + std::to_string(cols) + " m=" + std::to_string(m);
        ExpectMatMulNear(p.plain.matrix, QuantizedX(x, cols), m, nullptr, y, what);
        ASSERT_EQ(y, scalar) << what;
      }
    }
  }
}

// Every row is computed alone, so a batch gives each row what it gets by
// itself, and MatMulMany what MatMul gives.
TEST_P(Q8Rows16LevelTest, RowsDoNotDependOnTheBatch) {
  ThreadPool pool(2);
  std::mt19937 rng(6);
  const PackedPair p = MakePacked(96, 256, rng);
  const PackedPair q = MakePacked(32, 256, rng, DType::kQ4_K);
  const PackedPair q6 = MakePacked(48, 256, rng, DType::kQ6_K);
  const testing::TestWeights f = MakeWeights(DType::kF16, 40, 256, rng);
  for (bool invariant : {false, true}) {
    const int64_t m = 21;
    const std::vector<float> x = RandomVector(m * 256, rng);
    std::vector<float> batched(m * 96), single(96);
    MatMulWithIsa(GetParam(), p.packed, x.data(), m, batched.data(), nullptr, pool, invariant);
    for (int64_t i = 0; i < m; ++i) {
      MatMulWithIsa(GetParam(), p.packed, x.data() + i * 256, 1, single.data(), nullptr, pool);
      for (int64_t r = 0; r < 96; ++r) ASSERT_EQ(batched[i * 96 + r], single[r]) << i << " " << r;
    }
    std::vector<float> ya(m * 96), yb(m * 32), yc(m * 40), yd(m * 48), want_b(m * 32),
        want_c(m * 40), want_d(m * 48);
    const MatMulOut outs[] = {{&p.packed, ya.data(), nullptr},
                              {&q.packed, yb.data(), nullptr},
                              {&f.matrix, yc.data(), nullptr},
                              {&q6.packed, yd.data(), nullptr}};
    MatMulManyWithIsa(GetParam(), outs, 4, x.data(), m, pool, invariant);
    MatMulWithIsa(GetParam(), q.packed, x.data(), m, want_b.data(), nullptr, pool, invariant);
    MatMulWithIsa(GetParam(), f.matrix, x.data(), m, want_c.data(), nullptr, pool, invariant);
    MatMulWithIsa(GetParam(), q6.packed, x.data(), m, want_d.data(), nullptr, pool, invariant);
    EXPECT_EQ(ya, batched);
    EXPECT_EQ(yb, want_b);
    EXPECT_EQ(yc, want_c);
    EXPECT_EQ(yd, want_d);
  }
}

// The same for every 16-row layout, and MatMulMany over all of them at once.
TEST_P(Q8Rows16LevelTest, EveryLayoutIsBatchInvariant) {
  ThreadPool pool(2);
  std::mt19937 rng(9);
  const int64_t m = 6, cols = 512;
  const std::vector<float> x = RandomVector(m * cols, rng);
  std::vector<PackedPair> pairs;
  for (const auto& [dtype, block] : kRows16DTypes)
    pairs.push_back(MakePacked(32, cols, rng, dtype));
  std::vector<std::vector<float>> many(pairs.size(), std::vector<float>(m * 32));
  std::vector<MatMulOut> outs;
  for (size_t j = 0; j < pairs.size(); ++j)
    outs.push_back({&pairs[j].packed, many[j].data(), nullptr});
  MatMulManyWithIsa(GetParam(), outs.data(), static_cast<int>(outs.size()), x.data(), m, pool);
  for (size_t j = 0; j < pairs.size(); ++j) {
    std::vector<float> single(32);
    for (int64_t i = 0; i < m; ++i) {
      MatMulWithIsa(GetParam(), pairs[j].packed, x.data() + i * cols, 1, single.data(), nullptr,
                    pool);
      for (int64_t r = 0; r < 32; ++r) {
        ASSERT_EQ(many[j][i * 32 + r], single[r]) << DTypeName(pairs[j].packed.dtype) << " " << i;
      }
    }
  }
}

// Any bytes a file may hold: quants at their extremes (all bits set, or
// Q8_0's -128) against x at ±127 overflow no intermediate sum, and random
// bytes agree too; bit for bit the scalar level.
TEST_P(Q8Rows16LevelTest, ExtremeQuantsStayExact) {
  ThreadPool pool(1);
  std::mt19937 rng(10);
  const int64_t rows = 32, m = 3;
  for (const auto& [dtype, block] : kRows16DTypes) {
    const int64_t cols = 2 * (block == 32 ? 128 : block);
    const DTypeBlocking b = BlockingOf(dtype);
    for (int fill : {0xFF, 0x80, 0x7F, -1}) {
      std::vector<uint8_t> bytes(static_cast<size_t>(rows * cols / b.values * b.bytes));
      for (uint8_t& v : bytes) v = static_cast<uint8_t>(fill >= 0 ? fill : rng());
      // Finite fp16 scales (1/256) where the format keeps them.
      const uint16_t small = 0x1c00;
      for (size_t k = 0; k < bytes.size(); k += b.bytes) {
        std::memcpy(&bytes[k + (dtype == DType::kQ6_K ? 208 : 0)], &small, 2);
        if (dtype == DType::kQ4_K || dtype == DType::kQ5_K) std::memcpy(&bytes[k + 2], &small, 2);
      }
      const WeightLayout layout = Rows16LayoutOf({dtype, rows, cols, bytes.data()});
      PackRows16(layout, bytes.data(), rows, cols);
      const WeightMatrix w{dtype, rows, cols, bytes.data(), layout};
      // x rows all +127, all -127 (the largest sums), and mixed.
      std::vector<float> x(m * cols);
      for (int64_t k = 0; k < m * cols; ++k) {
        const int64_t row = k / cols;
        x[k] = row == 0 ? 1.0f : row == 1 ? -1.0f : k % 3 == 2 ? -1.0f : k % 7 == 0 ? 0.0f : 1.0f;
      }
      std::vector<float> y(m * rows), scalar(m * rows);
      MatMulWithIsa(GetParam(), w, x.data(), m, y.data(), nullptr, pool);
      MatMulWithIsa(Isa::kScalar, w, x.data(), m, scalar.data(), nullptr, pool);
      ASSERT_EQ(y, scalar) << DTypeName(dtype) << " fill " << fill;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllLevels, Q8Rows16LevelTest,
                         ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(IsaName(info.param));
                         });

TEST(Q8Rows16Test, IntegerProductsStayCloseToUnquantizedX) {
  ThreadPool pool(2);
  std::mt19937 rng(7);
  for (const auto& [dtype, block] : kRows16DTypes) {
    const PackedPair p = MakePacked(64, 2048, rng, dtype);
    const std::vector<float> x = RandomVector(2 * 2048, rng);
    std::vector<float> packed(2 * 64), plain(2 * 64);
    MatMul(p.packed, x.data(), 2, packed.data(), nullptr, pool);
    MatMul(p.plain.matrix, x.data(), 2, plain.data(), nullptr, pool);
    for (int64_t r = 0; r < 64; ++r) {
      const std::vector<double> row = WeightRow(p.plain.matrix, r);
      double mag = 0.0;
      for (int64_t k = 0; k < 2048; ++k) mag += std::fabs(row[k] * x[k]);
      EXPECT_NEAR(packed[r], plain[r], 0.01 * mag) << DTypeName(dtype) << " row " << r;
    }
  }
}

TEST(MatMulDeathTest, RejectsQ8Rows16WithRaggedGroups) {
  ThreadPool pool(1);
  std::vector<uint8_t> bytes(8 * 34);
  const WeightMatrix w{DType::kQ8_0, 8, 32, bytes.data(), WeightLayout::kQ8Rows16};
  std::vector<float> x(32), y(8);
  EXPECT_DEATH(MatMul(w, x.data(), 1, y.data(), nullptr, pool), "unsupported");
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
