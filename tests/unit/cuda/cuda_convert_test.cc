// The host-side dtype conversions the CUDA backend moves KV blocks with
// (cuda::ConvertFromF32 / ConvertToF32): a block read from a bf16 or fp16
// device cache becomes fp32 exactly, and an fp32 block written into one is
// rounded to nearest even. Checked against references computed here from
// first principles. Runs on the host; no device needed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "cuda/api.h"
#include "gtest/gtest.h"
#include "kvcache/kv_cache.h"

namespace ferry::cuda {
namespace {

float FromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
uint32_t Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// bf16 is the top half of an fp32: the two candidates are the truncation and
// the next value away from zero; the nearer wins, a tie goes to the even one.
uint16_t ReferenceBf16(float x) {
  const uint32_t lo = Bits(x) & 0xffff0000u;
  const uint32_t hi = lo + 0x10000u;
  const double d_lo = std::fabs(double(x) - double(FromBits(lo)));
  const double d_hi = std::fabs(double(FromBits(hi)) - double(x));
  if (d_lo < d_hi) return static_cast<uint16_t>(lo >> 16);
  if (d_hi < d_lo) return static_cast<uint16_t>(hi >> 16);
  return static_cast<uint16_t>(((lo >> 16) & 1) == 0 ? lo >> 16 : hi >> 16);
}

// The value of an fp16 code from its fields, in double.
double HalfValue(uint16_t code) {
  const int sign = code >> 15, exp = (code >> 10) & 0x1f, mant = code & 0x3ff;
  const double magnitude =
      exp == 0 ? std::ldexp(double(mant), -24) : std::ldexp(double(1024 + mant), exp - 25);
  return sign ? -magnitude : magnitude;
}

// Nearest fp16 by search over every finite non-negative code (in increasing
// order of value), ties to the even code; past the largest finite value by
// half an ulp or more, infinity.
uint16_t ReferenceHalf(float x) {
  static const std::vector<std::pair<double, uint16_t>> finite = [] {
    std::vector<std::pair<double, uint16_t>> v;
    for (uint32_t c = 0; c < 0x7c00u; ++c) v.emplace_back(HalfValue(static_cast<uint16_t>(c)), c);
    return v;
  }();
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(double(x));
  if (a >= 65520.0) return sign | 0x7c00;
  auto it = std::lower_bound(finite.begin(), finite.end(), std::make_pair(a, uint16_t{0}));
  if (it == finite.end()) return sign | 0x7bff;
  if (it->first == a || it == finite.begin()) return sign | it->second;
  auto below = std::prev(it);
  const double d_lo = a - below->first, d_hi = it->first - a;
  if (d_lo < d_hi) return sign | below->second;
  if (d_hi < d_lo) return sign | it->second;
  return sign | ((below->second & 1) == 0 ? below->second : it->second);
}

uint16_t ToHalfBits(DType dtype, float x) {
  uint16_t out;
  ConvertFromF32(dtype, &x, 1, &out);
  return out;
}

// Values spread over the ranges that matter for KV: normal, subnormal in
// either type, ties, and signs.
std::vector<float> TestValues(DType dtype) {
  std::mt19937 rng(1234);
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 3.14159265f, 1e-3f, -2.5e-5f};
  std::uniform_real_distribution<float> unit(-4.0f, 4.0f);
  std::uniform_int_distribution<int> exponent(-30, 15);
  for (int i = 0; i < 20000; ++i) v.push_back(std::ldexp(unit(rng), exponent(rng)));
  // Exact ties between two neighbours of the half type, even and odd below.
  for (uint32_t code : {0x3c00u, 0x3c01u, 0x0001u, 0x0002u, 0x03ffu, 0x4a37u, 0x7bfeu}) {
    if (dtype == DType::kBF16) {
      v.push_back(FromBits((code << 16) | 0x8000u));
      v.push_back(-FromBits((code << 16) | 0x8000u));
    } else {
      v.push_back(static_cast<float>(
          (HalfValue(static_cast<uint16_t>(code)) + HalfValue(static_cast<uint16_t>(code + 1))) /
          2));
    }
  }
  return v;
}

TEST(CudaConvertTest, Bf16FromF32RoundsToNearestEven) {
  for (float x : TestValues(DType::kBF16)) {
    EXPECT_EQ(ToHalfBits(DType::kBF16, x), ReferenceBf16(x)) << x;
  }
}

TEST(CudaConvertTest, F16FromF32RoundsToNearestEven) {
  std::vector<float> values = TestValues(DType::kF16);
  values.push_back(65519.0f);  // below the overflow threshold: the largest finite
  values.push_back(65520.0f);  // a tie with 2^16: infinity
  values.push_back(-1e6f);
  for (float x : values) {
    EXPECT_EQ(ToHalfBits(DType::kF16, x), ReferenceHalf(x)) << x;
  }
}

TEST(CudaConvertTest, EveryHalfValueConvertsToF32ExactlyAndBack) {
  for (uint32_t c = 0; c <= 0xffffu; ++c) {
    const uint16_t code = static_cast<uint16_t>(c);
    float bf = 0, h = 0;
    ConvertToF32(DType::kBF16, &code, 1, &bf);
    ConvertToF32(DType::kF16, &code, 1, &h);
    if ((code & 0x7f80u) != 0x7f80u) {  // bf16 finite: exactly the top half
      ASSERT_EQ(Bits(bf), uint32_t{code} << 16) << c;
      ASSERT_EQ(ToHalfBits(DType::kBF16, bf), code) << c;
    }
    if ((code & 0x7c00u) != 0x7c00u) {  // fp16 finite
      ASSERT_EQ(double(h), HalfValue(code)) << c;
      ASSERT_EQ(ToHalfBits(DType::kF16, h), code) << c;
    }
  }
}

// A whole KV block, as the backend converts it: representable values come
// back bit for bit, others as the reference rounds them.
TEST(CudaConvertTest, KvBlockRoundTrips) {
  KvCacheShape shape;
  shape.num_layers = 3;
  shape.num_kv_heads = 2;
  shape.head_dim = 64;
  shape.block_size = 16;
  const size_t n = static_cast<size_t>(shape.floats_per_block());
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    std::vector<float> block(n);
    for (float& x : block) x = normal(rng);
    std::vector<char> device(n * DTypeSize(dtype));
    std::vector<float> back(n);
    ConvertFromF32(dtype, block.data(), n, device.data());
    ConvertToF32(dtype, device.data(), n, back.data());
    for (size_t i = 0; i < n; ++i) {
      float want = block[i];
      if (dtype == DType::kBF16) want = FromBits(uint32_t{ReferenceBf16(block[i])} << 16);
      if (dtype == DType::kF16) want = static_cast<float>(HalfValue(ReferenceHalf(block[i])));
      ASSERT_EQ(Bits(back[i]), Bits(want)) << DTypeName(dtype) << " element " << i;
    }
    // Once rounded, a block is representable: a second trip is exact.
    std::vector<char> again(device.size());
    ConvertFromF32(dtype, back.data(), n, again.data());
    EXPECT_EQ(again, device) << DTypeName(dtype);
  }
}

}  // namespace
}  // namespace ferry::cuda
