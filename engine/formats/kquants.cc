#include "engine/formats/kquants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/formats/dtype.h"

namespace ferry {
namespace {

float ReadHalf(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return Fp16ToFloat(bits);
}

// Writes f (at least 0) as the smallest fp16 not below it; returns that value.
float WriteHalfAtLeast(float f, uint8_t* p) {
  uint16_t bits = FloatToFp16(f);
  if (Fp16ToFloat(bits) < f) ++bits;
  std::memcpy(p, &bits, sizeof bits);
  return Fp16ToFloat(bits);
}

// ceil(v) in [0, hi]; a v a hair above an integer (from rounding) stays there.
int CeilClamp(float v, int hi) {
  return std::clamp(static_cast<int>(std::ceil(v * (1.0f - 1e-6f))), 0, hi);
}

int RoundClamp(float v, int lo, int hi) {
  return std::clamp(static_cast<int>(std::lround(v)), lo, hi);
}

}  // namespace

namespace {

// Q4_K and Q5_K: eight 32-value sub-blocks of scale·q − min, the two
// sub-blocks of a 64-value chunk sharing the low and high nibbles of 32 bytes;
// Q5_K takes a fifth bit per value from `qh` (bit 2c for the low nibble of
// chunk c, bit 2c + 1 for the high one), Q4_K passes no qh.
void DequantizeScaleMinBlock(const uint8_t* block, const uint8_t* qh, const uint8_t* qs,
                             float* out) {
  const float d = ReadHalf(block), dmin = ReadHalf(block + 2);
  const uint8_t* packed = block + 4;
  for (int chunk = 0; chunk < 4; ++chunk) {
    uint8_t sc_lo, m_lo, sc_hi, m_hi;
    Q4KScaleMin(packed, 2 * chunk, &sc_lo, &m_lo);
    Q4KScaleMin(packed, 2 * chunk + 1, &sc_hi, &m_hi);
    const float s_lo = d * sc_lo, o_lo = dmin * m_lo;
    const float s_hi = d * sc_hi, o_hi = dmin * m_hi;
    const uint8_t* q = qs + 32 * chunk;
    float* y = out + 64 * chunk;
    for (int l = 0; l < 32; ++l) {
      int lo = q[l] & 0x0F, hi = q[l] >> 4;
      if (qh != nullptr) {
        lo |= ((qh[l] >> (2 * chunk)) & 1) << 4;
        hi |= ((qh[l] >> (2 * chunk + 1)) & 1) << 4;
      }
      y[l] = s_lo * static_cast<float>(lo) - o_lo;
      y[l + 32] = s_hi * static_cast<float>(hi) - o_hi;
    }
  }
}

}  // namespace

void DequantizeQ4KBlock(const uint8_t* block, float* out) {
  DequantizeScaleMinBlock(block, nullptr, block + 16, out);
}

void DequantizeQ8_0Block(const uint8_t* block, float* out) {
  const float d = ReadHalf(block);
  for (int i = 0; i < 32; ++i) out[i] = d * static_cast<float>(static_cast<int8_t>(block[2 + i]));
}

void DequantizeQ4_0Block(const uint8_t* block, float* out) {
  const float d = ReadHalf(block);
  const uint8_t* qs = block + 2;
  for (int i = 0; i < 16; ++i) {
    out[i] = d * static_cast<float>((qs[i] & 0x0F) - 8);
    out[i + 16] = d * static_cast<float>((qs[i] >> 4) - 8);
  }
}

void DequantizeQ5_0Block(const uint8_t* block, float* out) {
  const float d = ReadHalf(block);
  const uint32_t qh = static_cast<uint32_t>(block[2]) | (static_cast<uint32_t>(block[3]) << 8) |
                      (static_cast<uint32_t>(block[4]) << 16) |
                      (static_cast<uint32_t>(block[5]) << 24);
  const uint8_t* qs = block + 6;
  for (int i = 0; i < 16; ++i) {
    const int lo = (qs[i] & 0x0F) | static_cast<int>(((qh >> i) & 1) << 4);
    const int hi = (qs[i] >> 4) | static_cast<int>(((qh >> (i + 16)) & 1) << 4);
    out[i] = d * static_cast<float>(lo - 16);
    out[i + 16] = d * static_cast<float>(hi - 16);
  }
}

void DequantizeQ5KBlock(const uint8_t* block, float* out) {
  DequantizeScaleMinBlock(block, block + 16, block + 48, out);
}

void DequantizeQ6KBlock(const uint8_t* block, float* out) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(block + 192);
  const float d = ReadHalf(block + 208);
  for (int half = 0; half < 2; ++half) {
    const uint8_t* lo = ql + 64 * half;
    const uint8_t* hi = qh + 32 * half;
    const int8_t* sc = scales + 8 * half;
    float* y = out + 128 * half;
    for (int l = 0; l < 32; ++l) {
      const int q0 = (lo[l] & 0x0F) | (((hi[l] >> 0) & 3) << 4);
      const int q1 = (lo[l + 32] & 0x0F) | (((hi[l] >> 2) & 3) << 4);
      const int q2 = (lo[l] >> 4) | (((hi[l] >> 4) & 3) << 4);
      const int q3 = (lo[l + 32] >> 4) | (((hi[l] >> 6) & 3) << 4);
      const int s = l / 16;
      y[l] = d * static_cast<float>(sc[s]) * static_cast<float>(q0 - 32);
      y[l + 32] = d * static_cast<float>(sc[s + 2]) * static_cast<float>(q1 - 32);
      y[l + 64] = d * static_cast<float>(sc[s + 4]) * static_cast<float>(q2 - 32);
      y[l + 96] = d * static_cast<float>(sc[s + 6]) * static_cast<float>(q3 - 32);
    }
  }
}

namespace {

// Q4_K and Q5_K: sub-block j maps [lo, hi] (lo at most 0) onto the levels
// 0..kMax. Every rounding of a scale or min goes the way that keeps [lo, hi]
// inside the levels, so no value is clipped and each errs by at most half a
// step. Writes d, dmin and the packed pairs; q gets the 256 levels.
template <int kMax>
void QuantizeScaleMinBlock(const float* x, uint8_t* block, uint8_t* q) {
  float lo[8], hi[8], max_min = 0.0f;
  for (int j = 0; j < 8; ++j) {
    lo[j] = 0.0f;
    hi[j] = -INFINITY;
    for (int i = 0; i < 32; ++i) {
      lo[j] = std::min(lo[j], x[32 * j + i]);
      hi[j] = std::max(hi[j], x[32 * j + i]);
    }
    max_min = std::max(max_min, -lo[j]);
  }
  const float dmin = WriteHalfAtLeast(max_min / 63.0f, block + 2);
  uint8_t sc[8], m[8];
  float need[8], max_need = 0.0f;
  for (int j = 0; j < 8; ++j) {
    m[j] = static_cast<uint8_t>(dmin > 0.0f ? CeilClamp(-lo[j] / dmin, 63) : 0);
    need[j] = std::max(hi[j] + dmin * m[j], 0.0f) / static_cast<float>(kMax);
    max_need = std::max(max_need, need[j]);
  }
  const float d = WriteHalfAtLeast(max_need / 63.0f, block);
  for (int j = 0; j < 8; ++j)
    sc[j] = static_cast<uint8_t>(d > 0.0f ? CeilClamp(need[j] / d, 63) : 0);
  uint8_t* packed = block + 4;
  for (int j = 0; j < 4; ++j) {
    packed[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    packed[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    packed[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4));
  }
  for (int j = 0; j < 8; ++j) {
    const float s = d * sc[j], o = dmin * m[j];
    for (int i = 0; i < 32; ++i) {
      q[32 * j + i] =
          static_cast<uint8_t>(s > 0.0f ? RoundClamp((x[32 * j + i] + o) / s, 0, kMax) : 0);
    }
  }
}

// Q4_0 and Q5_0: one step d ≥ max|x| / kHalf (levels −kHalf..kHalf around
// the bias), returned with the levels (biased) in q[32].
template <int kHalf, int kBias>
float QuantizeSymmetricBlock(const float* x, uint8_t* block, uint8_t* q) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = WriteHalfAtLeast(amax / static_cast<float>(kHalf), block);
  for (int i = 0; i < 32; ++i) {
    q[i] = static_cast<uint8_t>((d > 0.0f ? RoundClamp(x[i] / d, -kHalf, kHalf) : 0) + kBias);
  }
  return d;
}

}  // namespace

void QuantizeQ8_0Block(const float* x, uint8_t* block) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  const uint16_t bits = FloatToFp16(d);
  std::memcpy(block, &bits, sizeof bits);
  for (int i = 0; i < 32; ++i) {
    block[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(x[i] * inv)));
  }
}

void QuantizeQ4_0Block(const float* x, uint8_t* block) {
  uint8_t q[32];
  QuantizeSymmetricBlock<7, 8>(x, block, q);
  for (int i = 0; i < 16; ++i) block[2 + i] = static_cast<uint8_t>(q[i] | (q[i + 16] << 4));
}

void QuantizeQ5_0Block(const float* x, uint8_t* block) {
  uint8_t q[32];
  QuantizeSymmetricBlock<15, 16>(x, block, q);
  uint32_t qh = 0;
  for (int i = 0; i < 32; ++i) qh |= static_cast<uint32_t>(q[i] >> 4) << i;
  for (int b = 0; b < 4; ++b) block[2 + b] = static_cast<uint8_t>(qh >> (8 * b));
  for (int i = 0; i < 16; ++i) {
    block[6 + i] = static_cast<uint8_t>((q[i] & 0x0F) | ((q[i + 16] & 0x0F) << 4));
  }
}

void QuantizeQ4KBlock(const float* x, uint8_t* block) {
  uint8_t q[256];
  QuantizeScaleMinBlock<15>(x, block, q);
  uint8_t* qs = block + 16;
  for (int chunk = 0; chunk < 4; ++chunk) {
    for (int l = 0; l < 32; ++l) {
      qs[32 * chunk + l] = static_cast<uint8_t>(q[64 * chunk + l] | (q[64 * chunk + 32 + l] << 4));
    }
  }
}

void QuantizeQ5KBlock(const float* x, uint8_t* block) {
  uint8_t q[256];
  QuantizeScaleMinBlock<31>(x, block, q);
  uint8_t* qh = block + 16;
  uint8_t* qs = block + 48;
  for (int l = 0; l < 32; ++l) qh[l] = 0;
  for (int chunk = 0; chunk < 4; ++chunk) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t lo = q[64 * chunk + l], hi = q[64 * chunk + 32 + l];
      qs[32 * chunk + l] = static_cast<uint8_t>((lo & 0x0F) | ((hi & 0x0F) << 4));
      qh[l] =
          static_cast<uint8_t>(qh[l] | ((lo >> 4) << (2 * chunk)) | ((hi >> 4) << (2 * chunk + 1)));
    }
  }
}

void QuantizeQ6KBlock(const float* x, uint8_t* block) {
  // Sub-block s (16 values) steps by at least max|x| / 31, so no value is
  // clipped to [-32, 31] and each errs by at most half a step.
  float need[16], max_need = 0.0f;
  for (int s = 0; s < 16; ++s) {
    float amax = 0.0f;
    for (int i = 0; i < 16; ++i) amax = std::max(amax, std::fabs(x[16 * s + i]));
    need[s] = amax / 31.0f;
    max_need = std::max(max_need, need[s]);
  }
  const float d = WriteHalfAtLeast(max_need / 127.0f, block + 208);
  int8_t* scales = reinterpret_cast<int8_t*>(block + 192);
  uint8_t q[256];
  for (int s = 0; s < 16; ++s) {
    scales[s] = static_cast<int8_t>(d > 0.0f ? CeilClamp(need[s] / d, 127) : 0);
    const float step = d * scales[s];
    for (int i = 0; i < 16; ++i) {
      const int v = step != 0.0f ? RoundClamp(x[16 * s + i] / step, -32, 31) : 0;
      q[16 * s + i] = static_cast<uint8_t>(v + 32);
    }
  }
  for (int half = 0; half < 2; ++half) {
    uint8_t* lo = block + 64 * half;
    uint8_t* hi = block + 128 + 32 * half;
    const uint8_t* v = q + 128 * half;
    for (int l = 0; l < 32; ++l) {
      lo[l] = static_cast<uint8_t>((v[l] & 0x0F) | ((v[l + 64] & 0x0F) << 4));
      lo[l + 32] = static_cast<uint8_t>((v[l + 32] & 0x0F) | ((v[l + 96] & 0x0F) << 4));
      hi[l] = static_cast<uint8_t>((v[l] >> 4) | ((v[l + 32] >> 4) << 2) | ((v[l + 64] >> 4) << 4) |
                                   ((v[l + 96] >> 4) << 6));
    }
  }
}

BlockCodec CodecOf(DType t) {
  switch (t) {
    case DType::kQ8_0:
      return {&DequantizeQ8_0Block, &QuantizeQ8_0Block};
    case DType::kQ4_0:
      return {&DequantizeQ4_0Block, &QuantizeQ4_0Block};
    case DType::kQ5_0:
      return {&DequantizeQ5_0Block, &QuantizeQ5_0Block};
    case DType::kQ4_K:
      return {&DequantizeQ4KBlock, &QuantizeQ4KBlock};
    case DType::kQ5_K:
      return {&DequantizeQ5KBlock, &QuantizeQ5KBlock};
    case DType::kQ6_K:
      return {&DequantizeQ6KBlock, &QuantizeQ6KBlock};
    default:
      return {nullptr, nullptr};
  }
}

}  // namespace ferry
