// Element types of model tensors and conversions between them.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace ferry {

// The weight dtypes come first (kF32..kQ5_K index the CPU kernel tables).
enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kQ8_0,
  kQ4_K,
  kQ6_K,
  kQ4_0,
  kQ5_0,
  kQ5_K,
  kI32,
  kI64,
  kU8,
  kI8
};

// Whether a weight matrix may be stored in `t` (every type above kI32).
inline bool IsWeightDType(DType t) { return static_cast<int>(t) < static_cast<int>(DType::kI32); }

// Q8_0 (GGML layout): blocks of 32 values, one fp16 scale then 32 int8.
inline constexpr int kQ8_0BlockValues = 32;
inline constexpr int kQ8_0BlockBytes = 34;

// Q4_0 and Q5_0 (GGML layout, engine/formats/kquants.h): blocks of 32.
inline constexpr int kQ4_0BlockBytes = 18;
inline constexpr int kQ5_0BlockBytes = 22;

// The GGML k-quants (engine/formats/kquants.h has the layouts): super-blocks
// of 256 values.
inline constexpr int kQKValues = 256;
inline constexpr int kQ4_KBlockBytes = 144;
inline constexpr int kQ5_KBlockBytes = 176;
inline constexpr int kQ6_KBlockBytes = 210;

// Values per block and bytes per block of a block-quantized dtype; {1, size}
// for the others.
struct DTypeBlocking {
  int values;
  int bytes;
};
DTypeBlocking BlockingOf(DType t);

std::string_view DTypeName(DType t);
// "F32", "f16", "bf16", "Q8_0", ... (case-insensitive); nullopt when unknown.
std::optional<DType> ParseDType(std::string_view name);

// Bytes taken by `n` elements of type `t`; nullopt if `n` does not fit the
// type's blocking (Q8_0, Q4_0 and Q5_0 need a multiple of 32, the k-quants
// of 256) or the size overflows.
std::optional<uint64_t> DTypeBytes(DType t, uint64_t n);

inline float Fp16ToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even.
inline uint16_t FloatToFp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {                                              // subnormal or zero
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);
    uint32_t e = abs >> 23;
    uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // 14..24
    uint32_t half = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t h = ((abs >> 13) - ((127 - 15) << 10));
  uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

inline float Bf16ToFloat(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t FloatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

}  // namespace ferry
