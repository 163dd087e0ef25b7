// The k-quant block layouts against blocks built by hand from the GGML
// format description, and the encoder's error bounds.
#include "engine/formats/kquants.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/formats/dtype.h"
#include "engine/formats/gguf.h"
#include "engine/formats/gguf_writer.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

void PutHalf(float f, uint8_t* p) {
  const uint16_t h = FloatToFp16(f);
  std::memcpy(p, &h, 2);
}

TEST(KQuantsTest, Q4KBlockBuiltByHand) {
  // d = 0.5, dmin = 0.25; sub-block scales and mins, pairs 4-7 above 15 so
  // their top bits land in bytes 0-7.
  const int sc[8] = {1, 2, 3, 4, 37, 50, 63, 17};
  const int mn[8] = {5, 6, 7, 8, 33, 40, 60, 9};
  uint8_t block[kQ4_KBlockBytes] = {};
  PutHalf(0.5f, block);
  PutHalf(0.25f, block + 2);
  // The 12 packed bytes, worked out by hand from the pairs above.
  const uint8_t packed[12] = {129, 194, 195, 68, 133, 134, 199, 8, 21, 130, 207, 145};
  std::memcpy(block + 4, packed, 12);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    Q4KScaleMin(block + 4, j, &s, &m);
    EXPECT_EQ(s, sc[j]) << j;
    EXPECT_EQ(m, mn[j]) << j;
  }
  // Byte l of run c: low nibble l % 16 (value 64c + l), high nibble
  // 15 - l % 16 (value 64c + 32 + l).
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l)
      block[16 + 32 * c + l] = static_cast<uint8_t>((l % 16) | ((15 - l % 16) << 4));
  }
  float y[256];
  DequantizeQ4KBlock(block, y);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      EXPECT_FLOAT_EQ(y[64 * c + l], 0.5f * sc[2 * c] * (l % 16) - 0.25f * mn[2 * c]) << 64 * c + l;
      EXPECT_FLOAT_EQ(y[64 * c + 32 + l],
                      0.5f * sc[2 * c + 1] * (15 - l % 16) - 0.25f * mn[2 * c + 1])
          << 64 * c + 32 + l;
    }
  }
  EXPECT_FLOAT_EQ(y[0], -1.25f);
  EXPECT_FLOAT_EQ(y[35], 10.5f);
  EXPECT_FLOAT_EQ(y[148], 65.75f);
  EXPECT_FLOAT_EQ(y[232], 57.25f);
}

TEST(KQuantsTest, Q6KBlockBuiltByHand) {
  // Value v has quant v % 64 and scale v / 16 - 8; d = 0.5.
  auto quant = [](int v) { return v % 64; };
  uint8_t block[kQ6_KBlockBytes] = {};
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int v = 128 * half + l;
      block[64 * half + l] = static_cast<uint8_t>((quant(v) & 15) | ((quant(v + 64) & 15) << 4));
      block[64 * half + l + 32] =
          static_cast<uint8_t>((quant(v + 32) & 15) | ((quant(v + 96) & 15) << 4));
      block[128 + 32 * half + l] =
          static_cast<uint8_t>((quant(v) >> 4) | ((quant(v + 32) >> 4) << 2) |
                               ((quant(v + 64) >> 4) << 4) | ((quant(v + 96) >> 4) << 6));
    }
  }
  for (int s = 0; s < 16; ++s) block[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(s - 8));
  PutHalf(0.5f, block + 208);
  float y[256];
  DequantizeQ6KBlock(block, y);
  for (int v = 0; v < 256; ++v) {
    EXPECT_FLOAT_EQ(y[v], 0.5f * (v / 16 - 8) * (quant(v) - 32)) << v;
  }
  EXPECT_FLOAT_EQ(y[0], 128.0f);
  EXPECT_FLOAT_EQ(y[255], 108.5f);
}

float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return Fp16ToFloat(h);
}

// Encoding then decoding errs by at most half of a sub-block's step, and
// that step is within one super-block scale unit of the sub-block's range
// over its levels (15 for Q4_K, 31 each way for Q6_K).
TEST(KQuantsTest, EncoderErrorIsWithinHalfAStep) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> x(256);
    // Vary the range per sub-block, with some all-positive and all-negative.
    for (int i = 0; i < 256; ++i) {
      const float span = 0.01f + 0.2f * static_cast<float>((i / 32 + trial) % 5);
      float v = dist(rng) * span;
      if ((i / 32) % 4 == 1) v = std::fabs(v);
      if ((i / 32) % 4 == 2) v = -std::fabs(v) - 0.3f;
      x[i] = v;
    }
    uint8_t q4[kQ4_KBlockBytes], q6[kQ6_KBlockBytes];
    QuantizeQ4KBlock(x.data(), q4);
    QuantizeQ6KBlock(x.data(), q6);
    float y4[256], y6[256];
    DequantizeQ4KBlock(q4, y4);
    DequantizeQ6KBlock(q6, y6);
    const float d4 = HalfAt(q4), dmin4 = HalfAt(q4 + 2), d6 = HalfAt(q6 + 208);
    for (int j = 0; j < 8; ++j) {
      float lo = 0.0f, hi = -1e9f;
      for (int i = 0; i < 32; ++i) {
        lo = std::min(lo, x[32 * j + i]);
        hi = std::max(hi, x[32 * j + i]);
      }
      uint8_t sc, m;
      Q4KScaleMin(q4 + 4, j, &sc, &m);
      const float step = d4 * sc;
      EXPECT_LE(step, (hi - lo + dmin4) / 15.0f + d4 + 1e-7f)
          << "trial " << trial << " sub-block " << j;
      for (int i = 0; i < 32; ++i) {
        const int k = 32 * j + i;
        EXPECT_LE(std::fabs(y4[k] - x[k]), 0.5f * step + 1e-4f * (hi - lo) + 1e-7f)
            << "trial " << trial << " value " << k;
      }
    }
    for (int s = 0; s < 16; ++s) {
      float amax = 0.0f;
      for (int i = 0; i < 16; ++i) amax = std::max(amax, std::fabs(x[16 * s + i]));
      const float step = d6 * static_cast<int8_t>(q6[192 + s]);
      EXPECT_LE(step, amax / 31.0f + d6 + 1e-7f) << "trial " << trial << " sub-block " << s;
      for (int i = 0; i < 16; ++i) {
        const int k = 16 * s + i;
        EXPECT_LE(std::fabs(y6[k] - x[k]), 0.5f * step + 1e-4f * amax + 1e-7f)
            << "trial " << trial << " value " << k;
      }
    }
  }
  // All zeros stays all zeros.
  const std::vector<float> zeros(256, 0.0f);
  uint8_t q4[kQ4_KBlockBytes], q6[kQ6_KBlockBytes];
  QuantizeQ4KBlock(zeros.data(), q4);
  QuantizeQ6KBlock(zeros.data(), q6);
  float y[256];
  DequantizeQ4KBlock(q4, y);
  for (float v : y) EXPECT_EQ(v, 0.0f);
  DequantizeQ6KBlock(q6, y);
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(KQuantsTest, DTypeSizesAndNames) {
  EXPECT_EQ(DTypeBytes(DType::kQ4_K, 512), 288u);
  EXPECT_EQ(DTypeBytes(DType::kQ6_K, 256), 210u);
  EXPECT_FALSE(DTypeBytes(DType::kQ4_K, 128).has_value());
  EXPECT_EQ(ParseDType("Q4_K"), DType::kQ4_K);
  EXPECT_EQ(ParseDType("q6_k"), DType::kQ6_K);
  EXPECT_EQ(DTypeName(DType::kQ6_K), "q6_k");
}

// Q4_K and Q6_K tensors go through the GGUF writer and reader unchanged; a
// row that does not split into 256-value blocks is refused.
TEST(KQuantsTest, GgufRoundTripAndRaggedRows) {
  const std::string path = testing::UniqueTempPath("kquants.gguf");
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> values(2 * 512);
  for (float& v : values) v = dist(rng);
  auto q4 = EncodeFromF32(DType::kQ4_K, values);
  auto q6 = EncodeFromF32(DType::kQ6_K, values);
  ASSERT_TRUE(q4.ok() && q6.ok());
  EXPECT_FALSE(EncodeFromF32(DType::kQ4_K, std::vector<float>(300)).ok());
  {
    GgufWriter w(path);
    EXPECT_FALSE(w.AddTensor("ragged", DType::kQ4_K, {2, 128}).ok());
    ASSERT_TRUE(w.AddTensor("a", DType::kQ4_K, {2, 512}).ok());
    ASSERT_TRUE(w.AddTensor("b", DType::kQ6_K, {2, 512}).ok());
    ASSERT_TRUE(w.Begin().ok());
    ASSERT_TRUE(w.WriteTensor("a", *q4).ok());
    ASSERT_TRUE(w.WriteTensor("b", *q6).ok());
    ASSERT_TRUE(w.Finish().ok());
  }
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufTensorInfo* a = (*file)->FindTensor("a");
  const GgufTensorInfo* b = (*file)->FindTensor("b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->dtype, DType::kQ4_K);
  EXPECT_EQ(b->dtype, DType::kQ6_K);
  EXPECT_EQ(DecodeToF32(DType::kQ4_K, {a->data, a->num_bytes}), DecodeToF32(DType::kQ4_K, *q4));
  EXPECT_EQ(DecodeToF32(DType::kQ6_K, {b->data, b->num_bytes}), DecodeToF32(DType::kQ6_K, *q6));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace ferry
