// The fp32 vector operations and row conversion on every level against
// double-precision references.
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/isa.h"
#include "engine/cpu/kernel_table.h"
#include "engine/cpu/kernels.h"
#include "gtest/gtest.h"
#include "tests/unit/cpu/test_weights.h"

namespace ferry::cpu {
namespace {

using testing::RandomVector;

const int64_t kSizes[] = {0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 257, 1000};

class VectorOpsTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!IsaAvailable(GetParam())) GTEST_SKIP() << IsaName(GetParam()) << " not available here";
  }
  const KernelTable& table() const { return GetKernelTable(GetParam()); }
  std::mt19937 rng_{42};
};

TEST_P(VectorOpsTest, Dot) {
  for (int64_t n : kSizes) {
    const std::vector<float> a = RandomVector(n, rng_), b = RandomVector(n, rng_);
    double ref = 0.0, mag = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      ref += static_cast<double>(a[i]) * b[i];
      mag += std::fabs(static_cast<double>(a[i]) * b[i]);
    }
    EXPECT_NEAR(table().dot(a.data(), b.data(), n), ref, 1e-5 * mag + 1e-30) << "n=" << n;
  }
}

TEST_P(VectorOpsTest, Axpy) {
  for (int64_t n : kSizes) {
    const std::vector<float> x = RandomVector(n, rng_);
    std::vector<float> y = RandomVector(n + 1, rng_);
    const std::vector<float> before = y;
    table().axpy(0.75f, x.data(), n, y.data());
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(y[i], before[i] + 0.75 * x[i], 1e-6) << "n=" << n << " i=" << i;
    }
    EXPECT_EQ(y[n], before[n]) << "wrote past the end, n=" << n;
  }
}

TEST_P(VectorOpsTest, RmsNorm) {
  for (int64_t n : kSizes) {
    if (n == 0) continue;
    const std::vector<float> x = RandomVector(n, rng_, -3.0f, 3.0f);
    const std::vector<float> weight = RandomVector(n, rng_, 0.5f, 1.5f);
    std::vector<float> out(n + 1, -7.0f);
    table().rms_norm(x.data(), weight.data(), n, 1e-5f, out.data());
    double ss = 0.0;
    for (float v : x) ss += static_cast<double>(v) * v;
    const double scale = 1.0 / std::sqrt(ss / n + 1e-5);
    for (int64_t i = 0; i < n; ++i) {
      const double ref = x[i] * scale * weight[i];
      EXPECT_NEAR(out[i], ref, 1e-5 * std::fabs(ref) + 1e-6) << "n=" << n << " i=" << i;
    }
    EXPECT_EQ(out[n], -7.0f);
    // In place.
    std::vector<float> inplace = x;
    table().rms_norm(inplace.data(), weight.data(), n, 1e-5f, inplace.data());
    for (int64_t i = 0; i < n; ++i) EXPECT_FLOAT_EQ(inplace[i], out[i]);
  }
}

void ExpectSoftmaxNear(const std::vector<float>& in, const std::vector<float>& out) {
  double max = -std::numeric_limits<double>::infinity();
  for (float v : in) max = std::max<double>(max, v);
  double sum = 0.0;
  for (float v : in) sum += std::exp(static_cast<double>(v) - max);
  for (size_t i = 0; i < in.size(); ++i) {
    const double ref = std::exp(static_cast<double>(in[i]) - max) / sum;
    EXPECT_NEAR(out[i], ref, 2e-6 * ref + 1e-9) << "n=" << in.size() << " i=" << i;
  }
}

TEST_P(VectorOpsTest, Softmax) {
  for (int64_t n : kSizes) {
    std::vector<float> x = RandomVector(n, rng_, -20.0f, 20.0f);
    const std::vector<float> in = x;
    table().softmax(x.data(), n);
    ExpectSoftmaxNear(in, x);
  }
}

TEST_P(VectorOpsTest, SoftmaxMaskedAndLarge) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {1e4f, -inf, 9990.0f, -inf, 1e4f - 1.0f, -1e4f, 0.0f,
                          -inf, 5.0f, -inf, -inf, -inf, 1e4f, 3.0f, -inf, -inf, -inf, 1.0f};
  const std::vector<float> in = x;
  table().softmax(x.data(), static_cast<int64_t>(x.size()));
  ExpectSoftmaxNear(in, x);
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == -inf) EXPECT_EQ(x[i], 0.0f) << i;
  }
}

TEST_P(VectorOpsTest, SiluMul) {
  for (int64_t n : kSizes) {
    std::vector<float> gate = RandomVector(n, rng_, -12.0f, 12.0f);
    if (n > 2) {
      gate[0] = -200.0f;
      gate[1] = 200.0f;
    }
    const std::vector<float> up = RandomVector(n, rng_);
    std::vector<float> out(n);
    table().silu_mul(gate.data(), up.data(), n, out.data());
    for (int64_t i = 0; i < n; ++i) {
      const double g = gate[i];
      const double ref = g / (1.0 + std::exp(-g)) * up[i];
      EXPECT_NEAR(out[i], ref, 1e-6 * std::fabs(ref) + 1e-7) << "n=" << n << " i=" << i;
    }
  }
}

TEST_P(VectorOpsTest, RowConversionIsExact) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0,
                      DType::kQ5_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    for (int64_t cols : {32, 64, 96, 256, 1024}) {
      if (cols % BlockingOf(dtype).values != 0) continue;
      const testing::TestWeights w = testing::MakeWeights(dtype, 3, cols, rng_);
      const int64_t row_bytes =
          static_cast<int64_t>(w.bytes.size()) / 3;
      std::vector<float> out(cols + 1, -5.0f);
      table().to_f32[static_cast<int>(dtype)](w.bytes.data() + 2 * row_bytes, cols, out.data());
      for (int64_t k = 0; k < cols; ++k) {
        ASSERT_EQ(out[k], testing::WeightAt(w.matrix, 2, k)) << DTypeName(dtype) << " k=" << k;
      }
      EXPECT_EQ(out[cols], -5.0f);
    }
  }
  // Ragged lengths for the element-wise dtypes.
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const testing::TestWeights w = testing::MakeWeights(dtype, 1, 37, rng_);
    std::vector<float> out(37);
    table().to_f32[static_cast<int>(dtype)](w.bytes.data(), 37, out.data());
    for (int64_t k = 0; k < 37; ++k) ASSERT_EQ(out[k], testing::WeightAt(w.matrix, 0, k));
  }
}

INSTANTIATE_TEST_SUITE_P(AllLevels, VectorOpsTest,
                         ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(IsaName(info.param));
                         });

TEST(PublicVectorOpsTest, ForwardToBestLevel) {
  std::mt19937 rng(3);
  const std::vector<float> a = RandomVector(50, rng), b = RandomVector(50, rng);
  EXPECT_EQ(Dot(a.data(), b.data(), 50), GetKernelTable(BestIsa()).dot(a.data(), b.data(), 50));
  std::vector<float> y = b;
  Axpy(2.0f, a.data(), 50, y.data());
  EXPECT_NEAR(y[7], b[7] + 2.0f * a[7], 1e-6);
  std::vector<float> s = {1.0f, 2.0f, 3.0f};
  Softmax(s.data(), 3);
  EXPECT_NEAR(s[0] + s[1] + s[2], 1.0f, 1e-6);
  std::vector<float> out(50);
  SiluMul(a.data(), b.data(), 50, out.data());
  RmsNorm(a.data(), b.data(), 50, 1e-6f, out.data());
  const testing::TestWeights w = testing::MakeWeights(DType::kQ8_0, 4, 64, rng);
  std::vector<float> row(64);
  DequantizeRow(w.matrix, 3, row.data());
  EXPECT_EQ(row[63], testing::WeightAt(w.matrix, 3, 63));
}

TEST(IsaTest, BestIsAvailable) {
  EXPECT_TRUE(IsaAvailable(BestIsa()));
  EXPECT_TRUE(IsaAvailable(Isa::kScalar));
}

}  // namespace
}  // namespace ferry::cpu
