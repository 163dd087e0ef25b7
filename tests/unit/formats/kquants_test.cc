// The k-quant block layouts against blocks built by hand from the GGML
// format description, and the encoder's error bounds.
#include "engine/formats/kquants.h"

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
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

TEST(KQuantsTest, Q4_0AndQ5_0BlocksBuiltByHand) {
  uint8_t q4[kQ4_0BlockBytes] = {};
  PutHalf(0.5f, q4);
  for (int i = 0; i < 16; ++i) q4[2 + i] = static_cast<uint8_t>(i | ((15 - i) << 4));
  float y[32];
  DequantizeQ4_0Block(q4, y);
  for (int i = 0; i < 16; ++i) {
    EXPECT_FLOAT_EQ(y[i], 0.5f * (i - 8)) << i;
    EXPECT_FLOAT_EQ(y[i + 16], 0.5f * (7 - i)) << i + 16;
  }
  EXPECT_FLOAT_EQ(y[0], -4.0f);
  EXPECT_FLOAT_EQ(y[31], -4.0f);
  // Q5_0: the fifth bits are the little-endian word 0xA5A5F00F.
  uint8_t q5[kQ5_0BlockBytes] = {};
  PutHalf(0.25f, q5);
  const uint8_t qh[4] = {0x0F, 0xF0, 0xA5, 0xA5};
  std::memcpy(q5 + 2, qh, 4);
  for (int i = 0; i < 16; ++i) q5[6 + i] = static_cast<uint8_t>(i | ((15 - i) << 4));
  DequantizeQ5_0Block(q5, y);
  const uint32_t bits = 0xA5A5F00Fu;
  const auto fifth = [&](int bit) { return static_cast<int>((bits >> bit) & 1) << 4; };
  for (int i = 0; i < 16; ++i) {
    EXPECT_FLOAT_EQ(y[i], 0.25f * ((i | fifth(i)) - 16)) << i;
    EXPECT_FLOAT_EQ(y[i + 16], 0.25f * (((15 - i) | fifth(i + 16)) - 16)) << i + 16;
  }
  EXPECT_FLOAT_EQ(y[0], 0.0f);
  EXPECT_FLOAT_EQ(y[4], -3.0f);
  EXPECT_FLOAT_EQ(y[16], 3.75f);
  EXPECT_FLOAT_EQ(y[17], -0.5f);
}

TEST(KQuantsTest, Q5KBlockBuiltByHand) {
  // Q4_K's scales and mins and nibbles, plus fifth bits qh[l] = 8l + 3.
  const int sc[8] = {1, 2, 3, 4, 37, 50, 63, 17};
  const int mn[8] = {5, 6, 7, 8, 33, 40, 60, 9};
  uint8_t block[kQ5_KBlockBytes] = {};
  PutHalf(0.5f, block);
  PutHalf(0.25f, block + 2);
  const uint8_t packed[12] = {129, 194, 195, 68, 133, 134, 199, 8, 21, 130, 207, 145};
  std::memcpy(block + 4, packed, 12);
  for (int l = 0; l < 32; ++l) block[16 + l] = static_cast<uint8_t>(8 * l + 3);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l)
      block[48 + 32 * c + l] = static_cast<uint8_t>((l % 16) | ((15 - l % 16) << 4));
  }
  float y[256];
  DequantizeQ5KBlock(block, y);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int h = 8 * l + 3;
      const int lo = (l % 16) | (((h >> (2 * c)) & 1) << 4);
      const int hi = (15 - l % 16) | (((h >> (2 * c + 1)) & 1) << 4);
      EXPECT_FLOAT_EQ(y[64 * c + l], 0.5f * sc[2 * c] * lo - 0.25f * mn[2 * c]) << 64 * c + l;
      EXPECT_FLOAT_EQ(y[64 * c + 32 + l], 0.5f * sc[2 * c + 1] * hi - 0.25f * mn[2 * c + 1])
          << 64 * c + 32 + l;
    }
  }
  EXPECT_FLOAT_EQ(y[0], 6.75f);
  EXPECT_FLOAT_EQ(y[32], 29.5f);
  EXPECT_FLOAT_EQ(y[65], -0.25f);
}

float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return Fp16ToFloat(h);
}

// A Q4_K or Q5_K block (`levels` 15 or 31) decoded to y: each sub-block's step
// is within one d of its range over the levels, and y errs by half a step.
void ExpectScaleMinWithinHalfAStep(const float* x, const uint8_t* block, const float* y, int levels,
                                   int trial) {
  const float d = HalfAt(block), dmin = HalfAt(block + 2);
  for (int j = 0; j < 8; ++j) {
    float lo = 0.0f, hi = -1e9f;
    for (int i = 0; i < 32; ++i) {
      lo = std::min(lo, x[32 * j + i]);
      hi = std::max(hi, x[32 * j + i]);
    }
    uint8_t sc, m;
    Q4KScaleMin(block + 4, j, &sc, &m);
    const float step = d * sc;
    EXPECT_LE(step, (hi - lo + dmin) / static_cast<float>(levels) + d + 1e-7f)
        << "trial " << trial << " sub-block " << j;
    for (int i = 0; i < 32; ++i) {
      const int k = 32 * j + i;
      EXPECT_LE(std::fabs(y[k] - x[k]), 0.5f * step + 1e-4f * (hi - lo) + 1e-7f)
          << "trial " << trial << " value " << k;
    }
  }
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
    ExpectScaleMinWithinHalfAStep(x.data(), q4, y4, 15, trial);
    const float d6 = HalfAt(q6 + 208);
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
  // Q5_K as Q4_K with 31 levels; Q4_0 and Q5_0 over 32-value blocks.
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> x(256);
    for (int i = 0; i < 256; ++i) {
      x[i] = dist(rng) * (0.01f + 0.2f * static_cast<float>((i / 32 + trial) % 5));
      if ((i / 32) % 4 == 2) x[i] = -std::fabs(x[i]) - 0.3f;
    }
    uint8_t q5k[kQ5_KBlockBytes];
    QuantizeQ5KBlock(x.data(), q5k);
    float y[256];
    DequantizeQ5KBlock(q5k, y);
    ExpectScaleMinWithinHalfAStep(x.data(), q5k, y, 31, trial);
    for (int b = 0; b < 8; ++b) {
      const float* xb = x.data() + 32 * b;
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
      uint8_t q4[kQ4_0BlockBytes], q5[kQ5_0BlockBytes];
      QuantizeQ4_0Block(xb, q4);
      QuantizeQ5_0Block(xb, q5);
      float y4[32], y5[32];
      DequantizeQ4_0Block(q4, y4);
      DequantizeQ5_0Block(q5, y5);
      const float d4 = HalfAt(q4), d5 = HalfAt(q5);
      EXPECT_LE(d4, amax / 7.0f * 1.001f + 1e-7f);
      EXPECT_LE(d5, amax / 15.0f * 1.001f + 1e-7f);
      for (int i = 0; i < 32; ++i) {
        EXPECT_LE(std::fabs(y4[i] - xb[i]), 0.5f * d4 + 1e-4f * amax + 1e-7f) << "trial " << trial;
        EXPECT_LE(std::fabs(y5[i] - xb[i]), 0.5f * d5 + 1e-4f * amax + 1e-7f) << "trial " << trial;
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
  EXPECT_EQ(DTypeBytes(DType::kQ4_0, 64), 36u);
  EXPECT_EQ(DTypeBytes(DType::kQ5_0, 32), 22u);
  EXPECT_EQ(DTypeBytes(DType::kQ5_K, 256), 176u);
  EXPECT_FALSE(DTypeBytes(DType::kQ5_0, 48).has_value());
  EXPECT_EQ(ParseDType("q5_k"), DType::kQ5_K);
  for (DType t :
       {DType::kQ8_0, DType::kQ4_0, DType::kQ5_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    EXPECT_TRUE(IsWeightDType(t));
    EXPECT_NE(CodecOf(t).decode, nullptr) << DTypeName(t);
    EXPECT_NE(CodecOf(t).encode, nullptr) << DTypeName(t);
  }
  EXPECT_FALSE(IsWeightDType(DType::kI32));
  EXPECT_EQ(CodecOf(DType::kF16).decode, nullptr);
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
  auto q5k = EncodeFromF32(DType::kQ5_K, values);
  auto q40 = EncodeFromF32(DType::kQ4_0, values);
  auto q50 = EncodeFromF32(DType::kQ5_0, values);
  ASSERT_TRUE(q4.ok() && q6.ok() && q5k.ok() && q40.ok() && q50.ok());
  EXPECT_FALSE(EncodeFromF32(DType::kQ4_K, std::vector<float>(300)).ok());
  {
    GgufWriter w(path);
    EXPECT_FALSE(w.AddTensor("ragged", DType::kQ4_K, {2, 128}).ok());
    ASSERT_TRUE(w.AddTensor("a", DType::kQ4_K, {2, 512}).ok());
    ASSERT_TRUE(w.AddTensor("b", DType::kQ6_K, {2, 512}).ok());
    ASSERT_TRUE(w.AddTensor("c", DType::kQ5_K, {2, 512}).ok());
    ASSERT_TRUE(w.AddTensor("d", DType::kQ4_0, {2, 512}).ok());
    ASSERT_TRUE(w.AddTensor("e", DType::kQ5_0, {2, 512}).ok());
    EXPECT_FALSE(w.AddTensor("ragged32", DType::kQ5_0, {2, 48}).ok());
    ASSERT_TRUE(w.Begin().ok());
    ASSERT_TRUE(w.WriteTensor("a", *q4).ok());
    ASSERT_TRUE(w.WriteTensor("b", *q6).ok());
    ASSERT_TRUE(w.WriteTensor("c", *q5k).ok());
    ASSERT_TRUE(w.WriteTensor("d", *q40).ok());
    ASSERT_TRUE(w.WriteTensor("e", *q50).ok());
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
  for (auto [name, dtype, bytes] :
       {std::tuple{"c", DType::kQ5_K, &*q5k}, std::tuple{"d", DType::kQ4_0, &*q40},
        std::tuple{"e", DType::kQ5_0, &*q50}}) {
    const GgufTensorInfo* t = (*file)->FindTensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, dtype);
    const std::vector<float> got = DecodeToF32(dtype, {t->data, t->num_bytes});
    EXPECT_EQ(got, DecodeToF32(dtype, *bytes));
    ASSERT_EQ(got.size(), values.size());
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], values[i], 0.08) << name << " " << i;
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace ferry
